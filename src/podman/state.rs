//! `<state-dir>/podman-state.json`: what regmirror owns and what was there before.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{PodmanError, PodmanPaths, read};

/// A file regmirror owns, and what was at its path before (base64 bytes and mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    pub path: PathBuf,
    pub previous: Option<(String, u32)>,
}

/// regmirror's entry in the shared auth file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRecord {
    pub path: PathBuf,
    /// `auths.<key>`.
    pub key: String,
    /// The whole file before regmirror first wrote it (base64 bytes and mode).
    pub previous: Option<(String, u32)>,
    /// The entry regmirror replaced.
    pub previous_entry: Option<Value>,
    /// sha256 of the file as regmirror last wrote it.
    pub written: String,
}

/// `<state-dir>/podman-state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodmanState {
    pub files: Vec<Owned>,
    pub auth: Option<AuthRecord>,
    /// Directories regmirror created (removed on revert when empty), outermost first.
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
}

impl PodmanState {
    pub(super) fn is_empty(&self) -> bool {
        self.files.is_empty() && self.auth.is_none()
    }
}

/// sha256 of `bytes`, hex.
pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(super) fn unb64(path: &Path, s: &str) -> Result<Vec<u8>, PodmanError> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| PodmanError::Refused {
            path: path.to_path_buf(),
            why: format!("state file holds a saved file that is not base64 ({e})"),
        })
}

/// Load the state (`Default` when there is none).
pub fn load_state(paths: &PodmanPaths) -> Result<PodmanState, PodmanError> {
    let p = paths.state();
    match read(&p)? {
        None => Ok(PodmanState::default()),
        Some((bytes, _)) => serde_json::from_slice(&bytes).map_err(|e| PodmanError::Refused {
            path: p.clone(),
            why: format!("state file does not parse ({e}); nothing written"),
        }),
    }
}

/// The saved previous contents of `rec`, decoded.
pub(super) fn previous(
    path: &Path,
    rec: &Option<(String, u32)>,
) -> Result<Option<(Vec<u8>, u32)>, PodmanError> {
    rec.as_ref()
        .map(|(s, m)| Ok((unb64(path, s)?, *m)))
        .transpose()
}

/// One path's contents after revert, and what is on disk now.
pub(super) struct Slot {
    pub path: PathBuf,
    pub current: Option<(Vec<u8>, u32)>,
    pub base: Option<(Vec<u8>, u32)>,
    /// The previous-contents record to keep in the state if regmirror writes this path.
    pub record: Option<(String, u32)>,
}

pub(super) fn slot(path: &Path, state: &PodmanState) -> Result<Slot, PodmanError> {
    let current = read(path)?;
    match state.files.iter().find(|f| f.path == path) {
        Some(o) => Ok(Slot {
            path: path.to_path_buf(),
            base: previous(path, &o.previous)?,
            record: o.previous.clone(),
            current,
        }),
        None => Ok(Slot {
            path: path.to_path_buf(),
            base: current.clone(),
            record: current.as_ref().map(|(b, m)| (b64(b), *m)),
            current,
        }),
    }
}
