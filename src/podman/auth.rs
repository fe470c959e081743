//! regmirror's entry in the shared auth file: only `auths."<DOMAIN>"` is regmirror's. While the
//! file is as regmirror wrote it, revert gives the previous bytes back; when someone changed it
//! since, revert puts back only the entry regmirror replaced (or removes it) and keeps the rest.

use std::path::Path;

use serde_json::Value;

use crate::apply::FileChange;
use crate::render::registries::{self, RegistriesError};
use crate::spec::RegistrySpec;

use super::state::{AuthRecord, PodmanState, b64, previous, sha256_hex};
use super::{PodmanError, PodmanPaths, change, read};

/// A file's bytes and mode, `None` when it does not exist.
type FileBytes = Option<(Vec<u8>, u32)>;

/// The auth file as it would be after a revert, and what a new record keeps of it.
struct Base {
    /// Its bytes and mode.
    file: FileBytes,
    /// The same, as recorded (base64 bytes and mode).
    record: Option<(String, u32)>,
    /// The entry of regmirror's key there.
    entry: Option<Value>,
}

/// The change of the auth file for `spec` (none: regmirror's entry reverted), added to
/// `changes`, and the record of what regmirror wrote there.
pub(super) fn auth_plan(
    paths: &PodmanPaths,
    spec: Option<&RegistrySpec>,
    state: &PodmanState,
    changes: &mut Vec<FileChange>,
) -> Result<Option<AuthRecord>, PodmanError> {
    let want = spec.and_then(|s| registries::auth_entry(s).map(|e| (registries::auth_key(s), e)));
    let old = state.auth.as_ref();
    if want.is_none() && old.is_none() {
        return Ok(None);
    }
    let path = old
        .map(|a| a.path.clone())
        .unwrap_or_else(|| paths.auth_file.clone());
    if want.is_some() && old.is_some_and(|a| a.path != paths.auth_file) {
        return Err(elsewhere(paths, &path));
    }
    let current = read(&path)?;
    let want_key = want.as_ref().map(|(k, _)| k.as_str()).unwrap_or_default();
    let base = reverted(&path, &current, old, want_key)?;
    let Some((key, entry)) = want else {
        changes.extend(change(&path, &current, base.file, true));
        return Ok(None);
    };
    let base = rekeyed(&path, base, old, &key)?;
    let merged = registries::merge_auth(
        base.file.as_ref().map(|(b, _)| b.as_slice()),
        &key,
        Some(&entry),
    )
    .map_err(|e| refused(&path, e))?
    .expect("an entry was set");
    let rec = AuthRecord {
        path: path.clone(),
        key,
        previous: base.record,
        previous_entry: base.entry,
        written: sha256_hex(&merged),
    };
    changes.extend(change(&path, &current, Some((merged, 0o600)), true));
    Ok(Some(rec))
}

/// The refusal to write `paths.auth_file` while regmirror's credentials are in `path`.
fn elsewhere(paths: &PodmanPaths, path: &Path) -> PodmanError {
    PodmanError::Refused {
        path: paths.auth_file.clone(),
        why: format!(
            "regmirror's credentials are in {}: run `regmirror revert --runtime podman` with that --auth-file first",
            path.display()
        ),
    }
}

/// The refusal of the auth file `path`, which cannot be parsed or merged (`e`).
fn refused(path: &Path, e: RegistriesError) -> PodmanError {
    PodmanError::Refused {
        path: path.to_path_buf(),
        why: e.to_string(),
    }
}

/// The file `path` (now `current`) as it would be after a revert of `old`: the previous
/// bytes while it is as regmirror wrote it, else `current` with only the replaced entry put
/// back; with no record, `current` itself and its entry `want_key`.
fn reverted(
    path: &Path,
    current: &FileBytes,
    old: Option<&AuthRecord>,
    want_key: &str,
) -> Result<Base, PodmanError> {
    let current_bytes = current.as_ref().map(|(b, _)| b.as_slice());
    match old {
        Some(a) if current_bytes.is_some_and(|b| sha256_hex(b) == a.written) => Ok(Base {
            file: previous(path, &a.previous)?,
            record: a.previous.clone(),
            entry: a.previous_entry.clone(),
        }),
        Some(a) => {
            let mode = current.as_ref().map(|(_, m)| *m).unwrap_or(0o600);
            let merged = registries::merge_auth(current_bytes, &a.key, a.previous_entry.as_ref())
                .map_err(|e| refused(path, e))?;
            let file = merged.map(|b| (b, mode));
            let record = file.as_ref().map(|(b, m)| (b64(b), *m));
            Ok(Base {
                file,
                record,
                entry: a.previous_entry.clone(),
            })
        }
        None => {
            let entry =
                registries::auth_entry_of(current_bytes, want_key).map_err(|e| refused(path, e))?;
            Ok(Base {
                file: current.clone(),
                record: current.as_ref().map(|(b, m)| (b64(b), *m)),
                entry,
            })
        }
    }
}

/// `base` for the key `key`: on a changed DOMAIN (the old key goes back first), the entry
/// to restore is the one `key` has in `base`.
fn rekeyed(
    path: &Path,
    base: Base,
    old: Option<&AuthRecord>,
    key: &str,
) -> Result<Base, PodmanError> {
    match old {
        Some(a) if a.key != key => {
            let entry =
                registries::auth_entry_of(base.file.as_ref().map(|(b, _)| b.as_slice()), key)
                    .map_err(|e| refused(path, e))?;
            Ok(Base { entry, ..base })
        }
        _ => Ok(base),
    }
}
