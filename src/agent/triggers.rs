//! Why the loop looks again: the Secret source, file events (drift in config.toml or the certs
//! dir; the containerd socket made anew by a restart or an upgrade), the resync timer, signals;
//! and the debounce that coalesces a burst into one reconcile.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::apply::Paths;
use crate::source::Desired;
use crate::source::watch::{DirWatcher, dir_of};

/// Why the loop looked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Source,
    Files,
    Resync,
}

/// True for file events that cannot matter: temp files and backups, the load check's canary,
/// and anything that is neither config.toml, under the certs dir, nor the containerd socket.
pub fn is_noise(p: &Path, paths: &Paths, socket: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if (name.starts_with('.') && name.ends_with(".tmp")) || name.ends_with(".regmirror.bak") {
        return true;
    }
    if p.components()
        .any(|c| c.as_os_str() == crate::reload::verify::CANARY_HOST)
    {
        return true;
    }
    !(p == paths.config || p.starts_with(&paths.certs_dir) || p == socket)
}

/// The file watchers; dropping them stops the events.
pub struct Watchers {
    _config: Option<DirWatcher>,
    _certs: Option<DirWatcher>,
    _socket: Option<DirWatcher>,
}

fn watch_dir(
    dir: &Path,
    recursive: bool,
    tx: &mpsc::UnboundedSender<Vec<PathBuf>>,
    what: &str,
) -> Option<DirWatcher> {
    DirWatcher::new(
        std::slice::from_ref(&dir.to_path_buf()),
        recursive,
        tx.clone(),
    )
    .map_err(|e| tracing::warn!(error = %e, "cannot watch {} for {what}", dir.display()))
    .ok()
}

/// Watch config.toml's directory, the certs dir, and the socket's directory.
pub fn watch_files(
    paths: &Paths,
    socket: &Path,
    tx: mpsc::UnboundedSender<Vec<PathBuf>>,
) -> Watchers {
    Watchers {
        _config: watch_dir(&dir_of(&paths.config), false, &tx, "drift"),
        _certs: watch_dir(&paths.certs_dir, true, &tx, "drift"),
        _socket: watch_dir(&dir_of(socket), false, &tx, "containerd restarts"),
    }
}

/// SIGTERM or SIGINT flips the returned receiver to `true`.
pub fn shutdown_on_signals() -> watch::Receiver<bool> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = stop_tx.send(true);
    });
    stop_rx
}

/// Wait until the burst is quiet for `debounce` (at most 5× it); a source change on the way
/// makes the trigger [`Trigger::Source`].
pub async fn debounce(
    mut trigger: Trigger,
    debounce: Duration,
    rx: &mut watch::Receiver<Desired>,
    pokes: &mut mpsc::UnboundedReceiver<Vec<PathBuf>>,
    shutdown: &mut watch::Receiver<bool>,
) -> Trigger {
    let deadline = tokio::time::Instant::now() + debounce * 5;
    loop {
        let quiet = tokio::time::sleep(debounce);
        tokio::select! {
            r = rx.changed() => { if r.is_err() { break; } trigger = Trigger::Source; }
            Some(_) = pokes.recv() => {}
            _ = quiet => break,
            _ = shutdown.changed() => break,
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
    }
    trigger
}
