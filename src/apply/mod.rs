//! Plan → changed files → write. Reads the files on disk, asks the pure renderer for the new
//! texts, and writes only what changed, under the lock, atomically, config.toml last. Says
//! whether containerd needs a restart (what it loads changed) or not (only hosts.toml / ca.crt,
//! or a change of spelling only).

pub mod diff;
mod execute;
mod key;
mod plan;
pub mod state;
mod temp;
pub mod write;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::render::{self, Choice, RenderError, WriteMode};
use crate::spec::RegistrySpec;
pub use execute::{execute, rollback};
pub use plan::{MAX_CONFIG_BYTES, MAX_FILE_BYTES, NEW_CONFIG, plan};
pub use state::{OwnedFile, State};

/// Where regmirror reads and writes.
#[derive(Debug, Clone)]
pub struct Paths {
    pub config: PathBuf,
    pub certs_dir: PathBuf,
    pub state_dir: PathBuf,
}

impl Paths {
    pub fn backup(&self) -> PathBuf {
        let mut name = self.config.as_os_str().to_owned();
        name.push(".regmirror.bak");
        PathBuf::from(name)
    }
    fn lock(&self) -> PathBuf {
        self.state_dir.join("lock")
    }
}

/// Why an apply or revert failed. Nothing on disk changed unless the message says a write failed
/// (then config.toml is still whole: every write is atomic).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("state file {}: {why}", path.display())]
    State { path: PathBuf, why: String },
    #[error("{} kept changing under regmirror (another writer); nothing more written, try again", path.display())]
    Changed { path: PathBuf },
    #[error(
        "not rolled back: the files or the state changed since this apply wrote them (another apply or an admin); they are left as they are"
    )]
    Superseded,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ApplyError + 'a {
    move |source| ApplyError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// One file the plan changes. `new: None` removes the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: PathBuf,
    pub old: Option<Vec<u8>>,
    pub new: Option<Vec<u8>>,
    pub old_mode: Option<u32>,
    pub mode: u32,
    /// The new contents hold credentials: the file is the caller's (root's), whoever owned it.
    pub secret: bool,
}

impl FileChange {
    /// The `---`/`+++` names of this change in a unified diff.
    pub fn diff_names(&self) -> (String, String) {
        let path = self.path.display().to_string();
        let old = if self.old.is_some() {
            path.clone()
        } else {
            "/dev/null".into()
        };
        let new = if self.new.is_some() {
            format!("{path} (regmirror)")
        } else {
            "/dev/null".into()
        };
        (old, new)
    }
}

/// What an apply or revert would do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Managed files first, config.toml last (the order they are written in).
    pub changes: Vec<FileChange>,
    pub state_before: State,
    pub state_after: State,
    pub restart_needed: bool,
    pub mode: Option<WriteMode>,
    pub warnings: Vec<String>,
    /// What containerd must show once it loaded this plan (`None`: revert).
    pub expect: Option<render::Expectation>,
    /// A fingerprint key made for this plan (none was on disk): written with it.
    new_key: Option<Vec<u8>>,
    /// What the plan was made from (config.toml first): written only while they are unchanged.
    inputs: Vec<(PathBuf, Option<write::Identity>)>,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty() && self.state_before == self.state_after
    }
    /// True when every input is still the file the plan was made from.
    fn inputs_unchanged(&self) -> bool {
        self.inputs.iter().all(|(p, id)| write::identity(p) == *id)
    }
}

/// What an apply did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub changed: Vec<PathBuf>,
    pub restart_needed: bool,
    pub mode: Option<WriteMode>,
    pub warnings: Vec<String>,
    pub expect: Option<render::Expectation>,
}

/// Load the state file (`State::default()` when there is none).
pub fn load_state(paths: &Paths) -> Result<State, ApplyError> {
    state::load(&paths.state_dir).map_err(|(path, why)| ApplyError::State { path, why })
}

/// How long `apply` waits for another regmirror holding the lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);
/// How many times a plan is made again when another writer changed config.toml meanwhile.
const REPLANS: usize = 8;

fn lock(paths: &Paths) -> Result<write::Lock, ApplyError> {
    write::Lock::acquire(&paths.lock(), LOCK_WAIT).map_err(io_err("lock", &paths.lock()))
}

/// Temp files of killed runs, in every directory regmirror writes to (under the lock).
fn remove_stale_temps(paths: &Paths, plan: &Plan) -> Result<(), ApplyError> {
    let mut dirs: Vec<PathBuf> = vec![paths.state_dir.clone(), paths.state_dir.join("saved")];
    for p in std::iter::once(&paths.config).chain(plan.changes.iter().map(|c| &c.path)) {
        if let Ok(t) = write::target(p)
            && let Some(d) = t.parent()
        {
            dirs.push(d.to_path_buf());
        }
    }
    dirs.extend(
        plan.state_before
            .files
            .iter()
            .filter_map(|f| f.path.parent())
            .map(Path::to_path_buf),
    );
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        write::remove_stale_temps(&d).map_err(io_err("clean", &d))?;
    }
    Ok(())
}

/// Lock, plan, write. `spec: None` reverts.
pub fn apply(
    paths: &Paths,
    spec: Option<&RegistrySpec>,
    choice: impl Into<Choice>,
) -> Result<Outcome, ApplyError> {
    apply_planned(paths, spec, choice).map(|(_, o)| o)
}

/// Like [`apply`], also returning the plan that was written (for a later [`rollback`]).
pub fn apply_planned(
    paths: &Paths,
    spec: Option<&RegistrySpec>,
    choice: impl Into<Choice>,
) -> Result<(Plan, Outcome), ApplyError> {
    let choice = choice.into();
    // A plan that cannot be made (bad config.toml, corrupt state, a file where a directory
    // belongs) is refused before the lock is taken: a refused apply leaves no trace at all, not
    // even the state directory or its lock file.
    let first = plan(paths, spec, choice)?;
    write_plan(paths, first, spec, choice)
}

/// Write `plan` under the lock, made again if its inputs changed before the lock was taken or
/// config.toml changed while it was written (bounded: [`REPLANS`]).
pub fn write_plan(
    paths: &Paths,
    mut plan: Plan,
    spec: Option<&RegistrySpec>,
    choice: Choice,
) -> Result<(Plan, Outcome), ApplyError> {
    let _lock = lock(paths)?;
    for attempt in 0..REPLANS {
        if !plan.inputs_unchanged() {
            plan = plan::plan(paths, spec, choice)?;
        }
        remove_stale_temps(paths, &plan)?;
        match execute(paths, &plan) {
            Err(ApplyError::Changed { .. }) => {
                // Give the other writer a moment to finish before reading again.
                std::thread::sleep(Duration::from_millis(5 * (attempt as u64 + 1)));
                plan = plan::plan(paths, spec, choice)?;
            }
            Ok(outcome) => return Ok((plan, outcome)),
            Err(e) => return Err(e),
        }
    }
    Err(ApplyError::Changed {
        path: paths.config.clone(),
    })
}
