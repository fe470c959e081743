//! Writing a plan: the state first, then the files (atomic, in plan order).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::apply::FileChange;
use crate::apply::write::{self, Owner};

use super::state::PodmanState;
use super::{PodmanError, PodmanPaths, PodmanPlan, io_err};

/// Write `plan`: the state first (with the directories it will create), then each change in
/// order; after a full revert, the directories regmirror made and the state file go.
pub(super) fn execute(paths: &PodmanPaths, plan: &PodmanPlan) -> Result<(), PodmanError> {
    if plan.is_noop() {
        return Ok(());
    }
    let mut created: Vec<PathBuf> = plan.state_before.dirs.clone();
    // The state goes first: a crash between writes still leaves what revert needs.
    let mut state = plan.state_after.clone();
    if !state.is_empty() {
        // Directories this apply will create are recorded before they exist.
        record_missing_dirs(plan, &mut created);
        state.dirs = created.clone();
        write_state(paths, &state)?;
    }
    for c in &plan.changes {
        write_change(c)?;
    }
    if state.is_empty() {
        // Reverted: the directories regmirror made go too (when empty), innermost first.
        for d in created.iter().rev() {
            write::remove_dir_if_empty(d).map_err(io_err("rmdir", d))?;
        }
        let state_path = paths.state();
        write::remove(&state_path).map_err(io_err("remove", &state_path))?;
    }
    Ok(())
}

/// Write the state `s` to its file (0600), creating the state dir.
fn write_state(paths: &PodmanPaths, s: &PodmanState) -> Result<(), PodmanError> {
    let state_path = paths.state();
    let mut json = serde_json::to_vec_pretty(s).expect("json");
    json.push(b'\n');
    write::create_dirs(&paths.state_dir).map_err(io_err("mkdir", &paths.state_dir))?;
    write::write_atomic(&state_path, &json, 0o600, Owner::Caller)
        .map_err(io_err("write", &state_path))
}

/// Append to `created` (outermost first, each once) the missing parent directories of the
/// files `plan` writes.
fn record_missing_dirs(plan: &PodmanPlan, created: &mut Vec<PathBuf>) {
    let mut dirs: BTreeSet<PathBuf> = plan.state_before.dirs.iter().cloned().collect();
    for c in plan.changes.iter().filter(|c| c.new.is_some()) {
        if let Some(d) = c.path.parent() {
            for m in missing_ancestors(d) {
                if dirs.insert(m.clone()) {
                    created.push(m);
                }
            }
        }
    }
}

/// `d` and its parents that do not exist, outermost first.
fn missing_ancestors(d: &Path) -> Vec<PathBuf> {
    let mut missing = Vec::new();
    let mut cur = Some(d);
    while let Some(x) = cur {
        if x.as_os_str().is_empty() || x.exists() {
            break;
        }
        missing.push(x.to_path_buf());
        cur = x.parent();
    }
    missing.reverse();
    missing
}

/// Apply one change: write the file atomically (creating its directory, cleaning stale
/// temporaries), or remove it.
fn write_change(c: &FileChange) -> Result<(), PodmanError> {
    match &c.new {
        Some(bytes) => {
            if let Some(d) = c.path.parent() {
                write::create_dirs(d).map_err(io_err("mkdir", d))?;
            }
            write::remove_stale_temps(c.path.parent().unwrap_or(Path::new(".")))
                .map_err(io_err("clean", &c.path))?;
            let owner = if c.secret { Owner::Caller } else { Owner::Keep };
            write::write_atomic(&c.path, bytes, c.mode, owner).map_err(io_err("write", &c.path))
        }
        None => write::remove(&c.path).map_err(io_err("remove", &c.path)),
    }
}
