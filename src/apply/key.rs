//! The node's key for spec fingerprints (`<state-dir>/hash.key`, 32 random bytes, 0600): the
//! state records a keyed hash of the Secret, PASSWORD included, so that a change of the
//! password alone is a change, and state.json alone says nothing about the password.

use std::path::{Path, PathBuf};

use super::ApplyError;
use super::write::{self, Owner};

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("hash.key")
}

/// The key, and whether it is new (not on disk yet: [`save`] it with the state).
pub fn load(state_dir: &Path) -> Result<(Vec<u8>, bool), ApplyError> {
    let p = path(state_dir);
    match write::read_optional(&p, 1024).map_err(super::io_err("read", &p))? {
        Some((bytes, _)) if bytes.len() >= 16 => Ok((bytes, false)),
        _ => Ok((rand::random::<[u8; 32]>().to_vec(), true)),
    }
}

/// Write a new key (before the state that uses it).
pub fn save(state_dir: &Path, key: &[u8]) -> Result<(), ApplyError> {
    let p = path(state_dir);
    write::write_atomic_lazy(&p, key, 0o600, Owner::Caller).map_err(super::io_err("write", &p))
}
