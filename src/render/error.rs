//! Why a render was refused, one variant per reason, each carrying what it is about (key paths,
//! versions, values regmirror may show). Nothing is written when this happens. No variant holds
//! the text of a config line: a TOML error is reduced to its position and message.

use super::owned::dotted;
use crate::runtime::ContainerdVersion;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// `line L, column C: message` (never the line itself: it may hold a password).
    #[error("config.toml does not parse: {0}")]
    Parse(String),
    #[error("config.toml does not parse: config.toml is not UTF-8 text")]
    NotUtf8,
    #[error("config.toml: version = {value} is not a containerd config version (1, 2, 3 or later)")]
    BadVersion { value: String },
    #[error(
        "strict air-gap needs hosts mode: containerd's legacy registry.mirrors always fall back to the upstream registry (use --mode hosts or auto)"
    )]
    StrictNeedsHosts,
    #[error("config.toml: version must be an integer")]
    VersionNotInteger,
    #[error(
        "config.toml: legacy mode needs config version 1 or 2; this file is version 3 or later (use --mode hosts)"
    )]
    LegacyNeedsV2,
    #[error(
        "config.toml: containerd {runtime} reads config versions up to {max}; this file is version {file}, so nothing written into it would take effect (is --containerd-version right?)"
    )]
    TooNewForRuntime {
        runtime: ContainerdVersion,
        max: i64,
        file: i64,
    },
    #[error(
        "config.toml: --mode legacy on containerd {runtime}: it ignores {}; pulls would not use the mirror as configured. Use --mode hosts (or auto)",
        .ignored.join(" and ")
    )]
    LegacyIgnored {
        runtime: ContainerdVersion,
        ignored: Vec<&'static str>,
    },
    #[error(
        "config.toml: it sets {} = {value:?}; containerd refuses legacy mirrors next to config_path (the CRI plugin would not load). Use --mode hosts (or auto)",
        dotted(.path)
    )]
    MirrorsNextToConfigPath { path: Vec<String>, value: String },
    #[error(
        "config.toml: {} holds {} not owned by regmirror; containerd will not load them together with config_path (remove them, or use --mode legacy)",
        dotted(.table),
        .entries.join(", ")
    )]
    AdminLegacyEntries {
        table: Vec<String>,
        entries: Vec<String>,
    },
    #[error("config.toml: {} is {kind}; regmirror can only add to a [table] here", dotted(.path))]
    NotATable {
        path: Vec<String>,
        kind: &'static str,
    },
    #[error("config.toml: {} is {kind}, expected a value", dotted(.path))]
    NotAValue {
        path: Vec<String>,
        kind: &'static str,
    },
    #[error("state: previous value of {} does not parse ({why})", dotted(.path))]
    BadPrevious { path: Vec<String>, why: String },
    /// A rendered file that does not parse: a bug, refused rather than handed to containerd.
    #[error("config.toml: internal: rendered {what} does not parse: {why}")]
    Internal { what: String, why: String },
}
