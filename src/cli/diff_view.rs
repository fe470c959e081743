//! `diff -o json`: the plan in a stable, documented JSON schema (`regmirror.diff/v1`): which
//! files change and how (each with its redacted unified diff), whether containerd needs a
//! restart, the mode, the containerd it was decided for and where the Secret came from. Built
//! from the same redacted text as the human diff: PASSWORD (and any credential value in a
//! file) is never in it. Pure.

use serde::Serialize;

use crate::apply::{FileChange, Plan};

/// The schema name; bumped on any incompatible change.
pub const SCHEMA: &str = "regmirror.diff/v1";

/// Where the Secret was read from.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DiffSource {
    /// `--secret-file`: a manifest.
    File { path: String },
    /// `--secret-dir`: a Secret volume.
    Dir { path: String },
    /// `--from-cluster`: a GET of the Secret through the API.
    Cluster {
        server: String,
        namespace: String,
        name: String,
        resource_version: Option<String>,
    },
}

#[derive(Debug, Serialize)]
pub struct DiffContainerd {
    /// `null` when unknown.
    pub version: Option<String>,
    /// What was learnt and how, or why not.
    pub decided_for: String,
}

#[derive(Debug, Serialize)]
pub struct DiffFile {
    pub path: String,
    /// `create`, `modify` or `remove`.
    pub action: &'static str,
    /// The file's mode after the change (octal string, `null` for a removal).
    pub mode: Option<String>,
    /// The mode before (octal string), `null` for a new file.
    pub old_mode: Option<String>,
    /// The new contents hold credentials (written root-owned, 0600).
    pub credentials: bool,
    /// The unified diff, credential values as `"***"`, no colour.
    pub diff: String,
}

#[derive(Debug, Serialize)]
pub struct Diff {
    pub schema: &'static str,
    pub source: DiffSource,
    /// True when `apply` would write something (exit status 1).
    pub changed: bool,
    /// `legacy` or `hosts`: how the configuration is written.
    pub mode: &'static str,
    pub restart_needed: bool,
    /// The spec's hash as `show` prints it (PASSWORD excluded).
    pub spec_hash: String,
    pub containerd: DiffContainerd,
    pub files: Vec<DiffFile>,
    pub warnings: Vec<String>,
}

fn octal(m: u32) -> String {
    format!("{:04o}", m & 0o7777)
}

fn file(c: &FileChange) -> DiffFile {
    let action = match (&c.old, &c.new) {
        (None, _) => "create",
        (Some(_), Some(_)) => "modify",
        (Some(_), None) => "remove",
    };
    DiffFile {
        path: c.path.display().to_string(),
        action,
        mode: c.new.as_ref().map(|_| octal(c.mode)),
        old_mode: c.old_mode.map(octal),
        credentials: c.secret,
        diff: super::diff::unified_diff(c, false),
    }
}

/// The view of `plan`, made for `spec_hash` on the node's `runtime`.
pub fn view(
    plan: &Plan,
    mode: &'static str,
    spec_hash: String,
    runtime: &crate::runtime::Runtime,
    source: DiffSource,
) -> Diff {
    Diff {
        schema: SCHEMA,
        source,
        changed: !plan.changes.is_empty(),
        mode,
        restart_needed: plan.restart_needed,
        spec_hash,
        containerd: DiffContainerd {
            version: runtime.version.map(|v| v.to_string()),
            decided_for: runtime.to_string(),
        },
        files: plan.changes.iter().map(file).collect(),
        warnings: plan.warnings.clone(),
    }
}
