//! The file sources: a Secret manifest file, or a directory of key files as kubelet mounts a
//! Secret volume (`KEY -> ..data/KEY`, `..data -> ..2024_…`; hidden entries ignored).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::Desired;
use super::watch::{DirWatcher, dir_of};
use crate::spec::{self, ManifestError, SecretData};

/// Largest file read as a Secret manifest or key file.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Why a Secret could not be read from files.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: larger than {MAX_FILE_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Manifest {
        path: PathBuf,
        #[source]
        source: ManifestError,
    },
}

fn read_capped(path: &Path) -> Result<Vec<u8>, FileSourceError> {
    let io_err = |source| FileSourceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = fs::File::open(path).map_err(io_err)?;
    let mut buf = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(io_err)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(FileSourceError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(buf)
}

/// Read a manifest file and pick the Secret `name` (in `namespace` if the document names one).
pub fn read_manifest(
    path: &Path,
    name: &str,
    namespace: Option<&str>,
) -> Result<SecretData, FileSourceError> {
    let bytes = read_capped(path)?;
    let text = String::from_utf8_lossy(&bytes);
    spec::secret_data_from_manifest(&text, name, namespace).map_err(|source| {
        FileSourceError::Manifest {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Read a mounted Secret volume: every visible entry that is (or links to) a regular file.
pub fn read_secret_dir(dir: &Path) -> Result<SecretData, FileSourceError> {
    let io_err = |source| FileSourceError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = SecretData::new();
    for entry in fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name();
        let Some(key) = name.to_str() else { continue };
        if key.starts_with('.') {
            continue;
        }
        let path = entry.path();
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => {
                out.insert(key.to_string(), read_capped(&path)?);
            }
            _ => continue,
        }
    }
    Ok(out)
}

/// Where a file-based Secret lives.
#[derive(Debug, Clone)]
pub enum FileSecret {
    Manifest {
        path: PathBuf,
        name: String,
        namespace: Option<String>,
    },
    Dir(PathBuf),
}

impl FileSecret {
    pub fn read(&self) -> Result<SecretData, FileSourceError> {
        match self {
            FileSecret::Manifest {
                path,
                name,
                namespace,
            } => read_manifest(path, name, namespace.as_deref()),
            FileSecret::Dir(d) => read_secret_dir(d),
        }
    }

    /// The path to watch (the file, or the volume directory).
    pub fn path(&self) -> &Path {
        match self {
            FileSecret::Manifest { path, .. } => path,
            FileSecret::Dir(d) => d,
        }
    }
}

/// A reading of the source as the agent's loop takes it.
pub fn read_desired(secret: &FileSecret) -> Desired {
    match secret.read() {
        Ok(d) => Desired::Present(Ok(d)),
        Err(FileSourceError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Desired::Deleted
        }
        Err(e) => Desired::Present(Err(e.to_string())),
    }
}

/// Watch a Secret file or volume (its directory, re-armed when the directory comes and goes);
/// publish each new reading. Ends when the receiver is gone.
pub async fn run(secret: FileSecret, tx: watch::Sender<Desired>) {
    let (ptx, mut prx) = mpsc::unbounded_channel();
    let dir = dir_of(secret.path());
    let mut watched_exists = dir.exists();
    let mut _watcher = DirWatcher::new(std::slice::from_ref(&dir), false, ptx.clone()).ok();
    loop {
        let d = read_desired(&secret);
        let changed = tx.send_if_modified(|cur| {
            if *cur != d {
                *cur = d;
                true
            } else {
                false
            }
        });
        if changed {
            tracing::debug!("Secret source {} changed", secret.path().display());
        }
        if tx.is_closed() {
            return;
        }
        // Events only; the agent's --debounce lets a burst settle. A directory that is not
        // there (yet) cannot be watched: only then is it looked for again every 30 s.
        let poll = _watcher.is_none().then_some(Duration::from_secs(30));
        tokio::select! {
            _ = prx.recv() => while prx.try_recv().is_ok() {},
            _ = async {
                match poll {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        if dir.exists() != watched_exists {
            watched_exists = dir.exists();
            _watcher = DirWatcher::new(std::slice::from_ref(&dir), false, ptx.clone()).ok();
        }
    }
}
