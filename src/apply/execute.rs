//! Write a plan, and undo it: in-flight state → managed files → config.toml (its backup first)
//! → final state, every file atomic; config.toml only if it is still the file the plan read.

use std::path::{Path, PathBuf};

use super::state::{self, Durability, State};
use super::write::{self, Owner};
use super::{ApplyError, FileChange, Outcome, Paths, Plan, io_err};

fn save_state(paths: &Paths, s: &State) -> Result<(), ApplyError> {
    save_state_as(paths, s, Durability::Full)
}

fn save_state_as(paths: &Paths, s: &State, how: Durability) -> Result<(), ApplyError> {
    let path = State::path(&paths.state_dir);
    state::save(&paths.state_dir, s, how).map_err(io_err("write", &path))
}

fn owner(c: &FileChange) -> Owner {
    if c.secret { Owner::Caller } else { Owner::Keep }
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

/// Write (or remove) each changed file in plan order, config.toml's backup kept first and
/// config.toml itself only while it is still what the plan read. Counts replaced files.
fn write_changes(paths: &Paths, plan: &Plan, replaced: &mut usize) -> Result<(), ApplyError> {
    for c in &plan.changes {
        let is_config = c.path == paths.config;
        if is_config && let Some(old) = &c.old {
            let bak = paths.backup();
            write::write_atomic_lazy(
                &bak,
                old,
                c.old_mode.unwrap_or(0o600) & 0o600,
                Owner::Caller,
            )
            .map_err(io_err("write backup", &bak))?;
        }
        let expect = is_config.then(|| plan.inputs[0].1);
        match &c.new {
            Some(bytes) => write::write_atomic_checked(&c.path, bytes, c.mode, owner(c), expect)
                .map_err(|e| changed_or_io(e, &c.path))?,
            None => write::remove(&c.path).map_err(io_err("remove", &c.path))?,
        }
        *replaced += 1;
    }
    Ok(())
}

fn changed_or_io(e: std::io::Error, path: &Path) -> ApplyError {
    if write::is_changed_under_us(&e) {
        ApplyError::Changed {
            path: path.to_path_buf(),
        }
    } else {
        io_err("write", path)(e)
    }
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
    if let Some(key) = &plan.new_key {
        state::create_private_dir(&paths.state_dir).map_err(io_err("create", &paths.state_dir))?;
        super::key::save(&paths.state_dir, key)?;
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
    // With changes, the durable in-flight state above owns everything `after` does.
    let how = if plan.changes.is_empty() {
        Durability::Full
    } else {
        Durability::Settled
    };
    save_state_as(paths, &after, how)?;
    Ok(outcome)
}

/// True when the state is the one `plan` saved and every managed file still holds what it
/// wrote: no other regmirror (a manual apply) wrote since. config.toml is checked apart: an
/// edit by someone else is kept in the backup before the rollback replaces it (see
/// [`rollback`]).
fn still_ours(paths: &Paths, plan: &Plan) -> Result<bool, ApplyError> {
    for c in plan.changes.iter().filter(|c| c.path != paths.config) {
        let now = write::read_optional(&c.path, u64::MAX).map_err(io_err("read", &c.path))?;
        if now.map(|(b, _)| b) != c.new {
            return Ok(false);
        }
    }
    let now =
        state::load(&paths.state_dir).map_err(|(path, why)| ApplyError::State { path, why })?;
    let want = &plan.state_after;
    Ok(now.spec_hash == want.spec_hash && now.ownership == want.ownership && !now.in_flight)
}

/// config.toml was edited by someone else since the plan wrote it (during the restart): keep
/// that text in the backup, and say so, before the rollback puts the pre-apply bytes back.
fn keep_foreign_edit(paths: &Paths, plan: &Plan) -> Result<(), ApplyError> {
    let Some(c) = plan.changes.iter().find(|c| c.path == paths.config) else {
        return Ok(());
    };
    let now =
        write::read_optional(&c.path, super::MAX_CONFIG_BYTES).map_err(io_err("read", &c.path))?;
    if let Some((bytes, _)) = now
        && Some(&bytes) != c.new.as_ref()
    {
        let bak = paths.backup();
        write::write_atomic(&bak, &bytes, 0o600, Owner::Caller)
            .map_err(io_err("write backup", &bak))?;
        tracing::warn!(
            "{} was edited by someone else after regmirror wrote it; that text is kept in {} and the pre-apply bytes are put back",
            c.path.display(),
            bak.display()
        );
    }
    Ok(())
}

/// Undo an executed plan, under the lock: every changed file gets its pre-apply bytes (and mode)
/// back, and the state its pre-apply contents. Used by the health-check rollback: with `hold`,
/// the spec is also remembered as bad (`bad_spec_hash`), so the agent does not retry it until
/// the Secret changes; a one-shot `apply` rolls back without holding. Refused
/// ([`ApplyError::Superseded`]) when the files or the state changed since the plan was written.
pub fn rollback(paths: &Paths, plan: &Plan, hold: bool) -> Result<(), ApplyError> {
    let _lock = super::lock(paths)?;
    if !still_ours(paths, plan)? {
        return Err(ApplyError::Superseded);
    }
    let bad = if hold {
        plan.state_after.spec_hash.clone()
    } else {
        plan.state_before.bad_spec_hash.clone()
    };
    keep_foreign_edit(paths, plan)?;
    let mut inflight = plan.state_before.union(&plan.state_after);
    inflight.bad_spec_hash = bad.clone();
    save_state(paths, &inflight)?;
    for c in plan.changes.iter().rev() {
        match &c.old {
            Some(bytes) => {
                write::write_atomic(&c.path, bytes, c.old_mode.unwrap_or(c.mode), Owner::Keep)
                    .map_err(io_err("write", &c.path))?
            }
            None => write::remove(&c.path).map_err(io_err("remove", &c.path))?,
        }
    }
    let mut before = plan.state_before.clone();
    before.bad_spec_hash = bad;
    save_state(paths, &before)
}
