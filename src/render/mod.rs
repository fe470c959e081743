//! RegistrySpec + current config.toml → the new config.toml text and the managed files
//! (hosts.toml, ca.crt). Pure: takes texts and values, returns texts and values.
//!
//! Every render starts by taking regmirror's previous ownership back out of the document (so the
//! base is the admin's file alone), then writes the new spec into that base. Reverting is the
//! first half alone.

pub mod decide;
pub mod eol;
pub mod error;
pub mod hosts;
pub mod legacy;
pub mod meaning;
pub mod owned;
pub mod preserve;
mod print;
pub mod registries;
pub mod version;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use toml_edit::DocumentMut;

use crate::spec::RegistrySpec;
pub use error::RenderError;
pub use owned::{ConfigOwnership, OwnedValue, sha256_hex};
pub use preserve::canonical;
pub use version::ConfigVersion;

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

/// Node-local choices for hosts.toml that the Secret does not carry (flags / Helm values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostsOptions {
    /// Strict air-gap: no upstream fallback. The last mirror endpoint is also hosts.toml's
    /// `server`, so containerd never contacts the source registry (hosts mode only: legacy
    /// `endpoint` lists always fall back to upstream).
    pub strict: bool,
    /// hosts.toml `dial_timeout` for every mirror host (containerd ≥ 2.1 reads it; older ones
    /// and an unknown version get none).
    pub dial_timeout: Option<std::time::Duration>,
}

/// What the renderer decides with: the asked-for mode, the running containerd's version, and
/// the node's hosts.toml options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Choice {
    pub mode: Mode,
    /// `None`: unknown; the decision is made from the file alone.
    pub containerd: Option<crate::runtime::ContainerdVersion>,
    pub hosts: HostsOptions,
}

impl HostsOptions {
    /// These options as written for the running containerd: `dial_timeout` only for one known
    /// to read it (2.1 and later; older ones ignore the key, an unknown version gets none).
    pub fn for_runtime(self, containerd: Option<crate::runtime::ContainerdVersion>) -> Self {
        let reads =
            containerd.is_some_and(|v| v >= crate::runtime::ContainerdVersion::new(2, 1, 0));
        HostsOptions {
            strict: self.strict,
            dial_timeout: self.dial_timeout.filter(|d| reads && !d.is_zero()),
        }
    }
}

impl From<Mode> for Choice {
    fn from(mode: Mode) -> Self {
        Choice {
            mode,
            ..Choice::default()
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
    /// The directories the admin's `config_path` names (where managed hosts.toml may live).
    pub config_path_dirs: Vec<PathBuf>,
    /// config.toml's `imports` patterns.
    pub imports: Vec<String>,
    /// What containerd loads from config.toml changes (not only its spelling): a restart is
    /// needed for it.
    pub meaning_changed: bool,
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
    /// Strict air-gap and dial timeout (see [`HostsOptions`]).
    pub hosts: HostsOptions,
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

/// The admin's file alone (what revert returns, and the text every edit is carried onto), its
/// parsed document, and the meaning of config.toml as it is now.
struct Base {
    doc: DocumentMut,
    /// Shared with the prior snapshot when it is that snapshot's base (no copy of the file).
    text: Arc<String>,
    /// `doc` is an unedited parse of `text` (edits can start from it without a parse).
    fresh: bool,
    /// [`meaning::fingerprint`] of config.toml as it is on disk now.
    meaning_now: Option<String>,
}

/// Exact from the snapshot while config.toml is untouched since regmirror wrote it; otherwise
/// regmirror's values are taken back out of whatever the file holds now.
fn admin_base(input: &RenderInput<'_>) -> Result<Base, RenderError> {
    if let Some(b) = input.prior.exact_base(input.config) {
        let snapshot = input.prior.snapshot.as_ref();
        return Ok(Base {
            doc: parse(b)?,
            text: Arc::clone(b),
            fresh: true,
            meaning_now: snapshot.and_then(|s| s.written_meaning.clone()),
        });
    }
    let mut doc = parse(input.config)?;
    let meaning_now = Some(meaning::fingerprint(&doc));
    // No state (first apply, or a lost state dir): regmirror's marked tables are its own.
    let recognised;
    let prior = if input.prior.is_empty() {
        recognised = owned::recognise(&doc);
        if recognised.is_empty() {
            let text = Arc::new(input.config.to_string());
            return Ok(Base {
                doc,
                text,
                fresh: true,
                meaning_now,
            });
        }
        &recognised
    } else {
        input.prior
    };
    owned::unapply(&mut doc, prior)?;
    let mut text = preserve::keep_untouched_lines(input.config, &doc.to_string());
    if prior.no_final_newline && text.ends_with('\n') {
        text.pop();
    }
    Ok(Base {
        doc,
        text: Arc::new(text),
        fresh: false,
        meaning_now,
    })
}

/// Where hosts.toml and ca.crt go: the first directory of an existing `config_path` in hosts
/// mode, else `--certs-dir`.
fn certs_dir_for(
    existing: &Option<Vec<String>>,
    mode: WriteMode,
    certs_dir: &Path,
    warnings: &mut Vec<String>,
) -> PathBuf {
    match (existing, mode) {
        (Some(dirs), WriteMode::Hosts) => {
            let first = PathBuf::from(&dirs[0]);
            if first != certs_dir {
                warnings.push(format!(
                    "config_path already names {}; hosts.toml files go there, not to {}",
                    first.display(),
                    certs_dir.display()
                ));
            }
            first
        }
        _ => certs_dir.to_path_buf(),
    }
}

/// The CA file for `DOMAIN` (written beside the hosts.toml files), and its path.
fn ca_file(spec: &RegistrySpec, certs_dir: &Path) -> Option<(ManagedFile, String)> {
    spec.ca.as_ref().map(|ca| {
        let path = certs_dir.join(spec.domain.to_string()).join("ca.crt");
        let shown = path.to_string_lossy().into_owned();
        let file = ManagedFile {
            path,
            contents: ca.pem.clone().into_bytes(),
            mode: 0o644,
        };
        (file, shown)
    })
}

/// Everything hosts mode writes: `config_path` (when containerd needs it) and one hosts.toml
/// per source.
struct HostsMode<'a> {
    registry: &'a [String],
    existing: Option<&'a [String]>,
    containerd: Option<crate::runtime::ContainerdVersion>,
    certs_dir: &'a Path,
    ca_file: Option<&'a str>,
    options: HostsOptions,
}

impl HostsMode<'_> {
    fn apply(
        &self,
        doc: &mut DocumentMut,
        spec: &RegistrySpec,
        own: &mut ConfigOwnership,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<ManagedFile>, RenderError> {
        let conflicts = legacy_conflicts(doc, self.registry);
        if !conflicts.is_empty() {
            return Err(RenderError::AdminLegacyEntries {
                table: self.registry.to_vec(),
                entries: conflicts,
            });
        }
        warnings.extend(decide::split_list_warning(self.existing, self.containerd));
        if decide::writes_config_path(self.existing, self.containerd) {
            let mut cp = self.registry.to_vec();
            cp.push("config_path".into());
            let dir = self.certs_dir.to_string_lossy();
            owned::set_value(doc, &cp, dir.as_ref().into(), own)?;
        }
        spec.mirrors
            .iter()
            .map(|m| self.hosts_file(spec, m))
            .collect()
    }

    fn hosts_file(
        &self,
        spec: &RegistrySpec,
        m: &crate::spec::Mirror,
    ) -> Result<ManagedFile, RenderError> {
        let text = hosts::hosts_toml(spec, m, self.ca_file, self.options);
        text.parse::<DocumentMut>()
            .map_err(|e| RenderError::Internal {
                what: format!("hosts.toml for {}", m.source),
                why: e.to_string(),
            })?;
        Ok(ManagedFile {
            path: self
                .certs_dir
                .join(hosts::dir_name(&m.source))
                .join("hosts.toml"),
            contents: text.into_bytes(),
            mode: if spec.credentials.is_some() {
                0o600
            } else {
                0o644
            },
        })
    }
}

/// What containerd must show once it loaded this render.
fn expectation(mode: WriteMode, spec: &RegistrySpec, certs_dir: PathBuf) -> Expectation {
    match mode {
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
    }
}

/// The edited document printed onto the admin's lines (and line endings), with the snapshot
/// that makes a later revert exact. `pristine` is the unedited document's print when it is not
/// the base itself: then the edit is carried onto the admin's lines, and that path checks its
/// result by parsing it (see [`preserve::carry_onto`]). Otherwise (the usual case) toml_edit's
/// print of the edited document is the result, with no parse: it is valid TOML by construction.
fn print_config(
    doc: &DocumentMut,
    base: Arc<String>,
    pristine: Option<String>,
    own: &mut ConfigOwnership,
) -> Result<String, RenderError> {
    let edited = print::sized(doc, base.len());
    let printed = match pristine {
        None => edited,
        Some(p) => preserve::carry_onto(&base, &p, &edited),
    };
    let crlf = eol::is_crlf(&base);
    let config = if crlf {
        eol::match_line_endings(&base, &printed)
    } else {
        printed
    };
    if crlf {
        // Line endings rewritten after printing: never hand containerd a file that does not
        // parse (a CRLF inside a multi-line string would be the case this catches).
        parse(&config).map_err(|e| RenderError::Internal {
            what: "config.toml".into(),
            why: e.to_string(),
        })?;
    }
    own.no_final_newline = !base.is_empty() && !base.ends_with('\n');
    own.snapshot = Some(owned::Snapshot {
        written_sha256: owned::sha256_hex(&config),
        written_meaning: Some(meaning::fingerprint(doc)),
        base,
    });
    Ok(config)
}

/// What a render knows about the admin's file before any edit.
struct Facts {
    version: ConfigVersion,
    config_path_dirs: Vec<PathBuf>,
    imports: Vec<String>,
}

/// Render the new config.toml and managed files.
pub fn render(input: &RenderInput<'_>) -> Result<Rendered, RenderError> {
    let base = admin_base(input)?;
    let version = version::detect(&base.doc)?;
    let facts = Facts {
        version,
        config_path_dirs: decide::config_path(&base.doc, input.containerd, version)
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        imports: imports_of(&base.doc),
    };
    match input.spec {
        None => Ok(render_revert(base, facts)),
        Some(spec) => render_spec(input, spec, base, facts),
    }
}

/// The revert: the admin's file alone.
fn render_revert(base: Base, facts: Facts) -> Rendered {
    let meaning_changed = base.meaning_now.as_deref() != Some(&meaning::fingerprint(&base.doc));
    Rendered {
        config: Arc::unwrap_or_clone(base.text),
        ownership: ConfigOwnership::default(),
        files: Vec::new(),
        mode: None,
        version: facts.version,
        warnings: Vec::new(),
        expect: None,
        config_path_dirs: facts.config_path_dirs,
        imports: facts.imports,
        meaning_changed,
    }
}

/// The mode asked for, with strict air-gap (hosts mode only) applied.
fn effective_mode(input: &RenderInput<'_>) -> Result<Mode, RenderError> {
    match (input.hosts.strict, input.mode) {
        (true, Mode::Legacy) => Err(RenderError::StrictNeedsHosts),
        (true, _) => Ok(Mode::Hosts),
        (false, m) => Ok(m),
    }
}

/// Write `spec` into `doc` the way `decision` says (legacy entries, or `config_path` and one
/// hosts.toml per source), with the CA file; what regmirror owns now, and the managed files.
fn write_mode(
    doc: &mut DocumentMut,
    input: &RenderInput<'_>,
    spec: &RegistrySpec,
    decision: &decide::Decision,
    existing: Option<&[String]>,
    certs_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<(ConfigOwnership, Vec<ManagedFile>), RenderError> {
    let mut own = ConfigOwnership::default();
    let ca = ca_file(spec, certs_dir);
    let ca_path = ca.as_ref().map(|(_, p)| p.as_str());
    let mut files: Vec<ManagedFile> = ca.iter().map(|(f, _)| f.clone()).collect();
    match decision.resolved {
        WriteMode::Legacy => {
            legacy::apply(doc, &decision.registry, spec, ca_path, &mut own, warnings)?
        }
        WriteMode::Hosts => {
            let hosts = HostsMode {
                registry: &decision.registry,
                existing,
                containerd: input.containerd,
                certs_dir,
                ca_file: ca_path,
                options: input.hosts.for_runtime(input.containerd),
            };
            files.extend(hosts.apply(doc, spec, &mut own, warnings)?);
        }
    }
    owned::mark_created(doc, &own);
    Ok((own, files))
}

/// The admin's file with `spec` written into it, and the managed files.
fn render_spec(
    input: &RenderInput<'_>,
    spec: &RegistrySpec,
    base: Base,
    facts: Facts,
) -> Result<Rendered, RenderError> {
    let mut warnings = Vec::new();
    // Edit the admin's text itself: toml_edit spells keys the way the parsed text first did.
    let mut doc = if base.fresh {
        base.doc
    } else {
        parse(&base.text)?
    };
    // The unedited print, made only when it is not the base itself (then the edit is carried
    // onto the admin's lines); the usual case compares while printing and keeps nothing.
    let pristine = (!print::prints_as(&doc, &base.text)).then(|| doc.to_string());
    let mode = effective_mode(input)?;
    let decision = decide::decide(mode, input.containerd, facts.version, &doc, spec)?;
    warnings.extend(decision.warnings.iter().cloned());
    let existing = decide::config_path(&doc, input.containerd, facts.version);
    let certs_dir = certs_dir_for(&existing, decision.resolved, input.certs_dir, &mut warnings);
    let (mut own, files) = write_mode(
        &mut doc,
        input,
        spec,
        &decision,
        existing.as_deref(),
        &certs_dir,
        &mut warnings,
    )?;
    let config = print_config(&doc, base.text, pristine, &mut own)?;
    let written = own
        .snapshot
        .as_ref()
        .and_then(|s| s.written_meaning.as_deref());
    let meaning_changed = base.meaning_now.as_deref() != written;
    Ok(Rendered {
        config,
        ownership: own,
        files,
        mode: Some(decision.resolved),
        version: facts.version,
        warnings,
        expect: Some(expectation(decision.resolved, spec, certs_dir)),
        config_path_dirs: facts.config_path_dirs,
        imports: facts.imports,
        meaning_changed,
    })
}

/// The `imports` patterns of a config.toml document.
fn imports_of(doc: &DocumentMut) -> Vec<String> {
    doc.get("imports")
        .and_then(|i| i.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Warnings for drop-ins under `imports` that define the CRI plugin table regmirror edits
/// (containerd ≤ 1.7 lets such a drop-in replace the main file's whole plugin table).
pub fn import_warnings(version: ConfigVersion, imported: &[(PathBuf, String)]) -> Vec<String> {
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
