//! Endpoint rules, in one place: what a registry host, port and repository path may be, and the
//! URLs containerd is given for a mirror target (see `CONTAINERD.md`: legacy endpoints need
//! `/v2/<prefix>` spelled out; hosts.toml needs `/v2/<prefix>` plus `override_path = true`;
//! a scheme is always written, never guessed).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// Why a host, port, path or URL was refused. The message names the rule that was broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EndpointError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, EndpointError> {
    Err(EndpointError(msg.into()))
}

/// A registry host: an RFC 1123 name (lower-cased) or an IP literal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Host {
    Name(String),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// A host with an optional port, displayed the way containerd keys registries (`host:port`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct HostPort {
    pub host: Host,
    pub port: Option<u16>,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

/// The host containerd talks to for a registry name: Docker Hub's API host for `docker.io`, the
/// name itself otherwise (containerd's `DefaultHost`). The one place this rule lives.
pub fn default_host(registry: &str) -> &str {
    if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    }
}

/// URL scheme of a mirror endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A mirror target as written in MIRROR_REGISTRIES: `[scheme://]host[:port][/repository/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Target {
    /// The scheme the user wrote, if any.
    pub scheme: Option<Scheme>,
    pub host: HostPort,
    /// Repository prefix (`airgap-images/docker.io`), without leading or trailing slash.
    pub prefix: Option<String>,
}

/// One URL containerd should try, with its TLS verification setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointUrl {
    pub scheme: Scheme,
    /// TLS verification off (only ever true for https).
    pub skip_verify: bool,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = self.scheme {
            write!(f, "{}://", s.as_str())?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = &self.prefix {
            write!(f, "/{p}")?;
        }
        Ok(())
    }
}

impl Target {
    /// The schemes to write, in the order containerd should try them. INSECURE means what
    /// Docker's insecure-registries means: https without verification, then plain http.
    /// A target written with `http://` is http only; with `https://`, https only.
    pub fn endpoints(&self, insecure: bool) -> Vec<EndpointUrl> {
        match (self.scheme, insecure) {
            (Some(Scheme::Http), _) => vec![EndpointUrl {
                scheme: Scheme::Http,
                skip_verify: false,
            }],
            (Some(Scheme::Https), insecure) => vec![EndpointUrl {
                scheme: Scheme::Https,
                skip_verify: insecure,
            }],
            (None, false) => vec![EndpointUrl {
                scheme: Scheme::Https,
                skip_verify: false,
            }],
            (None, true) => vec![
                EndpointUrl {
                    scheme: Scheme::Https,
                    skip_verify: true,
                },
                EndpointUrl {
                    scheme: Scheme::Http,
                    skip_verify: false,
                },
            ],
        }
    }

    /// `scheme://host[:port]`.
    pub fn base_url(&self, scheme: Scheme) -> String {
        format!("{}://{}", scheme.as_str(), self.host)
    }

    /// The endpoint URL, identical for legacy `endpoint = [...]` and hosts.toml
    /// `[host."..."]`: `scheme://host` without a prefix, `scheme://host/v2/<prefix>` with one.
    /// Returns the URL and whether hosts.toml needs `override_path = true`.
    pub fn endpoint_url(&self, scheme: Scheme) -> (String, bool) {
        match &self.prefix {
            None => (self.base_url(scheme), false),
            Some(p) => (format!("{}/v2/{p}", self.base_url(scheme)), true),
        }
    }
}

/// Characters never allowed in a host, target or source (they could inject TOML structure, or
/// are never part of a registry reference).
fn check_charset(s: &str) -> Result<(), EndpointError> {
    for (i, c) in s.char_indices() {
        let ok = c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/' | '[' | ']');
        if !ok {
            return err(format!(
                "character {:?} at position {} is not allowed (only letters, digits, '.', '-', '_', ':', '/' and [] around an IPv6 address)",
                c,
                i + 1
            ));
        }
    }
    Ok(())
}

/// Parse an RFC 1123 host name (lower-cased) or IPv4 literal.
fn parse_host_name(s: &str) -> Result<Host, EndpointError> {
    if s.is_empty() {
        return err("host is empty");
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return s
            .parse::<Ipv4Addr>()
            .map(Host::Ipv4)
            .map_err(|_| EndpointError(format!("{s:?} is not a valid IPv4 address")));
    }
    if s.len() > 253 {
        return err(format!(
            "host name is {} characters long (RFC 1123 allows 253)",
            s.len()
        ));
    }
    for label in s.split('.') {
        if label.is_empty() {
            return err(format!("host name {s:?} has an empty label"));
        }
        if label.len() > 63 {
            return err(format!(
                "host name label {label:?} is longer than 63 characters (RFC 1123)"
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return err(format!(
                "host name label {label:?} may hold only letters, digits and '-' (RFC 1123)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return err(format!(
                "host name label {label:?} must not start or end with '-' (RFC 1123)"
            ));
        }
    }
    Ok(Host::Name(s.to_ascii_lowercase()))
}

fn parse_port(s: &str) -> Result<u16, EndpointError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 5 {
        return err(format!("port {s:?} is not a number from 1 to 65535"));
    }
    match s.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => err(format!("port {s} is out of range (1 to 65535)")),
    }
}

/// Parse `host`, `host:port`, `1.2.3.4:port`, `[v6]` or `[v6]:port`.
pub fn parse_host_port(s: &str) -> Result<HostPort, EndpointError> {
    check_charset(s)?;
    if s.contains('/') {
        return err(format!("{s:?} must be a host[:port] without a path"));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return err(format!("{s:?} opens '[' without a closing ']'"));
        };
        let addr: Ipv6Addr = rest[..end].parse().map_err(|_| {
            EndpointError(format!("{:?} is not a valid IPv6 address", &rest[..end]))
        })?;
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            p if p.starts_with(':') => Some(parse_port(&p[1..])?),
            _ => return err(format!("unexpected {after:?} after the IPv6 address")),
        };
        return Ok(HostPort {
            host: Host::Ipv6(addr),
            port,
        });
    }
    if s.contains('[') || s.contains(']') {
        return err(format!(
            "brackets are only allowed around an IPv6 address, as in [fd00::1]:5000 (got {s:?})"
        ));
    }
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => {
            if p.contains(':') {
                return err(format!(
                    "{s:?} has more than one ':'; write an IPv6 address in brackets"
                ));
            }
            (h, Some(parse_port(p)?))
        }
        None => (s, None),
    };
    Ok(HostPort {
        host: parse_host_name(host)?,
        port,
    })
}

/// Validate a repository path prefix against the OCI distribution grammar:
/// components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`.
pub fn parse_repository_prefix(s: &str) -> Result<String, EndpointError> {
    let s = s.strip_suffix('/').unwrap_or(s);
    if s.is_empty() {
        return err("repository path is empty");
    }
    if s.len() > 255 {
        return err(format!(
            "repository path is {} characters long (at most 255)",
            s.len()
        ));
    }
    let first = s.split('/').next().unwrap_or_default();
    if first == "v2" {
        return err(format!(
            "repository path {s:?} starts with v2/: write the repository prefix only, regmirror adds /v2 itself"
        ));
    }
    if s.split('/').any(|c| c == "v2") {
        return err(format!(
            "repository path {s:?} has a v2 component inside it: /v2 is the registry API root, only allowed first (regmirror adds /v2 itself)"
        ));
    }
    for comp in s.split('/') {
        check_path_component(comp).map_err(|why| {
            EndpointError(format!("repository path {s:?}: component {comp:?} {why}"))
        })?;
    }
    Ok(s.to_string())
}

fn check_path_component(c: &str) -> Result<(), &'static str> {
    if c.is_empty() {
        return Err("is empty (double or leading '/')");
    }
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err(
            "must start and end with a lower-case letter or digit (OCI repository grammar)",
        );
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run: '.', '_', '__' or one or more '-'
        let start = i;
        let sep = b[i];
        while i < b.len() && b[i] == sep {
            i += 1;
        }
        let n = i - start;
        let ok = match sep {
            b'.' => n == 1,
            b'_' => n <= 2,
            b'-' => true,
            _ => {
                return Err(
                    "may hold only lower-case letters, digits, '.', '_', '__' and '-' (OCI repository grammar)",
                );
            }
        };
        if !ok {
            return Err("has a separator run the OCI repository grammar does not allow");
        }
    }
    Ok(())
}

/// A target path that starts with the registry API root (`v2/…`, as Harbor proxy-cache docs
/// write it) means the same as the path without it: regmirror adds `/v2` itself. Only the first
/// `v2` is the API root; a `v2` further in is refused by [`parse_repository_prefix`].
fn strip_api_root(path: &str) -> &str {
    match path.strip_prefix("v2") {
        Some("") => "",
        Some(rest) if rest.starts_with('/') => &rest[1..],
        _ => path,
    }
}

/// Parse a mirror target `[http://|https://]host[:port][/[v2/]prefix]`.
pub fn parse_target(s: &str) -> Result<Target, EndpointError> {
    let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
        (Some(Scheme::Https), r)
    } else if let Some(r) = s.strip_prefix("http://") {
        (Some(Scheme::Http), r)
    } else if let Some(idx) = s.find("://") {
        return err(format!(
            "scheme {:?} is not supported (use http:// or https://, or none for https)",
            &s[..idx]
        ));
    } else {
        (None, s)
    };
    check_charset(rest)?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let host = parse_host_port(hostport)?;
    let prefix = match path.map(strip_api_root) {
        None | Some("") => None,
        Some(p) => Some(parse_repository_prefix(p)?),
    };
    Ok(Target {
        scheme,
        host,
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_forms() {
        let t = parse_target("harbor.example.org/airgap-images/docker.io").unwrap();
        assert_eq!(
            t.endpoint_url(Scheme::Https),
            (
                "https://harbor.example.org/v2/airgap-images/docker.io".into(),
                true
            )
        );
        let t = parse_target("http://127.0.0.1:5000").unwrap();
        assert_eq!(
            t.endpoint_url(Scheme::Http),
            ("http://127.0.0.1:5000".into(), false)
        );
        let t = parse_target("[fd00::1]:5000/x").unwrap();
        assert_eq!(t.host.to_string(), "[fd00::1]:5000");
    }

    #[test]
    fn api_root_in_target_means_the_same_as_without() {
        for (with, without) in [
            (
                "harbor.example.org/v2/proxy-cache/docker.io",
                "harbor.example.org/proxy-cache/docker.io",
            ),
            ("http://h:5000/v2/x", "http://h:5000/x"),
            ("h/v2", "h"),
            ("h/v2/", "h"),
        ] {
            assert_eq!(
                parse_target(with).unwrap(),
                parse_target(without).unwrap(),
                "{with}"
            );
        }
        assert_eq!(
            parse_target("h/v2/p").unwrap().endpoint_url(Scheme::Https),
            ("https://h/v2/p".into(), true)
        );
    }

    #[test]
    fn insecure_means_https_unverified_then_http() {
        let t = parse_target("h.example/p").unwrap();
        let e = t.endpoints(true);
        assert_eq!(e.len(), 2);
        assert!(e[0].skip_verify && e[0].scheme == Scheme::Https);
        assert_eq!(e[1].scheme, Scheme::Http);
        let t = parse_target("http://h.example/p").unwrap();
        assert_eq!(t.endpoints(true).len(), 1);
    }

    #[test]
    fn rejects() {
        for bad in [
            "h\"x",
            "h x",
            "h#x",
            "h]x",
            "-h.example",
            "h..x",
            "h:0",
            "h:65536",
            "h:1:2",
            "ftp://h",
            "h/UPPER",
            "h/a//b",
            "h/v2/v2/x",
            "h/x/v2/y",
            "h/v2//x",
            "[zz::1]",
            "h/a..b",
            "999.1.1.1",
        ] {
            assert!(parse_target(bad).is_err(), "{bad} accepted");
        }
    }
}
