//! RegistrySpec + current config.toml → the new config.toml text and the managed files
//! (hosts.toml, ca.crt). Pure: takes texts and values, returns texts and values.
//!
//! Every render starts by taking regmirror's previous ownership back out of the document (so the
//! base is the admin's file alone), then writes the new spec into that base. Reverting is the
//! first half alone.

pub mod decide;
pub mod eol;
pub mod hosts;
pub mod legacy;
pub mod owned;
pub mod version;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml_edit::DocumentMut;

use crate::spec::RegistrySpec;
pub use owned::{ConfigOwnership, OwnedValue};
pub use version::ConfigVersion;

/// Why a render was refused. Nothing is written when this happens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("config.toml does not parse: {0}")]
    Parse(String),
    #[error("config.toml: {0}")]
    Config(String),
    #[error("config.toml: {0}")]
    Conflict(String),
    #[error("state: {0}")]
    State(String),
}

/// Which way to configure mirrors (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// hosts when config `version` ≥ 3 or `config_path` is already set; legacy otherwise.
    #[default]
    Auto,
    /// `registry.mirrors` / `registry.configs` in config.toml (needs a containerd restart).
    Legacy,
    /// `config_path` + `certs.d/<host>/hosts.toml` (file edits need no restart).
    Hosts,
}

/// What the renderer decides with: the asked-for mode and the running containerd's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Choice {
    pub mode: Mode,
    /// `None`: unknown; the decision is made from the file alone.
    pub containerd: Option<crate::runtime::ContainerdVersion>,
}

impl From<Mode> for Choice {
    fn from(mode: Mode) -> Self {
        Choice {
            mode,
            containerd: None,
        }
    }
}

/// The mode a render actually used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    Legacy,
    Hosts,
}

/// A file regmirror manages besides config.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedFile {
    pub path: PathBuf,
    pub contents: Vec<u8>,
    /// 0o600 for files that hold credentials, 0o644 otherwise.
    pub mode: u32,
}

/// What the running containerd must show after a restart for the render to count as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// Hosts mode: `config_path` names this directory (the first one, where hosts.toml go).
    ConfigPath(PathBuf),
    /// Legacy mode: these mirror keys with exactly these endpoint lists.
    Mirrors(Vec<(String, Vec<String>)>),
}

/// The outcome of a render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub config: String,
    pub ownership: ConfigOwnership,
    pub files: Vec<ManagedFile>,
    pub mode: Option<WriteMode>,
    pub version: ConfigVersion,
    pub warnings: Vec<String>,
    /// `None` for a revert.
    pub expect: Option<Expectation>,
}

/// What a render needs to know.
pub struct RenderInput<'a> {
    /// config.toml as it is on disk now.
    pub config: &'a str,
    /// What regmirror owned after its last apply (empty when it never applied).
    pub prior: &'a ConfigOwnership,
    /// `None` renders the revert: the base document alone, no managed files.
    pub spec: Option<&'a RegistrySpec>,
    pub mode: Mode,
    pub certs_dir: &'a Path,
    /// The running containerd's version (`None`: unknown, decide from the file alone).
    pub containerd: Option<crate::runtime::ContainerdVersion>,
}

fn parse(text: &str) -> Result<DocumentMut, RenderError> {
    text.parse::<DocumentMut>()
        .map_err(|e| RenderError::Parse(toml_error(text, &e)))
}

/// A TOML parse error as `line L, column C: message`, without the quoted source line that
/// toml_edit's own message shows (that line may hold a password).
pub fn toml_error(text: &str, e: &toml_edit::TomlError) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// Table paths that hold legacy registry settings containerd will not combine with config_path.
fn legacy_conflicts(doc: &DocumentMut, registry: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let mut mirrors = registry.to_vec();
    mirrors.push("mirrors".into());
    if let Some(t) = version::lookup(doc, &mirrors).and_then(|i| i.as_table_like()) {
        for (k, _) in t.iter() {
            found.push(format!("mirrors.{k:?}"));
        }
    }
    let mut configs = registry.to_vec();
    configs.push("configs".into());
    if let Some(t) = version::lookup(doc, &configs).and_then(|i| i.as_table_like()) {
        for (k, v) in t.iter() {
            if v.as_table_like().and_then(|h| h.get("tls")).is_some() {
                found.push(format!("configs.{k:?}.tls"));
            }
        }
    }
    found
}

/// Printing a parsed document is not always the identity: toml_edit spells every key segment of
/// a `[table]` header (and of a dotted key) the way the *first* occurrence of that table spelled
/// it, so `[plugins."x"]` followed by `[plugins.'x'.registry]` prints the second header as
/// `[plugins."x".registry]`; `[ a . b ]` may lose spaces; interleaved dotted keys are regrouped.
/// Untouched admin lines must keep their bytes (and revert must be byte-identical), so when
/// `original` does not print back as itself, the edit (the line diff from the printed original to
/// `edited`) is carried over onto the original lines instead. Falls back to `edited` whenever the
/// result would not be the very same document.
fn keep_untouched_lines(original: &str, edited: &str) -> String {
    let Ok(doc) = original.parse::<DocumentMut>() else {
        return edited.to_string();
    };
    let printed = doc.to_string();
    if printed == original {
        return edited.to_string();
    }
    // Lines are compared with their newline; a last line without one gets one for the mapping.
    fn nl(s: &str) -> String {
        if s.is_empty() || s.ends_with('\n') {
            s.to_string()
        } else {
            format!("{s}\n")
        }
    }
    let Some(mut out) = carry_edit(&nl(original), &nl(&printed), &nl(edited)) else {
        return edited.to_string();
    };
    // A missing final newline stays missing while the original's last line is still the last.
    let last_line = original.rsplit('\n').next().unwrap_or("");
    let keep_missing = !original.ends_with('\n') && out.ends_with(&format!("{last_line}\n"));
    if !edited.is_empty() && (!edited.ends_with('\n') || keep_missing) {
        out.pop();
    }
    if same_document(&out, edited) {
        out
    } else {
        edited.to_string()
    }
}

/// True when both texts parse to the same keys, values and visible tables (formatting aside).
fn same_document(a: &str, b: &str) -> bool {
    matches!((canonical(a), canonical(b)), (Some(x), Some(y)) if x == y)
}

/// A document's keys, values and explicit tables, formatting aside, sorted: two texts are the
/// same configuration when these are equal. `None` when the text does not parse.
pub fn canonical(text: &str) -> Option<Vec<String>> {
    fn walk(item: &toml_edit::Item, path: &str, out: &mut Vec<String>) {
        match item {
            toml_edit::Item::Value(v) => {
                let mut v = v.clone();
                v.decor_mut().clear();
                out.push(format!("{path} = {v}"));
            }
            toml_edit::Item::Table(t) => {
                if !t.is_implicit() && !t.is_dotted() {
                    out.push(format!("[{path}]"));
                }
                for (k, v) in t.iter() {
                    walk(v, &format!("{path}.{k:?}"), out);
                }
            }
            toml_edit::Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    for (k, v) in t.iter() {
                        walk(v, &format!("{path}[{i}].{k:?}"), out);
                    }
                }
            }
            toml_edit::Item::None => {}
        }
    }
    let doc = text.parse::<DocumentMut>().ok()?;
    let mut out = Vec::new();
    walk(doc.as_item(), "", &mut out);
    out.sort();
    Some(out)
}

/// What a line means when it is a table header or a dotted key (the key path as plain strings,
/// then the header's comment or the value as written); the line itself otherwise.
fn line_key(line: &str) -> String {
    let trimmed = line.trim_start();
    let Ok(doc) = line.parse::<DocumentMut>() else {
        return line.to_string();
    };
    let mut path = Vec::new();
    let mut item = doc.as_item();
    while let Some(t) = item.as_table_like() {
        let mut entries = t.iter();
        let (Some((k, v)), None) = (entries.next(), entries.next()) else {
            break;
        };
        path.push(k.to_string());
        item = v;
    }
    let path = format!("{path:?}");
    match item {
        toml_edit::Item::Table(t) if trimmed.starts_with('[') => {
            let comment = t.decor().suffix().and_then(|r| r.as_str()).unwrap_or("");
            format!("\0[{path}]{comment}")
        }
        toml_edit::Item::ArrayOfTables(a) if trimmed.starts_with("[[") => {
            let comment = a
                .get(0)
                .and_then(|t| t.decor().suffix().and_then(|r| r.as_str()))
                .unwrap_or("");
            format!("\0[[{path}]]{comment}")
        }
        toml_edit::Item::Value(v)
            if doc
                .as_table()
                .iter()
                .next()
                .is_some_and(|(_, i)| i.is_table()) =>
        {
            format!("\0{path} = {v}")
        }
        _ => line.to_string(),
    }
}

/// Replay the line edit `printed` → `edited` on `original` (whose printed form is `printed`).
/// `None` when an edited line has no certain place in `original`.
fn carry_edit(original: &str, printed: &str, edited: &str) -> Option<String> {
    use similar::{DiffOp, TextDiff};
    fn lines(t: &str) -> Vec<&str> {
        t.split_inclusive('\n').collect()
    }
    let (orig, print, new) = (lines(original), lines(printed), lines(edited));
    // Lines are compared by what they mean where toml_edit may re-spell them (headers, dotted
    // keys), byte for byte otherwise.
    fn keys(v: &[&str]) -> Vec<String> {
        v.iter().map(|l| line_key(l)).collect()
    }
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let (orig_k, print_k, new_k) = (keys(&orig), keys(&print), keys(&new));
    let (orig_k, print_k, new_k) = (refs(&orig_k), refs(&print_k), refs(&new_k));
    // Printed line → original line, for the lines toml_edit printed in order.
    // Patience diff anchors on unique lines (headers, admin values), so an admin line is never
    // taken for a moved one just because blank or marker lines around it repeat.
    let diff = |a: &[&str], b: &[&str]| {
        let mut cfg = TextDiff::configure();
        cfg.algorithm(similar::Algorithm::Patience);
        cfg.diff_slices(a, b).ops().to_vec()
    };
    let align = diff(&print_k, &orig_k);
    let mut to_orig: Vec<Option<usize>> = vec![None; print.len()];
    for op in &align {
        if let DiffOp::Equal {
            old_index,
            new_index,
            len,
        } = *op
        {
            for k in 0..len {
                to_orig[old_index + k] = Some(new_index + k);
            }
        }
    }
    let edit = diff(&print_k, &new_k);
    let mut deleted = vec![false; orig.len()];
    // inserted[i]: lines that go before original line i (i == orig.len(): at the end).
    let mut inserted: Vec<Vec<&str>> = vec![Vec::new(); orig.len() + 1];
    for op in &edit {
        let (old_index, old_len, new_index, new_len) = match *op {
            DiffOp::Equal { .. } => continue,
            DiffOp::Delete {
                old_index, old_len, ..
            } => (old_index, old_len, 0, 0),
            DiffOp::Insert {
                old_index,
                new_index,
                new_len,
            } => (old_index, 0, new_index, new_len),
            DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => (old_index, old_len, new_index, new_len),
        };
        for i in old_index..old_index + old_len {
            deleted[to_orig[i]?] = true;
        }
        if new_len > 0 {
            // Before the line that follows in the printed text (a header, or the comment above
            // one): lines toml_edit regrouped into the table before stay in that table.
            let at = if old_index == to_orig.len() {
                orig.len()
            } else if let Some(next) = to_orig[old_index] {
                next
            } else if old_len == 0
                && let Some(prev) = old_index.checked_sub(1).and_then(|i| to_orig[i])
            {
                prev + 1
            } else {
                return None;
            };
            inserted[at].extend_from_slice(&new[new_index..new_index + new_len]);
        }
    }
    let mut out = String::with_capacity(edited.len());
    for (i, line) in orig.iter().enumerate() {
        inserted[i].iter().for_each(|l| out.push_str(l));
        if !deleted[i] {
            out.push_str(line);
        }
    }
    inserted[orig.len()].iter().for_each(|l| out.push_str(l));
    Some(out)
}

/// Render the new config.toml and managed files.
pub fn render(input: &RenderInput<'_>) -> Result<Rendered, RenderError> {
    // The admin's file alone: what revert returns, and the text every edit is carried onto.
    // Exact from the snapshot while config.toml is untouched since regmirror wrote it; otherwise
    // regmirror's values are taken back out of whatever the file holds now.
    let (doc, base) = match input.prior.exact_base(input.config) {
        Some(b) => (parse(b)?, b.to_string()),
        None if input.prior.is_empty() => (parse(input.config)?, input.config.to_string()),
        None => {
            let mut doc = parse(input.config)?;
            owned::unapply(&mut doc, input.prior)?;
            let mut base = keep_untouched_lines(input.config, &doc.to_string());
            if input.prior.no_final_newline && base.ends_with('\n') {
                base.pop();
            }
            (doc, base)
        }
    };
    let version = version::detect(&doc)?;
    let mut warnings = Vec::new();
    let Some(spec) = input.spec else {
        return Ok(Rendered {
            config: base,
            ownership: ConfigOwnership::default(),
            files: Vec::new(),
            mode: None,
            version,
            warnings,
            expect: None,
        });
    };
    // Edit the admin's text itself: toml_edit spells keys the way the parsed text first did.
    let mut doc = parse(&base)?;
    let decision = decide::decide(input.mode, input.containerd, version, &doc, spec)?;
    warnings.extend(decision.warnings.iter().cloned());
    let registry = decision.registry;
    let resolved = decision.resolved;
    let existing_dirs = decide::config_path(&doc, input.containerd, version);
    let certs_dir: PathBuf = match (&existing_dirs, resolved) {
        (Some(dirs), WriteMode::Hosts) => {
            let first = PathBuf::from(&dirs[0]);
            if first != input.certs_dir {
                warnings.push(format!(
                    "config_path already names {}; hosts.toml files go there, not to {}",
                    first.display(),
                    input.certs_dir.display()
                ));
            }
            first
        }
        _ => input.certs_dir.to_path_buf(),
    };
    let mut own = ConfigOwnership::default();
    let mut files = Vec::new();
    let ca_file = spec.ca.as_ref().map(|ca| {
        let path = certs_dir.join(spec.domain.to_string()).join("ca.crt");
        files.push(ManagedFile {
            path: path.clone(),
            contents: ca.pem.clone().into_bytes(),
            mode: 0o644,
        });
        path.to_string_lossy().into_owned()
    });
    match resolved {
        WriteMode::Legacy => {
            legacy::apply(
                &mut doc,
                &registry,
                spec,
                ca_file.as_deref(),
                &mut own,
                &mut warnings,
            )?;
        }
        WriteMode::Hosts => {
            let conflicts = legacy_conflicts(&doc, &registry);
            if !conflicts.is_empty() {
                return Err(RenderError::Conflict(format!(
                    "{} holds {} not owned by regmirror; containerd will not load them together with config_path (remove them, or use --mode legacy)",
                    owned::dotted(&registry),
                    conflicts.join(", ")
                )));
            }
            if let Some(w) = decide::split_list_warning(existing_dirs.as_deref(), input.containerd)
            {
                warnings.push(w);
            }
            if decide::writes_config_path(existing_dirs.as_deref(), input.containerd) {
                let mut cp = registry.clone();
                cp.push("config_path".into());
                owned::set_value(
                    &mut doc,
                    &cp,
                    certs_dir.to_string_lossy().as_ref().into(),
                    &mut own,
                )?;
            }
            for m in &spec.mirrors {
                let text = hosts::hosts_toml(spec, m, ca_file.as_deref());
                text.parse::<DocumentMut>().map_err(|e| {
                    RenderError::Config(format!(
                        "internal: rendered hosts.toml for {} does not parse: {e}",
                        m.source
                    ))
                })?;
                files.push(ManagedFile {
                    path: certs_dir
                        .join(hosts::dir_name(&m.source))
                        .join("hosts.toml"),
                    contents: text.into_bytes(),
                    mode: if spec.credentials.is_some() {
                        0o600
                    } else {
                        0o644
                    },
                });
            }
        }
    }
    owned::mark_created(&mut doc, &own);
    let config = eol::match_line_endings(&base, &keep_untouched_lines(&base, &doc.to_string()));
    own.no_final_newline = !base.is_empty() && !base.ends_with('\n');
    own.snapshot = Some(owned::Snapshot {
        written_sha256: owned::sha256_hex(&config),
        base,
    });
    // Never hand containerd a file that does not parse.
    parse(&config).map_err(|e| {
        RenderError::Config(format!(
            "internal: rendered config.toml does not parse: {e}"
        ))
    })?;
    Ok(Rendered {
        config,
        ownership: own,
        files,
        mode: Some(resolved),
        version,
        warnings,
        expect: Some(match resolved {
            WriteMode::Hosts => Expectation::ConfigPath(certs_dir),
            WriteMode::Legacy => Expectation::Mirrors(
                spec.mirrors
                    .iter()
                    .map(|m| {
                        (
                            legacy::mirror_key(&m.source),
                            legacy::endpoint_list(spec, m.target.as_ref()),
                        )
                    })
                    .collect(),
            ),
        }),
    })
}

/// Warnings for drop-ins under `imports` that define the CRI plugin table regmirror edits
/// (containerd ≤ 1.7 lets such a drop-in replace the main file's whole plugin table).
pub fn import_warnings(config: &str, imported: &[(PathBuf, String)]) -> Vec<String> {
    let Ok(doc) = config.parse::<DocumentMut>() else {
        return Vec::new();
    };
    let Ok(version) = version::detect(&doc) else {
        return Vec::new();
    };
    let plugin = &version::registry_table(version)[..2];
    imported
        .iter()
        .filter(|(_, text)| {
            text.parse::<DocumentMut>()
                .ok()
                .and_then(|d| version::lookup(&d, plugin).map(|_| ()))
                .is_some()
        })
        .map(|(path, _)| {
            format!(
                "imported file {} defines plugins.{:?}: containerd ≤ 1.7 replaces this file's whole plugin table with it, regmirror's entries included",
                path.display(),
                plugin[1]
            )
        })
        .collect()
}
