//! File-system notifications (notify) turned into "look again" pokes. Directories are watched,
//! not files, so an editor's rename-over and kubelet's `..data` symlink swap are both seen.

use std::path::{Path, PathBuf};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Watches directories; every event sends the event's paths on the channel. Dropping it stops.
pub struct DirWatcher {
    _watcher: RecommendedWatcher,
}

impl DirWatcher {
    /// Watch each directory (non-recursive unless `recursive`); missing ones are skipped
    /// (their parent is watched instead, so their creation is seen).
    pub fn new(
        dirs: &[PathBuf],
        recursive: bool,
        tx: mpsc::UnboundedSender<Vec<PathBuf>>,
    ) -> notify::Result<Self> {
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                // Reads (open/close-nowrite) are regmirror's own and change nothing.
                if let Ok(ev) = res
                    && !matches!(
                        ev.kind,
                        notify::EventKind::Access(
                            notify::event::AccessKind::Open(_)
                                | notify::event::AccessKind::Read
                                | notify::event::AccessKind::Close(
                                    notify::event::AccessMode::Read
                                        | notify::event::AccessMode::Execute
                                        | notify::event::AccessMode::Any
                                )
                        )
                    )
                {
                    let _ = tx.send(ev.paths);
                }
            })?;
        let mode = if recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        for d in dirs {
            let mut target: &Path = d;
            while !target.exists() {
                match target.parent() {
                    Some(p) if !p.as_os_str().is_empty() => target = p,
                    _ => break,
                }
            }
            if target.exists() {
                watcher.watch(
                    target,
                    if target == d.as_path() {
                        mode
                    } else {
                        RecursiveMode::NonRecursive
                    },
                )?;
            }
        }
        Ok(DirWatcher { _watcher: watcher })
    }
}

/// The directory to watch for a file (its parent), or the directory itself.
pub fn dir_of(path: &Path) -> PathBuf {
    if path.is_dir() {
        return path.to_path_buf();
    }
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
