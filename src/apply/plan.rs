//! Plan: read config.toml, the state and the managed files, ask the pure renderer for the new
//! texts, and say which files change and whether containerd must restart. Reads only.

use std::path::{Path, PathBuf};

use base64::Engine;

use super::state::{self, OwnedFile, State};
use super::write::{self, Identity};
use super::{ApplyError, FileChange, Paths, Plan, io_err};
use crate::render::{self, Choice, RenderError, RenderInput, WriteMode};
use crate::spec::RegistrySpec;

/// The text regmirror starts from when config.toml does not exist.
pub const NEW_CONFIG: &str = "version = 2\n";
/// The largest config.toml regmirror reads (memory: see BENCHMARKS.md).
pub const MAX_CONFIG_BYTES: u64 = 2 << 20;
/// The largest hosts.toml, CA file or imported file regmirror reads.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// config.toml as it is, or `None` when it does not exist.
type Current = Option<write::Read>;

/// config.toml's text (the starting text when it does not exist), taken out of `current`
/// without a copy (one copy of a large file alive while it is parsed); [`give_back_text`]
/// returns it.
fn current_text(current: &mut Current) -> Result<String, ApplyError> {
    match current {
        Some(r) => String::from_utf8(std::mem::take(&mut r.bytes)).map_err(|e| {
            r.bytes = e.into_bytes();
            RenderError::NotUtf8.into()
        }),
        None => Ok(NEW_CONFIG.to_string()),
    }
}

/// Put config.toml's bytes back into `current` once the render no longer needs its text.
fn give_back_text(current: &mut Current, text: String) {
    if let Some(r) = current {
        r.bytes = text.into_bytes();
    }
}

/// config.toml's `imports` patterns, expanded (`*` in the file name only), with their texts.
/// Only regular files up to [`MAX_FILE_BYTES`] are read; others are skipped.
fn read_imports(patterns: &[String]) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for pat in patterns {
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
            if let Ok(Some((bytes, _))) = write::read_optional(&f, MAX_FILE_BYTES)
                && let Ok(text) = String::from_utf8(bytes)
            {
                out.push((f, text));
            }
        }
    }
    out
}

/// What was at a managed path before regmirror: the state's record, else what is on disk now,
/// unless that is a file regmirror wrote itself (its header: an earlier apply whose state was
/// lost).
fn previous_of(
    path: &Path,
    before: &State,
    disk: &Option<(Vec<u8>, u32)>,
) -> Option<(String, u32)> {
    match before.files.iter().find(|o| o.path == path) {
        Some(o) => o.previous.clone(),
        None => disk
            .as_ref()
            .filter(|(b, _)| !b.starts_with(render::hosts::HEADER.as_bytes()))
            .map(|(b, m)| (b64(b), *m)),
    }
}

/// Changes for the managed files wanted now; records them (and what they replace) in `after`.
fn wanted_files(
    rendered: &render::Rendered,
    before: &State,
    after: &mut State,
) -> Result<Vec<FileChange>, ApplyError> {
    let mut changes = Vec::new();
    for f in &rendered.files {
        let disk =
            write::read_optional(&f.path, MAX_FILE_BYTES).map_err(io_err("read", &f.path))?;
        after.files.push(OwnedFile {
            path: f.path.clone(),
            previous: previous_of(&f.path, before, &disk),
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
            secret: f.mode == 0o600,
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
        let disk =
            write::read_optional(&o.path, MAX_FILE_BYTES).map_err(io_err("read", &o.path))?;
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
                secret: new.as_ref().is_some() && mode == 0o600,
                new,
                mode,
            });
        }
    }
    Ok(changes)
}

/// The change of config.toml itself, if any, and whether containerd must restart for it: the
/// new text (or its removal when regmirror created the file and the revert leaves the starting
/// text), 0600 while it holds credentials. A text that means what the file already means is not
/// written (only a mode change is), and needs no restart.
fn config_change(
    paths: &Paths,
    spec: Option<&RegistrySpec>,
    rendered: render::Rendered,
    current: Current,
    after: &State,
    before: &State,
) -> (Option<FileChange>, bool) {
    let cur_mode = current.as_ref().map(|r| r.mode);
    let holds_secret =
        spec.is_some_and(|s| s.credentials.is_some()) && rendered.mode == Some(WriteMode::Legacy);
    let original_mode = after.config_mode_before.unwrap_or(0o644);
    let mode = if holds_secret { 0o600 } else { original_mode };
    let removed = spec.is_none() && before.config_created && rendered.config == NEW_CONFIG;
    let meaning_changed = rendered.meaning_changed;
    let mut new = (!removed).then(|| rendered.config.into_bytes());
    let old = current.map(|r| r.bytes);
    let mut restart = old != new;
    if restart && old.is_some() && new.is_some() && !meaning_changed {
        new = old.clone();
        restart = false;
    }
    let changed = restart || (new.is_some() && cur_mode.is_some_and(|m| m != mode));
    let change = changed.then(|| FileChange {
        path: paths.config.clone(),
        old,
        old_mode: cur_mode,
        new,
        mode,
        secret: holds_secret,
    });
    (change, restart)
}

/// The state after the plan (its managed files are filled in by [`wanted_files`]).
fn next_state(
    paths: &Paths,
    spec: Option<&RegistrySpec>,
    rendered: &render::Rendered,
    current: &Current,
    before: &State,
    key: &[u8],
) -> State {
    State {
        config: paths.config.clone(),
        certs_dir: paths.certs_dir.clone(),
        config_created: before.config_created || (current.is_none() && spec.is_some()),
        config_mode_before: before
            .config_mode_before
            .or(current.as_ref().map(|r| r.mode)),
        mode: rendered.mode,
        spec_hash: spec.map(|s| s.fingerprint(key)),
        ownership: rendered.ownership.clone(),
        files: Vec::new(),
        created_dirs: before.created_dirs.clone(),
        in_flight: false,
        bad_spec_hash: before.bad_spec_hash.clone(),
    }
}

/// The identity of every input a plan was made from (config.toml, state.json, managed files):
/// a plan made before the lock is written only if all are unchanged under it.
/// config.toml comes first, with the identity it had when it was read.
fn inputs_of(
    paths: &Paths,
    config: Option<Identity>,
    files: &[PathBuf],
) -> Vec<(PathBuf, Option<Identity>)> {
    let mut all = vec![(paths.config.clone(), config)];
    all.extend(
        std::iter::once(State::path(&paths.state_dir))
            .chain(files.iter().cloned())
            .map(|p| {
                let id = write::identity(&p);
                (p, id)
            }),
    );
    all
}

/// The state must belong to these paths and name only files under the certs dir or a
/// `config_path` directory of config.toml.
fn check_bound(
    paths: &Paths,
    before: &State,
    rendered: &render::Rendered,
) -> Result<(), ApplyError> {
    let mut roots = vec![paths.certs_dir.clone()];
    roots.extend(rendered.config_path_dirs.iter().cloned());
    before
        .check_bound(&paths.config, &paths.certs_dir, &roots)
        .map_err(|why| ApplyError::State {
            path: State::path(&paths.state_dir),
            why,
        })
}

/// The Secret's, the render's and the imported drop-ins' warnings.
fn warnings_of(spec: Option<&RegistrySpec>, rendered: &render::Rendered) -> Vec<String> {
    let mut warnings = spec.map(|s| s.warnings.clone()).unwrap_or_default();
    warnings.extend(rendered.warnings.iter().cloned());
    if spec.is_some() {
        let imported = read_imports(&rendered.imports);
        warnings.extend(render::import_warnings(rendered.version, &imported));
    }
    warnings
}

/// After a revert the state remembers nothing about config.toml or a spec.
fn forget_spec(after: &mut State) {
    after.config_created = false;
    after.config_mode_before = None;
    after.spec_hash = None;
    after.mode = None;
}

/// Compute what applying `spec` (or reverting, with `None`) would change. Reads only.
pub fn plan(
    paths: &Paths,
    spec: Option<&RegistrySpec>,
    choice: impl Into<Choice>,
) -> Result<Plan, ApplyError> {
    let choice = choice.into();
    let state_path = State::path(&paths.state_dir);
    let before =
        state::load(&paths.state_dir).map_err(|(path, why)| ApplyError::State { path, why })?;
    let (key, new_key) = super::key::load(&paths.state_dir)?;
    let mut current = write::read_regular(&paths.config, MAX_CONFIG_BYTES)
        .map_err(io_err("read", &paths.config))?;
    let config_identity = current.as_ref().map(|r| r.identity);
    let text = current_text(&mut current)?;
    let rendered = render::render(&RenderInput {
        config: &text,
        prior: &before.ownership,
        spec,
        mode: choice.mode,
        certs_dir: &paths.certs_dir,
        containerd: choice.containerd,
        hosts: choice.hosts,
    })?;
    give_back_text(&mut current, text);
    check_bound(paths, &before, &rendered)?;
    let warnings = warnings_of(spec, &rendered);
    let mut after = next_state(paths, spec, &rendered, &current, &before, &key);
    let mut changes = wanted_files(&rendered, &before, &mut after)?;
    changes.extend(released_files(&rendered, &before, &state_path)?);
    let (mode, expect) = (rendered.mode, rendered.expect.clone());
    let managed: Vec<PathBuf> = changes.iter().map(|c| c.path.clone()).collect();
    let (config, restart_needed) = config_change(paths, spec, rendered, current, &after, &before);
    changes.extend(config);
    if spec.is_none() {
        forget_spec(&mut after);
    }
    let inputs = inputs_of(paths, config_identity, &managed);
    Ok(Plan {
        restart_needed,
        changes,
        state_before: before,
        state_after: after,
        mode,
        warnings,
        expect,
        new_key: new_key.then_some(key),
        inputs,
    })
}
