//! The MIRROR_REGISTRIES list in imageswap form: `source::target,source2::target2`.
//! A source is a registry `host[:port]`, or `*` / `default` for every registry without an entry
//! of its own; an empty target (`quay.io::`) means "no mirror for this source".

use std::fmt;

use serde::Serialize;

use super::endpoint::{HostPort, Target, parse_host_port, parse_target};

/// Which registry a mirror entry applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Source {
    /// `*` or `default`: containerd's `"*"` (legacy) or `_default` (hosts).
    Wildcard,
    Registry(HostPort),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Wildcard => f.write_str("*"),
            Source::Registry(h) => write!(f, "{h}"),
        }
    }
}

/// One validated `source::target` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mirror {
    pub source: Source,
    /// `None`: the entry said "no mirror" (`quay.io::`).
    pub target: Option<Target>,
}

/// An entry that broke a rule; `Display` names the entry (1-based) and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwapError {
    #[error("MIRROR_REGISTRIES is empty: give at least one source::target entry")]
    Empty,
    #[error("MIRROR_REGISTRIES entry {index} {entry:?}: {why}")]
    Entry {
        index: usize,
        entry: String,
        why: String,
    },
    #[error(
        "MIRROR_REGISTRIES entries {first} ({first_entry:?}) and {second} ({second_entry:?}) both name source {source_name}"
    )]
    Duplicate {
        first: usize,
        first_entry: String,
        second: usize,
        second_entry: String,
        source_name: String,
    },
}

/// At most this many characters of an entry are echoed in an error.
const ECHO_MAX: usize = 120;

fn echo(s: &str) -> String {
    if s.chars().count() <= ECHO_MAX {
        s.to_string()
    } else {
        let cut: String = s.chars().take(ECHO_MAX).collect();
        format!("{cut}…")
    }
}

/// Find the `::` separator outside `[...]` (an IPv6 literal holds `::` too).
fn find_separator(entry: &str) -> Option<usize> {
    let b = entry.as_bytes();
    let mut depth = 0i32;
    let mut i = 0;
    while i + 1 < b.len() {
        match b[i] {
            b'[' => depth += 1,
            // A stray ']' must not hide the separator: the entry is then refused for the
            // character that is wrong (named in the message), not for a missing `::`.
            b']' => depth = (depth - 1).max(0),
            b':' if depth == 0 && b[i + 1] == b':' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_source(s: &str) -> Result<Source, String> {
    match s {
        "" => Err(
            "source is empty (expected a registry host such as docker.io, or * / default)".into(),
        ),
        "*" | "default" => Ok(Source::Wildcard),
        _ => parse_host_port(s)
            .map(Source::Registry)
            .map_err(|e| format!("source {s:?}: {e}")),
    }
}

/// Parse the whole list. Entries are separated by commas; whitespace (including newlines from a
/// folded YAML string) around entries is ignored, empty entries are skipped.
pub fn parse_mirror_registries(list: &str) -> Result<Vec<Mirror>, SwapError> {
    let mut out: Vec<(usize, String, Mirror)> = Vec::new();
    for (i, raw) in list.split(',').enumerate() {
        let index = i + 1;
        let entry = raw.trim();
        if entry.is_empty() {
            continue;
        }
        let fail = |why: String| SwapError::Entry {
            index,
            entry: echo(&entry.escape_debug().to_string()),
            why,
        };
        if let Some(c) = entry.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(fail(format!("{:?} inside an entry is not allowed", c)));
        }
        let Some(sep) = find_separator(entry) else {
            return Err(fail(
                "expected source::target (two colons), e.g. docker.io::harbor.example.org/airgap-images/docker.io".into(),
            ));
        };
        let (src, tgt) = (&entry[..sep], &entry[sep + 2..]);
        let source = parse_source(src).map_err(fail)?;
        let target = if tgt.is_empty() {
            None
        } else {
            Some(parse_target(tgt).map_err(|e| fail(format!("target {tgt:?}: {e}")))?)
        };
        if let Some((first, first_entry, _)) = out.iter().find(|(_, _, m)| m.source == source) {
            return Err(SwapError::Duplicate {
                first: *first,
                first_entry: echo(first_entry),
                second: index,
                second_entry: echo(entry),
                source_name: source.to_string(),
            });
        }
        out.push((index, entry.to_string(), Mirror { source, target }));
    }
    if out.is_empty() {
        return Err(SwapError::Empty);
    }
    Ok(out.into_iter().map(|(_, _, m)| m).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_list() {
        let l = "docker.io::harbor.example.org/airgap-images/docker.io, gcr.io::harbor.example.org/airgap-images/gcr.io,\n quay.io::,*::h.example,";
        let m = parse_mirror_registries(l).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[2].target, None);
        assert_eq!(m[3].source, Source::Wildcard);
    }

    #[test]
    fn ipv6_source_and_target() {
        let m = parse_mirror_registries("[fd00::1]:5000::[fd00::2]:443/x").unwrap();
        assert_eq!(m[0].source.to_string(), "[fd00::1]:5000");
        assert_eq!(
            m[0].target.as_ref().unwrap().host.to_string(),
            "[fd00::2]:443"
        );
    }

    #[test]
    fn duplicate_names_both() {
        let e = parse_mirror_registries("*::a.example,default::b.example").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("entries 1") && s.contains("and 2"), "{s}");
    }
}
