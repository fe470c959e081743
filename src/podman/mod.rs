//! `--runtime podman|crio`: plan, apply and revert the containers-registries.conf files
//! (Podman, CRI-O, Buildah, Skopeo) that [`crate::render::registries`] renders: one drop-in owned
//! by regmirror, the CA file in the containers certs dir, and regmirror's entry in the auth file.
//!
//! - [`state`]: `<state-dir>/podman-state.json` (0600) records every file regmirror wrote and
//!   what was there before (bytes and mode, base64), so `revert` is byte-exact.
//! - [`auth`]: the auth file is shared with the admin: only `auths."<DOMAIN>"` is regmirror's.
//! - [`exec`]: every write is atomic, under the same lock as the containerd path
//!   (`<state-dir>/lock`).
//! - [`diff`] / [`cli`]: what `diff`, `apply` and `revert` print.
//! - [`resolve`]: which URLs containers/image tries for an image, from the files on disk.
//! - [`crio`]: CRI-O's reload (`systemctl reload crio` or SIGHUP); Podman reads these files at
//!   every pull: nothing is reloaded.
//! - [`auto`]: `--runtime auto`, which runtime this node has.

pub mod auth;
pub mod auto;
pub mod cli;
pub mod crio;
pub mod diff;
pub mod exec;
pub mod resolve;
pub mod state;

use std::io;
use std::path::{Path, PathBuf};

use crate::apply::FileChange;
use crate::apply::write;
use crate::render::registries::{self, RegistriesError};
use crate::spec::RegistrySpec;

pub use cli::{cli_apply, cli_apply_for, cli_diff, cli_diff_for};
pub use diff::unified_diff;
pub use state::{AuthRecord, Owned, PodmanState, load_state};

use auth::auth_plan;
use exec::execute;
use state::slot;

/// The state file's name in the state dir.
pub const STATE_NAME: &str = "podman-state.json";
/// Largest file regmirror reads here.
const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Where the containers files are.
#[derive(Debug, Clone)]
pub struct PodmanPaths {
    /// The drop-in directory (`/etc/containers/registries.conf.d`).
    pub conf_d: PathBuf,
    /// The certs dir (`/etc/containers/certs.d`).
    pub certs_dir: PathBuf,
    /// The auth file (`/etc/containers/auth.json`).
    pub auth_file: PathBuf,
    pub state_dir: PathBuf,
}

impl PodmanPaths {
    pub fn drop_in(&self) -> PathBuf {
        self.conf_d.join(registries::DROP_IN_NAME)
    }
    pub fn state(&self) -> PathBuf {
        self.state_dir.join(STATE_NAME)
    }
    pub(super) fn lock(&self) -> PathBuf {
        self.state_dir.join("lock")
    }
}

/// Why a podman plan or write failed (exit 2). A refused plan wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum PodmanError {
    #[error(transparent)]
    Render(#[from] RegistriesError),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {why}", path.display())]
    Refused { path: PathBuf, why: String },
    /// The files are written; CRI-O's reload failed.
    #[error(transparent)]
    Reload(#[from] crio::CrioError),
}

pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> PodmanError + 'a {
    move |source| PodmanError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What an apply or revert would do.
#[derive(Debug, Clone)]
pub struct PodmanPlan {
    /// In write order: CA, auth file, drop-in last.
    pub changes: Vec<FileChange>,
    pub state_before: PodmanState,
    pub state_after: PodmanState,
    pub warnings: Vec<String>,
}

impl PodmanPlan {
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty() && self.state_before == self.state_after
    }
}

pub(super) fn read(path: &Path) -> Result<Option<(Vec<u8>, u32)>, PodmanError> {
    write::read_optional(path, MAX_BYTES).map_err(io_err("read", path))
}

pub(super) fn change(
    path: &Path,
    current: &Option<(Vec<u8>, u32)>,
    new: Option<(Vec<u8>, u32)>,
    secret: bool,
) -> Option<FileChange> {
    let same = match (current, &new) {
        (None, None) => true,
        (Some((a, am)), Some((b, bm))) => a == b && am == bm,
        _ => false,
    };
    (!same).then(|| FileChange {
        path: path.to_path_buf(),
        old: current.as_ref().map(|(b, _)| b.clone()),
        new: new.as_ref().map(|(b, _)| b.clone()),
        old_mode: current.as_ref().map(|(_, m)| *m),
        mode: new.as_ref().map(|(_, m)| *m).unwrap_or(0o644),
        secret,
    })
}

/// Plan an apply of `spec`, or (`None`) a revert. Pure but for reading the files.
pub fn plan(paths: &PodmanPaths, spec: Option<&RegistrySpec>) -> Result<PodmanPlan, PodmanError> {
    let state_before = load_state(paths)?;
    // What regmirror wants now (rendered first: a refusal reads nothing more).
    let conf = spec.map(registries::render_conf).transpose()?;
    let drop_in = paths.drop_in();
    let desired = desired_files(paths, spec, conf, &drop_in);
    let warnings = conf_d_warnings(paths, spec);

    let mut changes = Vec::new();
    let files = owned_file_changes(&state_before, &desired, &mut changes)?;
    // The auth file: only regmirror's key.
    let auth = auth_plan(paths, spec, &state_before, &mut changes)?;
    // Drop-in last: the runtime sees the mirror only once its CA and credentials are there.
    if let Some(i) = changes.iter().position(|c| c.path == drop_in) {
        let c = changes.remove(i);
        changes.push(c);
    }
    let mut state_after = PodmanState {
        files,
        auth,
        dirs: state_before.dirs.clone(),
    };
    if state_after.is_empty() {
        state_after = PodmanState::default();
    }
    Ok(PodmanPlan {
        changes,
        state_before,
        state_after,
        warnings,
    })
}

/// The plain files regmirror wants now, with their contents: `spec`'s CA file, then the
/// rendered drop-in `conf` at `drop_in`.
fn desired_files(
    paths: &PodmanPaths,
    spec: Option<&RegistrySpec>,
    conf: Option<String>,
    drop_in: &Path,
) -> Vec<(PathBuf, Vec<u8>)> {
    let ca = spec.and_then(|s| {
        s.ca.as_ref().map(|ca| {
            (
                paths.certs_dir.join(s.domain.to_string()).join("ca.crt"),
                ca.pem.clone().into_bytes(),
            )
        })
    });
    let mut desired: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    desired.extend(ca);
    if let Some(c) = conf {
        desired.push((drop_in.to_path_buf(), c.into_bytes()));
    }
    desired
}

/// The warning of an apply into a drop-in directory that does not exist yet.
fn conf_d_warnings(paths: &PodmanPaths, spec: Option<&RegistrySpec>) -> Vec<String> {
    let mut warnings = Vec::new();
    if spec.is_some() && !paths.conf_d.is_dir() {
        warnings.push(format!(
            "{} does not exist: it is created; a runtime reads drop-ins only from its own registries.conf.d",
            paths.conf_d.display()
        ));
    }
    warnings
}

/// The changes of the plain owned files (every path the old state owns, plus `desired`),
/// added to `changes`; returns the records of the files regmirror owns after them.
fn owned_file_changes(
    state_before: &PodmanState,
    desired: &[(PathBuf, Vec<u8>)],
    changes: &mut Vec<FileChange>,
) -> Result<Vec<Owned>, PodmanError> {
    let mut files = Vec::new();
    let mut all: Vec<PathBuf> = state_before
        .files
        .iter()
        .map(|f| f.path.clone())
        .filter(|p| !desired.iter().any(|(d, _)| d == p))
        .collect();
    all.extend(desired.iter().map(|(p, _)| p.clone()));
    for p in &all {
        let s = slot(p, state_before)?;
        let want = desired.iter().find(|(d, _)| d == p);
        let new = match want {
            Some((_, bytes)) => {
                files.push(Owned {
                    path: s.path.clone(),
                    previous: s.record.clone(),
                });
                Some((bytes.clone(), 0o644))
            }
            None => s.base.clone(),
        };
        changes.extend(change(&s.path, &s.current, new, false));
    }
    Ok(files)
}

/// How long an apply waits for another regmirror holding the lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Plan (refusing bad input before anything is touched), lock, plan again, write. `spec:
/// None` reverts. Returns the plan that was written.
pub fn apply(paths: &PodmanPaths, spec: Option<&RegistrySpec>) -> Result<PodmanPlan, PodmanError> {
    plan(paths, spec)?;
    let _lock =
        write::Lock::acquire(&paths.lock(), LOCK_WAIT).map_err(io_err("lock", &paths.lock()))?;
    let plan = plan(paths, spec)?;
    execute(paths, &plan)?;
    Ok(plan)
}
