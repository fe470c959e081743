//! What regmirror owns and what it replaced, kept in `<state-dir>/state.json` so a later apply
//! can remove only its own entries and `revert` can restore everything.
//!
//! state.json holds no file contents and no credential: what revert must give back (the admin's
//! base text, replaced values, replaced files) lives in `<state-dir>/saved/<sha256>` (0600,
//! content-addressed) and state.json names it `saved:<sha256>`. The state is bound to the
//! config path and certs dir it was made for; any other pairing is refused.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::write::{self, Owner};
use crate::render::{ConfigOwnership, WriteMode, sha256_hex};

/// A managed file and what was at its path before regmirror wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedFile {
    pub path: PathBuf,
    /// base64 of the replaced contents and its mode; `None`: there was no file.
    pub previous: Option<(String, u32)>,
}

/// The state file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub config: PathBuf,
    /// The certs dir this state was made with (empty in states of older versions).
    #[serde(default, skip_serializing_if = "is_empty_path")]
    pub certs_dir: PathBuf,
    /// regmirror created config.toml (it did not exist): revert removes it.
    pub config_created: bool,
    /// config.toml's mode before regmirror changed it (credentials make it 0600).
    pub config_mode_before: Option<u32>,
    pub mode: Option<WriteMode>,
    /// Keyed fingerprint of the applied spec, PASSWORD included (see [`super::key`]).
    pub spec_hash: Option<String>,
    pub ownership: ConfigOwnership,
    pub files: Vec<OwnedFile>,
    /// Directories regmirror created for its files (removed on revert when empty).
    pub created_dirs: Vec<PathBuf>,
    /// A write was in flight: ownership and files are the union of before and after.
    pub in_flight: bool,
    /// A spec that failed the containerd health check; not retried until it changes.
    pub bad_spec_hash: Option<String>,
}

fn is_empty_path(p: &Path) -> bool {
    p.as_os_str().is_empty()
}

impl State {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("state.json")
    }

    /// True when regmirror owns nothing.
    pub fn is_empty(&self) -> bool {
        self.ownership.is_empty()
            && self.files.is_empty()
            && self.created_dirs.is_empty()
            && !self.config_created
    }

    /// The state regmirror is in while a write is in flight: it owns what either side owns.
    pub fn union(&self, next: &State) -> State {
        let mut s = next.clone();
        s.ownership = next.ownership.union(&self.ownership);
        for f in &self.files {
            if !s.files.iter().any(|g| g.path == f.path) {
                s.files.push(f.clone());
            }
        }
        for d in &self.created_dirs {
            if !s.created_dirs.contains(d) {
                s.created_dirs.push(d.clone());
            }
        }
        s.config_created |= self.config_created;
        s.config_mode_before = self.config_mode_before.or(next.config_mode_before);
        s.in_flight = true;
        s
    }

    /// Refuse a state made for other paths, or one that names files regmirror never writes
    /// (`roots`: the certs dir and the config_path directories of config.toml).
    pub fn check_bound(
        &self,
        config: &Path,
        certs_dir: &Path,
        roots: &[PathBuf],
    ) -> Result<(), String> {
        let owns = !self.is_empty() || self.in_flight || self.spec_hash.is_some();
        if owns && !is_empty_path(&self.config) && !same_path(&self.config, config) {
            return Err(format!(
                "was made for config {}, not {}: run regmirror with --config {} (or another --state-dir)",
                self.config.display(),
                config.display(),
                self.config.display()
            ));
        }
        if owns && !is_empty_path(&self.certs_dir) && !same_path(&self.certs_dir, certs_dir) {
            return Err(format!(
                "was made with --certs-dir {}, not {}: revert with the first, then apply with the second",
                self.certs_dir.display(),
                certs_dir.display()
            ));
        }
        for f in &self.files {
            if !is_managed_file(&f.path, roots) {
                return Err(format!(
                    "names {}, outside the directories regmirror manages; refusing to act on it",
                    f.path.display()
                ));
            }
        }
        Ok(())
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn same_path(a: &Path, b: &Path) -> bool {
    absolute(a) == absolute(b)
}

/// `<root>/<host>/hosts.toml` or `<root>/<host>/ca.crt`, no `..` anywhere.
fn is_managed_file(path: &Path, roots: &[PathBuf]) -> bool {
    let plain = path
        .components()
        .all(|c| !matches!(c, Component::ParentDir));
    let name_ok = matches!(
        path.file_name().and_then(|n| n.to_str()),
        Some("hosts.toml" | "ca.crt")
    );
    let under = path
        .parent()
        .and_then(Path::parent)
        .is_some_and(|g| roots.iter().any(|r| same_path(g, r)));
    plain && name_ok && under
}

/// The largest state.json regmirror reads.
const MAX_STATE_BYTES: u64 = 4 << 20;
/// What a saved reference looks like in state.json.
const SAVED: &str = "saved:";

fn saved_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("saved")
}

/// A string of the state that holds an admin's (or the Secret's) content: owned, or shared
/// (the snapshot's base, as large as config.toml, which the states of one apply share).
enum Content<'a> {
    Owned(&'a mut String),
    Shared(&'a mut Arc<String>),
}

impl Content<'_> {
    fn text(&self) -> &str {
        match self {
            Content::Owned(s) => s,
            Content::Shared(s) => s,
        }
    }

    /// Replace the text (a shared one is replaced, not written through: others keep theirs).
    fn set(&mut self, text: String) {
        match self {
            Content::Owned(s) => **s = text,
            Content::Shared(s) => **s = Arc::new(text),
        }
    }
}

/// Every string of the state that holds an admin's (or the Secret's) content.
fn contents_mut(s: &mut State) -> Vec<Content<'_>> {
    let own = &mut s.ownership;
    let mut out: Vec<Content<'_>> = own
        .values
        .iter_mut()
        .filter_map(|v| v.previous.as_mut().map(|p| Content::Owned(&mut p.repr)))
        .collect();
    if let Some(snap) = own.snapshot.as_mut() {
        out.push(Content::Shared(&mut snap.base));
    }
    out.extend(
        s.files
            .iter_mut()
            .filter_map(|f| f.previous.as_mut().map(|p| Content::Owned(&mut p.0))),
    );
    out
}

/// Why loading failed.
pub type LoadError = (PathBuf, String);

/// Load the state (`State::default()` when there is none), saved contents read back in.
pub fn load(state_dir: &Path) -> Result<State, LoadError> {
    let path = State::path(state_dir);
    let read =
        write::read_optional(&path, MAX_STATE_BYTES).map_err(|e| (path.clone(), e.to_string()))?;
    let Some((bytes, _)) = read else {
        return Ok(State::default());
    };
    let mut state: State = serde_json::from_slice(&bytes).map_err(|e| {
        (
            path.clone(),
            format!(
                "does not parse ({e}); move it away only if config.toml holds no regmirror entries"
            ),
        )
    })?;
    let dir = saved_dir(state_dir);
    for mut text in contents_mut(&mut state) {
        if let Some(sha) = text.text().strip_prefix(SAVED) {
            let file = dir.join(sha);
            let bytes = write::read_optional(&file, MAX_STATE_BYTES)
                .map_err(|e| (file.clone(), e.to_string()))?
                .ok_or_else(|| (file.clone(), "is missing (named by state.json)".to_string()))?;
            text.set(
                String::from_utf8(bytes.0).map_err(|_| (file.clone(), "is not UTF-8".into()))?,
            );
        }
    }
    Ok(state)
}

/// How durable a state write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Durable when the save returns.
    Full,
    /// The state written once the files are written, after a durable in-flight state that owns
    /// everything this one does: state.json's contents are synced but its rename is not (one
    /// directory sync less per apply). A power cut may leave the in-flight state in its place,
    /// from which the next apply converges, as it does after a crash. Fully durable anyway when
    /// it writes or removes saved contents (the in-flight state may name what it removes).
    Settled,
}

/// Save the state: contents to `saved/`, then state.json, then saved contents no longer named
/// are removed. Removes state.json when regmirror owns and remembers nothing.
pub fn save(state_dir: &Path, state: &State, how: Durability) -> std::io::Result<()> {
    let path = State::path(state_dir);
    let dir = saved_dir(state_dir);
    if state.is_empty() && !state.in_flight && state.bad_spec_hash.is_none() {
        write::remove(&path)?;
        write::remove(&state_dir.join("hash.key"))?;
        return prune(&dir, &stale(&dir, &[]));
    }
    create_private_dir(state_dir)?;
    let mut stored = state.clone();
    let mut keep = Vec::new();
    let mut wrote_contents = false;
    for mut text in contents_mut(&mut stored) {
        let sha = sha256_hex(text.text());
        let file = dir.join(&sha);
        if !keep.contains(&sha) && !file.exists() {
            create_saved_dir(&dir)?;
            write::write_atomic(&file, text.text().as_bytes(), 0o600, Owner::Caller)?;
            wrote_contents = true;
        }
        text.set(format!("{SAVED}{sha}"));
        keep.push(sha);
    }
    let json = serde_json::to_vec_pretty(&stored).expect("state serializes");
    let stale = stale(&dir, &keep);
    if how == Durability::Settled && !wrote_contents && stale.is_empty() {
        write::write_atomic_settled(&path, &json, 0o600, Owner::Caller)?;
    } else {
        // Also makes `saved/` itself durable when it was just made: one directory sync for
        // both entries of the state dir.
        write::write_atomic(&path, &json, 0o600, Owner::Caller)?;
    }
    prune(&dir, &stale)
}

/// Make `saved/` (0700) when it is missing, without syncing the state dir: the durable
/// state.json write that follows (see [`save`]) syncs it.
fn create_saved_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The saved contents in `dir` not named in `keep`.
fn stale(dir: &Path, keep: &[String]) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| !keep.contains(&e.file_name().to_string_lossy().into_owned()))
        .map(|e| e.path())
        .collect()
}

pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !dir.exists() {
        write::create_dirs(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Remove the `stale` saved contents (and `dir` once empty).
fn prune(dir: &Path, stale: &[PathBuf]) -> std::io::Result<()> {
    for path in stale {
        write::remove(path)?;
    }
    write::remove_dir_if_empty(dir)
}
