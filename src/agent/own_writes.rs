//! The agent's own last writes, so that the file events they cause are not taken for drift.
//!
//! What is remembered is what the write *meant* to leave (each file's bytes, as a sha256; each
//! removed file's absence; each directory), taken from the plan, never from the disk after the
//! write: a file read back after the write may already be someone else's (an admin's edit that
//! landed between the rename and the read would be taken for the agent's own and never repaired).
//! An event is the agent's own only while the path still holds exactly that.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::apply::FileChange;

/// What one path held when the agent's write left it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Left {
    /// A file with these bytes (sha256).
    File([u8; 32]),
    /// Nothing (the write removed it).
    Absent,
    /// A directory (a written file's parent).
    Dir,
}

/// The paths of the last write and what each held.
#[derive(Debug, Default)]
pub struct OwnWrites {
    left: Vec<(PathBuf, Left)>,
}

/// Files larger than this are never the agent's own (its writes are capped far below).
const READ_CAP: u64 = 4 << 20;

impl OwnWrites {
    /// Remember what `changes` (a plan just written) left on disk.
    pub fn remember(&mut self, changes: &[FileChange]) {
        let mut left: Vec<(PathBuf, Left)> = changes
            .iter()
            .map(|c| {
                let what = match &c.new {
                    Some(bytes) => Left::File(Sha256::digest(bytes).into()),
                    None => Left::Absent,
                };
                (c.path.clone(), what)
            })
            .collect();
        for c in changes.iter().filter(|c| c.new.is_some()) {
            if let Some(dir) = c.path.parent() {
                left.push((dir.to_path_buf(), Left::Dir));
            }
        }
        left.sort_by(|a, b| a.0.cmp(&b.0));
        left.dedup_by(|a, b| a.0 == b.0);
        self.left = left;
    }

    /// True when `path` is one of the last write's paths and still holds what it left.
    pub fn is_own(&self, path: &Path) -> bool {
        self.left
            .iter()
            .find(|(p, _)| p == path)
            .is_some_and(|(_, what)| holds(path, what))
    }
}

fn holds(path: &Path, what: &Left) -> bool {
    match what {
        Left::Absent => std::fs::symlink_metadata(path).is_err(),
        Left::Dir => path.is_dir(),
        Left::File(sum) => read_capped(path).is_some_and(|b| Sha256::digest(&b)[..] == sum[..]),
    }
}

fn read_capped(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(READ_CAP).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &Path, new: Option<&str>) -> FileChange {
        FileChange {
            path: path.to_path_buf(),
            old: None,
            new: new.map(|s| s.as_bytes().to_vec()),
            old_mode: None,
            mode: 0o644,
            secret: false,
        }
    }

    #[test]
    fn a_file_is_own_only_while_it_holds_the_written_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "ours").unwrap();
        let mut own = OwnWrites::default();
        own.remember(&[change(&config, Some("ours"))]);
        assert!(own.is_own(&config));
        assert!(own.is_own(dir.path()), "the written file's directory");
        std::fs::write(&config, "admin").unwrap();
        assert!(!own.is_own(&config));
        assert!(!own.is_own(&dir.path().join("other.toml")));
    }

    /// The race CI hit: an admin's edit lands between the agent's rename and the moment it
    /// remembers its write. Remembering from the disk took the edit for the agent's own (and it
    /// was never repaired); remembering from the plan does not.
    #[test]
    fn an_edit_that_lands_before_the_write_is_remembered_is_not_own() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "ours").unwrap();
        std::fs::write(&config, "the admin's edit").unwrap();
        let mut own = OwnWrites::default();
        own.remember(&[change(&config, Some("ours"))]);
        assert!(!own.is_own(&config));
    }

    #[test]
    fn a_removed_file_is_own_while_it_stays_removed() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts.toml");
        let mut own = OwnWrites::default();
        own.remember(&[change(&hosts, None)]);
        assert!(own.is_own(&hosts));
        std::fs::write(&hosts, "x").unwrap();
        assert!(!own.is_own(&hosts));
    }
}
