//! One registry host containerd will try: what containerd's `RegistryHost` holds (scheme, host,
//! path, capabilities, TLS and header settings), plus where regmirror found it. Pure data.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

/// A host capability (`capabilities = [...]` in hosts.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    Pull,
    Resolve,
    Push,
    Referrers,
}

impl Capability {
    pub fn parse(s: &str, referrers_known: bool) -> Option<Capability> {
        match s.to_ascii_lowercase().as_str() {
            "pull" => Some(Capability::Pull),
            "resolve" => Some(Capability::Resolve),
            "push" => Some(Capability::Push),
            "referrers" if referrers_known => Some(Capability::Referrers),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Capability::Pull => "pull",
            Capability::Resolve => "resolve",
            Capability::Push => "push",
            Capability::Referrers => "referrers",
        }
    }

    /// The set a host gets when it names none (and the upstream always gets).
    pub fn defaults(referrers: bool) -> Vec<Capability> {
        let mut all = vec![Capability::Pull, Capability::Resolve, Capability::Push];
        if referrers {
            all.push(Capability::Referrers);
        }
        all
    }
}

/// Where a host came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Origin {
    /// `[host."…"]` of this hosts.toml.
    Host { file: PathBuf },
    /// `server` of this hosts.toml.
    Server { file: PathBuf },
    /// The registry itself, added because nothing named a server (`file`: the hosts.toml or
    /// certs directory that applied, if any).
    Upstream { file: Option<PathBuf> },
    /// `registry.mirrors."<key>".endpoint` of config.toml.
    LegacyMirror { key: String },
    /// The registry itself, appended after the legacy mirrors.
    LegacyUpstream,
}

/// One host, as containerd's `RegistryHost`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistryHost {
    pub scheme: String,
    /// `host[:port]`.
    pub host: String,
    /// The API path requests are made under (`/v2`, `/v2/prefix`, or as written).
    pub path: String,
    pub capabilities: Vec<Capability>,
    pub skip_verify: bool,
    /// CA files (absolute).
    pub ca: Vec<String>,
    /// Header names → values (values of `Authorization` are never printed by the CLI).
    pub header: BTreeMap<String, Vec<String>>,
    /// https is tried first, with a fallback to plain http on the same port.
    pub http_fallback: bool,
    pub origin: Origin,
}

impl RegistryHost {
    /// The base URL requests go to: `scheme://host` + `path`.
    pub fn base_url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.path)
    }

    pub fn has(&self, c: Capability) -> bool {
        self.capabilities.contains(&c)
    }
}
