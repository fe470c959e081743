//! What differs between containerd releases in host resolution: one predicate per behaviour,
//! each with the releases it holds for (read from containerd's code and tests; the rules and
//! their sources are in `tests/fixtures/resolve/RULES.md`). Pure.

use crate::runtime::ContainerdVersion;

const fn v(major: u32, minor: u32, patch: u32) -> ContainerdVersion {
    ContainerdVersion::new(major, minor, patch)
}

/// The release assumed when the running containerd is not known: the newest one these rules
/// were read against.
pub const NEWEST: ContainerdVersion = v(2, 3, 4);

/// How one containerd release resolves registry hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behaviour {
    pub version: ContainerdVersion,
}

impl Behaviour {
    pub fn of(version: Option<ContainerdVersion>) -> Behaviour {
        Behaviour {
            version: version.unwrap_or(NEWEST),
        }
    }

    fn at_least(&self, want: ContainerdVersion) -> bool {
        self.version >= want
    }

    /// In the 1.6 line from `p16`, in the 1.7 line from `p17`, always from 2.0.
    fn fixed_in(&self, p16: u32, p17: u32) -> bool {
        match (self.version.major, self.version.minor) {
            (1, 6) => self.version.patch >= p16,
            (1, 7) => self.version.patch >= p17,
            (1, m) => m > 7,
            _ => true,
        }
    }

    /// `<root>/_default` is a candidate directory (from 1.6.17).
    pub fn default_dir(&self) -> bool {
        self.fixed_in(17, 0)
    }

    /// `referrers` is a known capability and part of the default set (from 2.2.0).
    pub fn referrers(&self) -> bool {
        self.at_least(v(2, 2, 0))
    }

    /// A hosts.toml with `server` but no `[host]` table is accepted (1.7.32+, 2.x).
    pub fn server_only_file(&self) -> bool {
        self.at_least(v(2, 0, 0)) || (self.version.minor == 7 && self.version.patch >= 32)
    }

    /// The hosts.toml parser: go-toml v2's expression walk from 2.0 (inline and dotted host
    /// keys dropped, a reopened host table listed again), go-toml v1 before.
    pub fn table_walk_parser(&self) -> bool {
        self.at_least(v(2, 0, 0))
    }

    /// CRI pulls go through the transfer service by default (2.1+), which takes `config_path`
    /// as one directory (a colon-separated list is not split).
    pub fn transfer_service(&self) -> bool {
        self.at_least(v(2, 1, 0))
    }

    /// The default upstream of a localhost / loopback registry without `server`: the scheme,
    /// whether TLS verification is off, before [`Behaviour::http_upgrades`] is applied.
    pub fn localhost_default(&self, port: Option<&str>) -> (&'static str, bool) {
        let (mj, mi, p) = (self.version.major, self.version.minor, self.version.patch);
        let old_1_6 = mj == 1 && mi == 6 && p < 9;
        let http_era = mj == 1 && ((mi == 6 && (9..25).contains(&p)) || (mi == 7 && p <= 7));
        if old_1_6 {
            ("https", false)
        } else if http_era {
            ("http", true)
        } else {
            match port {
                None | Some("443") => ("https", true),
                Some("80") => ("http", false),
                Some(_) => ("http", true),
            }
        }
    }

    /// An `http` host with TLS settings is tried as https first, with an HTTP fallback.
    pub fn http_upgrades(&self, port: Option<&str>) -> bool {
        let (mj, mi, p) = (self.version.major, self.version.minor, self.version.patch);
        if mj == 1 && mi == 7 && p == 7 {
            return true;
        }
        let explicit_non_80 = port.is_some_and(|p| p != "80");
        if self.at_least(v(2, 0, 0)) || (mj == 1 && mi == 7 && p >= 24) {
            return port != Some("80");
        }
        if self.fixed_in(25, 8) {
            return explicit_non_80;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_lines() {
        let b = |a, b2, c| Behaviour::of(Some(v(a, b2, c)));
        assert!(
            !b(1, 6, 16).default_dir() && b(1, 6, 17).default_dir() && b(1, 7, 0).default_dir()
        );
        assert!(!b(2, 1, 9).referrers() && b(2, 2, 0).referrers());
        assert!(!b(1, 7, 31).server_only_file() && b(1, 7, 32).server_only_file());
        assert!(!b(1, 6, 39).server_only_file() && b(2, 0, 0).server_only_file());
        assert_eq!(b(1, 6, 20).localhost_default(Some("5000")), ("http", true));
        assert_eq!(b(1, 7, 24).localhost_default(None), ("https", true));
        assert!(!b(1, 6, 20).http_upgrades(Some("5000")));
        assert!(b(1, 6, 25).http_upgrades(Some("5000")) && !b(1, 6, 25).http_upgrades(None));
        assert!(b(1, 7, 24).http_upgrades(None) && !b(2, 1, 9).http_upgrades(Some("80")));
        assert!(b(1, 7, 7).http_upgrades(Some("80")));
    }
}
