//! What regmirror owns and what it replaced, kept in `<state-dir>/state.json` so a later apply
//! can remove only its own entries and `revert` can restore everything.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::render::{ConfigOwnership, WriteMode};

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
    /// regmirror created config.toml (it did not exist): revert removes it.
    pub config_created: bool,
    /// config.toml's mode before regmirror changed it (credentials make it 0600).
    pub config_mode_before: Option<u32>,
    pub mode: Option<WriteMode>,
    /// Hash of the applied spec (PASSWORD excluded).
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
}
