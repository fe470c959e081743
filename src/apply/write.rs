//! The only place that writes to disk: an exclusive lock, and atomic replacement
//! (temp file in the same directory → fsync → rename → fsync directory), keeping mode and owner.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// An exclusive `flock` on `<state-dir>/lock`, released on drop (and by the kernel if the
/// process dies).
pub struct Lock {
    _flock: Flock<File>,
}

impl Lock {
    /// Take the lock, waiting up to `wait` for another regmirror to finish.
    pub fn acquire(path: &Path, wait: Duration) -> io::Result<Lock> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let deadline = Instant::now() + wait;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(flock) => return Ok(Lock { _flock: flock }),
                Err((f, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    file = f;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err((_, e)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!("lock {} is held by another regmirror ({e})", path.display()),
                    ));
                }
            }
        }
    }
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Create `dir` and any missing parents; returns the directories it created, outermost first.
/// One that another writer creates meanwhile is used, and is not among them.
pub fn create_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    missing.reverse();
    let mut created = Vec::new();
    for d in missing {
        match fs::create_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => continue,
            Err(e) => return Err(e),
        }
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755))?;
        fsync_dir(parent(&d))?;
        created.push(d);
    }
    Ok(created)
}

/// Who owns a file regmirror writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The owner of the file it replaces (new files: the caller's).
    Keep,
    /// The caller (root on a node), whatever it replaces: for files that hold credentials.
    Caller,
}

/// The identity of a file as it was read: a rename over it checks that it is still this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    fn of(m: &fs::Metadata) -> Identity {
        Identity {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// The identity of whatever is at `path` now (following links); `None` when nothing is.
pub fn identity(path: &Path) -> Option<Identity> {
    fs::metadata(path).ok().map(|m| Identity::of(&m))
}

/// A file that was read: its bytes, mode and identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub bytes: Vec<u8>,
    pub mode: u32,
    pub identity: Identity,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// The kind of a non-regular file, for messages.
fn kind(ft: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Where writes to `path` go: `path` itself, or the final target when it is a symlink (the link
/// is kept). A dangling link is an error: it is never taken for "no file".
pub fn target(path: &Path) -> io::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path).map_err(|e| {
            let to = fs::read_link(path).unwrap_or_default();
            invalid(format!(
                "is a symlink to {} that cannot be followed ({e}); regmirror does not replace a link it cannot follow",
                to.display()
            ))
        }),
        _ => Ok(path.to_path_buf()),
    }
}

/// Read a regular file of at most `cap` bytes; `None` when nothing is at `path`. Symlinks are
/// followed (a dangling one is an error); a directory, FIFO, device or socket is refused
/// without being opened for a blocking read.
pub fn read_regular(path: &Path, cap: u64) -> io::Result<Option<Read>> {
    let real = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
        Ok(_) => target(path)?,
    };
    let meta = fs::metadata(&real)?;
    if !meta.file_type().is_file() {
        return Err(invalid(format!(
            "is {}, not a regular file; regmirror only reads and replaces regular files",
            kind(meta.file_type())
        )));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags::NONBLOCK | libc_flags::NOCTTY)
        .open(&real)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(invalid("is not a regular file".into()));
    }
    if meta.size() > cap {
        return Err(invalid(format!(
            "is {} bytes, more than the {cap} bytes regmirror reads",
            meta.size()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.size() as usize);
    io::Read::read_to_end(
        &mut io::Read::take(&file, cap.saturating_add(1)),
        &mut bytes,
    )?;
    if bytes.len() as u64 > cap {
        return Err(invalid(format!(
            "grew past the {cap} bytes regmirror reads"
        )));
    }
    Ok(Some(Read {
        bytes,
        mode: meta.permissions().mode() & 0o7777,
        identity: Identity::of(&meta),
    }))
}

/// Open flags `std` has no name for.
mod libc_flags {
    pub const NONBLOCK: i32 = nix::fcntl::OFlag::O_NONBLOCK.bits();
    pub const NOCTTY: i32 = nix::fcntl::OFlag::O_NOCTTY.bits();
}

/// Remove the temp files a killed regmirror left in `dir` (see [`super::temp`]).
pub fn remove_stale_temps(dir: &Path) -> io::Result<usize> {
    super::temp::remove_stale(dir)
}

/// The file at `path` is no longer the one that was read: someone else wrote it meanwhile.
#[derive(Debug, thiserror::Error)]
#[error("changed by another writer since it was read")]
pub struct ChangedUnderUs;

/// Replace `path` (a symlink's target; the link stays) with `contents` atomically: a temp file
/// with an unpredictable name, created exclusively without following links, with `mode` and
/// the owner `owner` says, fsynced, renamed over the target, directory fsynced. With `expect`,
/// the target must still be that file just before the rename (else [`ChangedUnderUs`]).
pub fn write_atomic_checked(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Owner,
    expect: Option<Option<Identity>>,
) -> io::Result<()> {
    replace(path, contents, mode, owner, expect, Sync::Full)
}

/// [`write_atomic`] without the two fsyncs, for files whose loss in a power cut costs nothing:
/// the backup of config.toml (a convenience) and the fingerprint key (a lost key makes the
/// next apply write the same files again). Readers still see the old or the new file, whole.
pub fn write_atomic_lazy(path: &Path, contents: &[u8], mode: u32, owner: Owner) -> io::Result<()> {
    replace(path, contents, mode, owner, None, Sync::Nothing)
}

/// [`write_atomic`] whose contents are synced but whose rename is not: after a power cut the
/// path holds either the new file, whole, or the file it replaced. For a file whose previous
/// version is a durable, valid stand-in (the state after its in-flight state).
pub fn write_atomic_settled(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Owner,
) -> io::Result<()> {
    replace(path, contents, mode, owner, None, Sync::Contents)
}

/// What [`replace`] syncs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sync {
    /// The contents, then the rename (the directory).
    Full,
    /// The contents only.
    Contents,
    /// Nothing.
    Nothing,
}

fn replace(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Owner,
    expect: Option<Option<Identity>>,
    sync: Sync,
) -> io::Result<()> {
    let real = target(path)?;
    let dir = parent(&real);
    let name = real
        .file_name()
        .ok_or_else(|| invalid("path has no file name".into()))?;
    let keep = match owner {
        Owner::Keep => fs::metadata(&real).ok().map(|m| (m.uid(), m.gid())),
        Owner::Caller => Some((
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )),
    };
    let temp = super::temp::create(dir, name, mode)?;
    let tmp = temp.path;
    let result = (|| {
        // Held (locked) until it is renamed: a clean-up leaves a live writer's temp file alone.
        let mut f = temp.file;
        if let Some((uid, gid)) = keep {
            std::os::unix::fs::fchown(&*f, Some(uid), Some(gid))?;
        }
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        if sync != Sync::Nothing {
            f.sync_all()?;
        }
        if let Some(want) = expect {
            let now = match fs::metadata(&real) {
                Ok(m) => Some(Identity::of(&m)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            if now != want {
                return Err(io::Error::other(ChangedUnderUs));
            }
        }
        fs::rename(&tmp, &real)?;
        drop(f);
        if sync == Sync::Full {
            fsync_dir(dir)
        } else {
            Ok(())
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// [`write_atomic_checked`] without the identity check.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32, owner: Owner) -> io::Result<()> {
    write_atomic_checked(path, contents, mode, owner, None)
}

/// True when `e` is [`ChangedUnderUs`].
pub fn is_changed_under_us(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<ChangedUnderUs>())
}

/// Remove `path` durably (missing is fine).
pub fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => fsync_dir(parent(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Remove `dir` if it is empty (anything else in it keeps it).
pub fn remove_dir_if_empty(dir: &Path) -> io::Result<()> {
    match fs::remove_dir(dir) {
        Ok(()) => fsync_dir(parent(dir)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Read a regular file (see [`read_regular`]); `None` when it does not exist.
pub fn read_optional(path: &Path, cap: u64) -> io::Result<Option<(Vec<u8>, u32)>> {
    Ok(read_regular(path, cap)?.map(|r| (r.bytes, r.mode)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    /// Writers with their own state dirs share directories (a certs dir): each makes the same
    /// missing directories at once. None may fail, and each directory is made by exactly one.
    #[test]
    fn writers_making_the_same_directories_at_once_all_succeed_and_each_is_made_once() {
        const WRITERS: usize = 8;
        for round in 0..40 {
            let root = tempfile::tempdir().unwrap();
            let target = root.path().join("certs.d").join(format!("host-{round}"));
            let start = Arc::new(Barrier::new(WRITERS));
            let writers: Vec<_> = (0..WRITERS)
                .map(|_| {
                    let (target, start) = (target.clone(), Arc::clone(&start));
                    std::thread::spawn(move || {
                        start.wait();
                        create_dirs(&target)
                    })
                })
                .collect();
            let mut made = Vec::new();
            for w in writers {
                made.extend(w.join().unwrap().expect("a writer failed"));
            }
            made.sort();
            assert_eq!(made, vec![root.path().join("certs.d"), target.clone()]);
        }
    }
}
