//! Plan → changed files → write. Reads the files on disk, asks the pure renderer for the new
//! texts, and writes only what changed, under the lock, atomically, config.toml last. Says
//! whether containerd needs a restart (config.toml changed) or not (only hosts.toml / ca.crt).

pub mod state;
pub mod write;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;

use crate::render::{self, Choice, RenderError, RenderInput, WriteMode};
use crate::spec::RegistrySpec;
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
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty() && self.state_before == self.state_after
    }
}

/// The text regmirror starts from when config.toml does not exist.
pub const NEW_CONFIG: &str = "version = 2\n";

/// Load the state file (`State::default()` when there is none).
pub fn load_state(paths: &Paths) -> Result<State, ApplyError> {
    let path = State::path(&paths.state_dir);
    match write::read_optional(&path).map_err(io_err("read", &path))? {
        None => Ok(State::default()),
        Some((bytes, _)) => serde_json::from_slice(&bytes).map_err(|e| ApplyError::State {
            path: path.clone(),
            why: format!(
                "does not parse ({e}); move it away only if config.toml holds no regmirror entries"
            ),
        }),
    }
}

fn save_state(paths: &Paths, state: &State) -> Result<(), ApplyError> {
    let path = State::path(&paths.state_dir);
    if state.is_empty() && !state.in_flight && state.bad_spec_hash.is_none() {
        return write::remove(&path).map_err(io_err("remove", &path));
    }
    write::create_dirs(&paths.state_dir).map_err(io_err("create", &paths.state_dir))?;
    let json = serde_json::to_vec_pretty(state).expect("state serializes");
    write::write_atomic(&path, &json, 0o600).map_err(io_err("write", &path))
}

/// `imports` patterns of config.toml, expanded (`*` in the file name only), with their texts.
fn read_imports(config: &str) -> Vec<(PathBuf, String)> {
    let Ok(doc) = config.parse::<toml_edit::DocumentMut>() else {
        return Vec::new();
    };
    let Some(arr) = doc.get("imports").and_then(|i| i.as_array()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for pat in arr.iter().filter_map(|v| v.as_str()) {
        let p = Path::new(pat);
        let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) else {
            continue;
        };
        let matches = |f: &str| match name.split_once('*') {
            Some((a, b)) => f.len() >= a.len() + b.len() && f.starts_with(a) && f.ends_with(b),
            None => f == name,
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_str().is_some_and(matches))
            .map(|e| e.path())
            .collect();
        found.sort();
        for f in found {
            if let Ok(text) = std::fs::read_to_string(&f) {
                out.push((f, text));
            }
        }
    }
    out
}

/// config.toml as it is (bytes and mode), or `None` when it does not exist.
type Current = Option<(Vec<u8>, u32)>;

/// config.toml's text (the starting text when it does not exist).
fn current_text(current: &Current) -> Result<String, ApplyError> {
    match current {
        Some((bytes, _)) => {
            String::from_utf8(bytes.clone()).map_err(|_| ApplyError::Render(RenderError::NotUtf8))
        }
        None => Ok(NEW_CONFIG.to_string()),
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Changes for the managed files wanted now; records them (and what they replace) in `after`.
fn wanted_files(
    rendered: &render::Rendered,
    before: &State,
    after: &mut State,
) -> Result<Vec<FileChange>, ApplyError> {
    let mut changes = Vec::new();
    for f in &rendered.files {
        let disk = write::read_optional(&f.path).map_err(io_err("read", &f.path))?;
        let previous = match before.files.iter().find(|o| o.path == f.path) {
            Some(o) => o.previous.clone(),
            None => disk.as_ref().map(|(b, m)| (b64(b), *m)),
        };
        after.files.push(OwnedFile {
            path: f.path.clone(),
            previous,
        });
        if disk
            .as_ref()
            .is_some_and(|(b, m)| *b == f.contents && *m == f.mode)
        {
            continue;
        }
        changes.push(FileChange {
            path: f.path.clone(),
            old: disk.as_ref().map(|(b, _)| b.clone()),
            old_mode: disk.as_ref().map(|(_, m)| *m),
            new: Some(f.contents.clone()),
            mode: f.mode,
        });
    }
    Ok(changes)
}

/// Changes that give back what was there before, for managed files no longer wanted.
fn released_files(
    rendered: &render::Rendered,
    before: &State,
    state_path: &Path,
) -> Result<Vec<FileChange>, ApplyError> {
    let mut changes = Vec::new();
    for o in before
        .files
        .iter()
        .filter(|o| !rendered.files.iter().any(|f| f.path == o.path))
    {
        let disk = write::read_optional(&o.path).map_err(io_err("read", &o.path))?;
        let (new, mode) = match &o.previous {
            Some((b64, m)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| ApplyError::State {
                        path: state_path.to_path_buf(),
                        why: format!(
                            "previous contents of {} do not decode: {e}",
                            o.path.display()
                        ),
                    })?;
                (Some(bytes), *m)
            }
            None => (None, 0o644),
        };
        if disk.as_ref().map(|(b, _)| b) != new.as_ref() {
            changes.push(FileChange {
                path: o.path.clone(),
                old: disk.as_ref().map(|(b, _)| b.clone()),
                old_mode: disk.as_ref().map(|(_, m)| *m),
                new,
                mode,
            });
        }
    }
    Ok(changes)
}

/// The change of config.toml itself, if any: the new text (or its removal when regmirror
/// created the file and the revert leaves the starting text), 0600 while it holds credentials.
fn config_change(
    paths: &Paths,
    spec: Option<&RegistrySpec>,
    rendered: render::Rendered,
    current: &Current,
    after: &State,
    before: &State,
) -> Option<FileChange> {
    let cur_mode = current.as_ref().map(|(_, m)| *m);
    let holds_secret =
        spec.is_some_and(|s| s.credentials.is_some()) && rendered.mode == Some(WriteMode::Legacy);
    let original_mode = after.config_mode_before.unwrap_or(0o644);
    let mode = if holds_secret { 0o600 } else { original_mode };
    let removed = spec.is_none() && before.config_created && rendered.config == NEW_CONFIG;
    let new = (!removed).then(|| rendered.config.into_bytes());
    let changed = current.as_ref().map(|(b, _)| b) != new.as_ref()
        || (new.is_some() && cur_mode.is_some_and(|m| m != mode));
    changed.then(|| FileChange {
        path: paths.config.clone(),
        old: current.as_ref().map(|(b, _)| b.clone()),
        old_mode: cur_mode,
        new,
        mode,
    })
}

/// The state after the plan (its managed files are filled in by [`wanted_files`]).
fn next_state(
    paths: &Paths,
    spec: Option<&RegistrySpec>,
    rendered: &render::Rendered,
    current: &Current,
    before: &State,
) -> State {
    State {
        config: paths.config.clone(),
        config_created: before.config_created || (current.is_none() && spec.is_some()),
        config_mode_before: before
            .config_mode_before
            .or(current.as_ref().map(|(_, m)| *m)),
        mode: rendered.mode,
        spec_hash: spec.map(RegistrySpec::hash),
        ownership: rendered.ownership.clone(),
        files: Vec::new(),
        created_dirs: before.created_dirs.clone(),
        in_flight: false,
        bad_spec_hash: before.bad_spec_hash.clone(),
    }
}

/// Compute what applying `spec` (or reverting, with `None`) would change. Reads only.
pub fn plan(
    paths: &Paths,
    spec: Option<&RegistrySpec>,
    choice: impl Into<Choice>,
) -> Result<Plan, ApplyError> {
    let choice = choice.into();
    let before = load_state(paths)?;
    let current = write::read_optional(&paths.config).map_err(io_err("read", &paths.config))?;
    let text = current_text(&current)?;
    let rendered = render::render(&RenderInput {
        config: &text,
        prior: &before.ownership,
        spec,
        mode: choice.mode,
        certs_dir: &paths.certs_dir,
        containerd: choice.containerd,
    })?;
    let mut warnings = spec.map(|s| s.warnings.clone()).unwrap_or_default();
    warnings.extend(rendered.warnings.iter().cloned());
    if spec.is_some() {
        warnings.extend(render::import_warnings(&text, &read_imports(&text)));
    }
    let mut after = next_state(paths, spec, &rendered, &current, &before);
    let mut changes = wanted_files(&rendered, &before, &mut after)?;
    changes.extend(released_files(
        &rendered,
        &before,
        &State::path(&paths.state_dir),
    )?);
    let (mode, expect) = (rendered.mode, rendered.expect.clone());
    let config = config_change(paths, spec, rendered, &current, &after, &before);
    let restart_needed = config.is_some();
    changes.extend(config);
    if spec.is_none() {
        after.config_created = false;
        after.config_mode_before = None;
        after.spec_hash = None;
        after.mode = None;
    }
    Ok(Plan {
        restart_needed,
        changes,
        state_before: before,
        state_after: after,
        mode,
        warnings,
        expect,
    })
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

/// Create the parent directories of every change; record the new ones in `after` and
/// `inflight`, and every one made now in `created_now` (also when a later one fails).
fn make_parents(
    plan: &Plan,
    after: &mut State,
    inflight: &mut State,
    created_now: &mut Vec<PathBuf>,
) -> Result<(), ApplyError> {
    for parent in plan.changes.iter().filter_map(|c| c.path.parent()) {
        for d in write::create_dirs(parent).map_err(io_err("create", parent))? {
            created_now.push(d.clone());
            if !after.created_dirs.contains(&d) {
                after.created_dirs.push(d.clone());
                inflight.created_dirs.push(d);
            }
        }
    }
    Ok(())
}

/// Write (or remove) each changed file in plan order, config.toml's backup kept first.
/// Counts the files replaced so far in `replaced`.
fn write_changes(paths: &Paths, plan: &Plan, replaced: &mut usize) -> Result<(), ApplyError> {
    for c in &plan.changes {
        if c.path == paths.config
            && let Some(old) = &c.old
        {
            let bak = paths.backup();
            write::write_atomic(&bak, old, c.old_mode.unwrap_or(0o600) & 0o600)
                .map_err(io_err("write backup", &bak))?;
        }
        match &c.new {
            Some(bytes) => {
                write::write_atomic(&c.path, bytes, c.mode).map_err(io_err("write", &c.path))?
            }
            None => write::remove(&c.path).map_err(io_err("remove", &c.path))?,
        }
        *replaced += 1;
    }
    Ok(())
}

/// Remove the directories regmirror created and no longer needs; drop the backup once nothing
/// is owned any more.
fn tidy(paths: &Paths, after: &mut State) -> Result<(), ApplyError> {
    let wanted: Vec<&Path> = after.files.iter().filter_map(|f| f.path.parent()).collect();
    let mut dirs = after.created_dirs.clone();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    let mut gone = Vec::new();
    for d in dirs
        .into_iter()
        .filter(|d| !wanted.iter().any(|w| w.starts_with(d)))
    {
        write::remove_dir_if_empty(&d).map_err(io_err("remove", &d))?;
        if !d.exists() {
            gone.push(d);
        }
    }
    after.created_dirs.retain(|x| !gone.contains(x));
    if after.is_empty() {
        // Fully reverted: the backup of a file regmirror no longer touches is not ours to keep.
        let bak = paths.backup();
        write::remove(&bak).map_err(io_err("remove", &bak))?;
    }
    Ok(())
}

/// Write a plan: in-flight state (union of before and after) → managed files → config.toml
/// (backup kept first) → final state. A crash at any point leaves whole files and a state that
/// owns everything regmirror may have written, so the next apply converges.
pub fn execute(paths: &Paths, plan: &Plan) -> Result<Outcome, ApplyError> {
    let outcome = Outcome {
        changed: plan.changes.iter().map(|c| c.path.clone()).collect(),
        restart_needed: plan.restart_needed,
        mode: plan.mode,
        warnings: plan.warnings.clone(),
        expect: plan.expect.clone(),
    };
    if plan.is_noop() {
        return Ok(outcome);
    }
    let mut after = plan.state_after.clone();
    if !plan.changes.is_empty() {
        let mut inflight = plan.state_before.union(&plan.state_after);
        let mut created_now = Vec::new();
        let mut replaced = 0usize;
        let result = make_parents(plan, &mut after, &mut inflight, &mut created_now)
            .and_then(|()| save_state(paths, &inflight))
            .and_then(|()| write_changes(paths, plan, &mut replaced));
        if let Err(e) = result {
            if replaced == 0 {
                // Nothing was replaced: leave no trace (directories made now, the in-flight
                // state). Best effort; the error that matters is `e`.
                let _ = save_state(paths, &plan.state_before);
                for d in created_now.iter().rev() {
                    let _ = write::remove_dir_if_empty(d);
                }
            }
            // Otherwise the in-flight state owns everything written so far: the next apply
            // converges from there.
            return Err(e);
        }
    }
    tidy(paths, &mut after)?;
    save_state(paths, &after)?;
    Ok(outcome)
}

/// How long `apply` waits for another regmirror holding the lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

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
    // even the state directory or its lock file. The plan is made again under the lock.
    plan(paths, spec, choice)?;
    let _lock =
        write::Lock::acquire(&paths.lock(), LOCK_WAIT).map_err(io_err("lock", &paths.lock()))?;
    let plan = plan(paths, spec, choice)?;
    let outcome = execute(paths, &plan)?;
    Ok((plan, outcome))
}

/// Undo an executed plan: every changed file gets its pre-apply bytes (and mode) back, and the
/// state file its pre-apply contents. Used by the health-check rollback: with `hold`, the spec
/// is also remembered as bad (`bad_spec_hash`), so the agent does not retry it until the Secret
/// changes; a one-shot `apply` rolls back without holding (the admin sees the error and decides).
pub fn rollback(paths: &Paths, plan: &Plan, hold: bool) -> Result<(), ApplyError> {
    let _lock =
        write::Lock::acquire(&paths.lock(), LOCK_WAIT).map_err(io_err("lock", &paths.lock()))?;
    let bad = if hold {
        plan.state_after.spec_hash.clone()
    } else {
        plan.state_before.bad_spec_hash.clone()
    };
    let mut inflight = plan.state_before.union(&plan.state_after);
    inflight.bad_spec_hash = bad.clone();
    save_state(paths, &inflight)?;
    for c in plan.changes.iter().rev() {
        match &c.old {
            Some(bytes) => write::write_atomic(&c.path, bytes, c.old_mode.unwrap_or(c.mode))
                .map_err(io_err("write", &c.path))?,
            None => write::remove(&c.path).map_err(io_err("remove", &c.path))?,
        }
    }
    let mut before = plan.state_before.clone();
    before.bad_spec_hash = bad;
    save_state(paths, &before)
}
