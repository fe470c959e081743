//! Which containerd runs on this node: its version, where regmirror learnt it, and what that
//! version reads. Pure (parsing and rules); [`detect`] is the shell that asks the node.
//!
//! The version decides the renderer's mode (containerd ≥ 2.0 only honours `config_path` +
//! hosts.toml for TLS, and ignores a version 1 file's `plugins.cri` tables) and how the agent
//! verifies what containerd loaded after a restart.

pub mod detect;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A containerd release, `major.minor.patch` (distribution suffixes such as `~ds1` dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ContainerdVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ContainerdVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        ContainerdVersion {
            major,
            minor,
            patch,
        }
    }

    /// containerd 2.x: no legacy `registry.configs.*.tls`, a v1 file's `plugins.cri` ignored,
    /// the image service's registry config under `io.containerd.cri.v1.images`.
    pub fn is_2x(self) -> bool {
        self.major >= 2
    }

    /// From a `--version` line (`containerd github.com/containerd/containerd/v2 2.1.9+unknown …`)
    /// or a CRI `runtime_version` (`1.6.20~ds1`, `v2.1.9`): the first word that is a version.
    pub fn find_in(text: &str) -> Option<Self> {
        text.split_whitespace().find_map(|w| w.parse().ok())
    }
}

impl fmt::Display for ContainerdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A version string that is not `[v]MAJOR.MINOR[.PATCH][suffix]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a containerd version (expected MAJOR.MINOR[.PATCH], e.g. 2.1.9, or `unknown`)"
)]
pub struct VersionError(pub String);

impl FromStr for ContainerdVersion {
    type Err = VersionError;
    /// `2.1.9`, `v2.1.9`, `1.6.20~ds1`, `2.1.9+ds1-5`, `1.7` (patch 0).
    fn from_str(s: &str) -> Result<Self, VersionError> {
        let bad = || VersionError(s.to_string());
        let t = s.trim();
        let t = t.strip_prefix('v').unwrap_or(t);
        let end = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let mut parts = t[..end].split('.');
        let mut num = || -> Result<Option<u32>, VersionError> {
            match parts.next() {
                None | Some("") => Ok(None),
                Some(p) => p.parse().map(Some).map_err(|_| bad()),
            }
        };
        let (Some(major), Some(minor)) = (num()?, num()?) else {
            return Err(bad());
        };
        let patch = num()?.unwrap_or(0);
        if parts.next().is_some() || major == 0 || major > 99 {
            return Err(bad());
        }
        Ok(ContainerdVersion::new(major, minor, patch))
    }
}

/// `--containerd-version`: a version, or `unknown` (nothing is asked; the decision is made
/// from config.toml alone, as for a node whose containerd cannot be reached).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionArg {
    Known(ContainerdVersion),
    Unknown,
}

impl FromStr for VersionArg {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, VersionError> {
        if s.trim().eq_ignore_ascii_case("unknown") {
            Ok(VersionArg::Unknown)
        } else {
            s.parse().map(VersionArg::Known)
        }
    }
}

/// Where the version came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionSource {
    /// `--containerd-version` (or `REGMIRROR_CONTAINERD_VERSION`).
    Flag,
    /// CRI `RuntimeService/Version` over this socket.
    Cri(String),
    /// `containerd --version` (in the host's mount namespace from a hostPID pod).
    Binary,
}

/// What regmirror knows about the node's containerd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Runtime {
    /// `None`: unknown (no socket answered, no binary found, no flag): decide from the file.
    pub version: Option<ContainerdVersion>,
    pub source: Option<VersionSource>,
    /// Why each way of learning it failed, for the "unknown" message.
    #[serde(skip)]
    pub tried: Vec<String>,
}

impl Runtime {
    pub fn known(version: ContainerdVersion, source: VersionSource) -> Self {
        Runtime {
            version: Some(version),
            source: Some(source),
            tried: Vec::new(),
        }
    }

    pub fn unknown(tried: Vec<String>) -> Self {
        Runtime {
            version: None,
            source: None,
            tried,
        }
    }
}

impl fmt::Display for Runtime {
    /// `containerd 2.1.9 (CRI Version on /run/containerd/containerd.sock)`, or the unknown case.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.version, &self.source) {
            (Some(v), Some(VersionSource::Flag)) => {
                write!(f, "containerd {v} (--containerd-version)")
            }
            (Some(v), Some(VersionSource::Cri(sock))) => {
                write!(f, "containerd {v} (CRI Version on {sock})")
            }
            (Some(v), _) => write!(f, "containerd {v} (containerd --version)"),
            (None, _) => write!(
                f,
                "containerd version unknown ({}); decided from config.toml alone (set --containerd-version)",
                if self.tried.is_empty() {
                    "not asked".to_string()
                } else {
                    self.tried.join("; ")
                }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spellings_containerd_and_distributions_use() {
        let v = |s: &str| s.parse::<ContainerdVersion>().unwrap();
        assert_eq!(v("1.6.20~ds1"), ContainerdVersion::new(1, 6, 20));
        assert_eq!(v("v2.1.9"), ContainerdVersion::new(2, 1, 9));
        assert_eq!(v("2.1.9+ds1-5"), ContainerdVersion::new(2, 1, 9));
        assert_eq!(v("1.7"), ContainerdVersion::new(1, 7, 0));
        for bad in ["", "2", "x.1", "2.x", "0.1.2", "1.2.3.4", "v", "1..2"] {
            assert!(
                bad.parse::<ContainerdVersion>().is_err(),
                "{bad:?} accepted"
            );
        }
        assert_eq!(
            ContainerdVersion::find_in(
                "containerd github.com/containerd/containerd/v2 2.1.9+unknown \n"
            ),
            Some(ContainerdVersion::new(2, 1, 9))
        );
        assert_eq!(
            ContainerdVersion::find_in(
                "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
            ),
            Some(ContainerdVersion::new(1, 6, 20))
        );
        assert!(ContainerdVersion::new(2, 0, 0).is_2x());
        assert!(!ContainerdVersion::new(1, 7, 24).is_2x());
        assert!(ContainerdVersion::new(1, 7, 24) < ContainerdVersion::new(1, 7, 32));
    }

    #[test]
    fn display_names_the_source_or_why_unknown() {
        let r = Runtime::known(
            ContainerdVersion::new(2, 1, 9),
            VersionSource::Cri("/s".into()),
        );
        assert_eq!(r.to_string(), "containerd 2.1.9 (CRI Version on /s)");
        let r = Runtime::unknown(vec!["CRI: no socket".into()]);
        assert!(r.to_string().contains("unknown (CRI: no socket)"), "{r}");
    }
}
