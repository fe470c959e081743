//! regmirror's entry in the shared auth file: only `auths."<DOMAIN>"` is regmirror's. While the
//! file is as regmirror wrote it, revert gives the previous bytes back; when someone changed it
//! since, revert puts back only the entry regmirror replaced (or removes it) and keeps the rest.

use crate::apply::FileChange;
use crate::render::registries::{self, RegistriesError};
use crate::spec::RegistrySpec;

use super::state::{AuthRecord, PodmanState, b64, previous, sha256_hex};
use super::{PodmanError, PodmanPaths, change, read};

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
        return Err(PodmanError::Refused {
            path: paths.auth_file.clone(),
            why: format!(
                "regmirror's credentials are in {}: run `regmirror revert --runtime podman` with that --auth-file first",
                path.display()
            ),
        });
    }
    let refused = |e: RegistriesError| PodmanError::Refused {
        path: path.clone(),
        why: e.to_string(),
    };
    let current = read(&path)?;
    // The file as it would be after a revert.
    let (base, base_record, base_entry) = match old {
        Some(a)
            if current
                .as_ref()
                .is_some_and(|(b, _)| sha256_hex(b) == a.written) =>
        {
            (
                previous(&path, &a.previous)?,
                a.previous.clone(),
                a.previous_entry.clone(),
            )
        }
        Some(a) => {
            let mode = current.as_ref().map(|(_, m)| *m).unwrap_or(0o600);
            let merged = registries::merge_auth(
                current.as_ref().map(|(b, _)| b.as_slice()),
                &a.key,
                a.previous_entry.as_ref(),
            )
            .map_err(refused)?;
            let base = merged.map(|b| (b, mode));
            let rec = base.as_ref().map(|(b, m)| (b64(b), *m));
            (base, rec, a.previous_entry.clone())
        }
        None => {
            let entry = registries::auth_entry_of(
                current.as_ref().map(|(b, _)| b.as_slice()),
                &want.as_ref().map(|(k, _)| k.clone()).unwrap_or_default(),
            )
            .map_err(refused)?;
            (
                current.clone(),
                current.as_ref().map(|(b, m)| (b64(b), *m)),
                entry,
            )
        }
    };
    let Some((key, entry)) = want else {
        changes.extend(change(&path, &current, base, true));
        return Ok(None);
    };
    // A changed DOMAIN: the old key goes back first.
    let (base, base_record, base_entry) = match old {
        Some(a) if a.key != key => {
            let prev = registries::auth_entry_of(base.as_ref().map(|(b, _)| b.as_slice()), &key)
                .map_err(refused)?;
            (base, base_record, prev)
        }
        _ => (base, base_record, base_entry),
    };
    let merged =
        registries::merge_auth(base.as_ref().map(|(b, _)| b.as_slice()), &key, Some(&entry))
            .map_err(refused)?
            .expect("an entry was set");
    let rec = AuthRecord {
        path: path.clone(),
        key,
        previous: base_record,
        previous_entry: base_entry,
        written: sha256_hex(&merged),
    };
    changes.extend(change(&path, &current, Some((merged, 0o600)), true));
    Ok(Some(rec))
}
