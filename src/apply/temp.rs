//! regmirror's temp files (`.<name>.regmirror-<random>.tmp`, beside the file they replace).
//! Their writer holds an exclusive `flock` on each from creation until it is renamed, so a
//! temp file nobody holds was left by a killed run and may be removed. The state dir's lock
//! does not cover them: directories such as a shared certs dir are also written by regmirrors
//! with other state dirs, whose temp files must survive this one's clean-up.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};

/// The part of every temp file's name that says it is regmirror's.
const TAG: &str = ".regmirror-";
/// Attempts at a temp file before giving up (a clean-up racing the creation costs one).
const ATTEMPTS: usize = 4;

/// A temp file being written: its path, and the open file with its writer's lock.
pub struct Temp {
    pub path: PathBuf,
    pub file: Flock<File>,
}

fn name_for(target: &std::ffi::OsStr) -> String {
    let nonce: u64 = rand::random();
    format!(".{}{TAG}{nonce:016x}.tmp", target.to_string_lossy())
}

fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TAG) && name.ends_with(".tmp")
}

fn would_block(e: Errno) -> bool {
    e == Errno::EWOULDBLOCK
}

/// Create a temp file for `target` in `dir`: exclusively, without following links, `mode`,
/// locked. A clean-up that took the new file before its lock (it saw it unheld) makes the
/// attempt start again under another name.
pub fn create(dir: &Path, target: &std::ffi::OsStr, mode: u32) -> io::Result<Temp> {
    let mut last = io::Error::other("no attempt made");
    for _ in 0..ATTEMPTS {
        let path = dir.join(name_for(target));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
            .open(&path)?;
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(f) => f,
            Err((_, e)) if would_block(e) => {
                last = io::Error::other("a clean-up held the new temp file");
                continue;
            }
            Err((_, e)) => return Err(e.into()),
        };
        if still_named(&path, &file)? {
            return Ok(Temp { path, file });
        }
        last = io::Error::other("a clean-up removed the new temp file");
    }
    Err(last)
}

/// True while `path` is still the file `file` holds open.
fn still_named(path: &Path, file: &File) -> io::Result<bool> {
    let held = file.metadata()?;
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(m.dev() == held.dev() && m.ino() == held.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Remove the temp files in `dir` that no live writer holds (a killed run's), and anything
/// else with a temp file's name that is not a regular file (never followed). Entries that
/// vanish meanwhile (another clean-up, or their writer's rename) are skipped.
pub fn remove_stale(dir: &Path) -> io::Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for e in entries.flatten() {
        if is_temp_name(&e.file_name().to_string_lossy()) && remove_if_stale(&e.path())? {
            removed += 1;
        }
    }
    if removed > 0 {
        File::open(dir)?.sync_all()?;
    }
    Ok(removed)
}

/// Remove `path` unless a live writer holds it; true when this call removed it.
fn remove_if_stale(path: &Path) -> io::Result<bool> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    // Held while it is removed, so that its writer (if it is one being created) sees it gone.
    let _held = if meta.file_type().is_file() {
        match open_unheld(path)? {
            Some(held) => Some(held),
            None => return Ok(false),
        }
    } else {
        None
    };
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The file at `path`, locked, when no writer holds it; `None` when one does or it is gone.
fn open_unheld(path: &Path) -> io::Result<Option<Flock<File>>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
        .open(path)
    {
        Ok(f) => f,
        // Gone, or not ours to open: left alone either way.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(held) => Ok(Some(held)),
        Err((_, e)) if would_block(e) => Ok(None),
        Err((_, e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temps(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_temp_name(n))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_live_writers_temp_file_survives_a_clean_up_and_goes_once_it_is_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut live = create(dir.path(), "hosts.toml".as_ref(), 0o644).unwrap();
        live.file.write_all(b"half written").unwrap();
        assert_eq!(remove_stale(dir.path()).unwrap(), 0);
        assert_eq!(
            temps(dir.path()).len(),
            1,
            "a live writer's temp file was removed"
        );
        drop(live.file);
        assert_eq!(remove_stale(dir.path()).unwrap(), 1);
        assert!(temps(dir.path()).is_empty());
    }

    #[test]
    fn a_killed_runs_temp_file_and_a_planted_link_are_removed_the_link_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(
            d.join(".config.toml.regmirror-00000000000000aa.tmp"),
            "left",
        )
        .unwrap();
        let victim = d.join("victim");
        fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, d.join(".hosts.toml.regmirror-1.tmp")).unwrap();
        fs::write(d.join("hosts.toml"), "not a temp").unwrap();
        assert_eq!(remove_stale(d).unwrap(), 2);
        assert!(temps(d).is_empty());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(d.join("hosts.toml").exists());
    }

    #[test]
    fn a_temp_file_is_held_by_its_writer_from_creation() {
        let dir = tempfile::tempdir().unwrap();
        let live = create(dir.path(), "state.json".as_ref(), 0o600).unwrap();
        assert!(
            open_unheld(&live.path).unwrap().is_none(),
            "the writer does not hold its temp file"
        );
    }
}
