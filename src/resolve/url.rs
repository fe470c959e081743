//! The URL rules containerd applies to hosts: a hosts.toml key or `server` (scheme added when
//! it does not start with `http`, `/v2` appended unless `override_path`), a legacy endpoint
//! (scheme guessed from the host, path used as written), and what counts as localhost. Pure.

/// scheme, `host[:port]`, path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    pub host: String,
    pub path: String,
}

fn split(s: &str) -> Option<Url> {
    let (scheme, rest) = s.split_once("://")?;
    let (host, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    (!host.is_empty()).then(|| Url {
        scheme: scheme.to_ascii_lowercase(),
        host: host.to_string(),
        path: path.to_string(),
    })
}

impl Url {
    /// A `[host."…"]` key or `server` value. `None` when containerd finds no host in it (then
    /// the entry is the upstream): `httpcache.example.com` starts with `http`, so no scheme is
    /// added, and it parses as a bare path.
    pub fn parse_host_key(s: &str, override_path: bool) -> Option<Url> {
        let full = if s.starts_with("http") {
            s.to_string()
        } else {
            format!("https://{s}")
        };
        let mut u = split(&full)?;
        if !override_path {
            u.path = if u.path.is_empty() {
                "/v2".into()
            } else {
                let c = clean(&u.path);
                if c.ends_with("/v2") {
                    c
                } else {
                    format!("{c}/v2")
                }
            };
        }
        Some(u)
    }

    /// A legacy `endpoint`: no scheme → http for localhost, https otherwise; the path as
    /// written, `/v2` only when there is none.
    pub fn parse_legacy(ep: &str) -> Option<Url> {
        let full = if ep.contains("://") {
            ep.to_string()
        } else {
            // containerd asks about the whole endpoint, path included (as Go's SplitHostPort
            // sees it: `127.0.0.1:5000/p` is local, `localhost/p` is not).
            format!("{}://{ep}", default_scheme(ep))
        };
        let mut u = split(&full)?;
        if u.path.is_empty() {
            u.path = "/v2".into();
        }
        Some(u)
    }
}

/// The CRI plugin's scheme for a host written without one.
pub fn default_scheme(host: &str) -> &'static str {
    if is_localhost(host) { "http" } else { "https" }
}

/// `host:port` → (host, port), as Go's `net.SplitHostPort` (brackets removed).
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        return Some((h, after.strip_prefix(':')?));
    }
    let (h, p) = s.rsplit_once(':')?;
    (!h.contains(':')).then_some((h, p))
}

/// The port of `host[:port]`, if one is written.
pub fn port_of(hostport: &str) -> Option<&str> {
    split_host_port(hostport).map(|(_, p)| p)
}

/// containerd's `IsLocalhost`: `localhost` or a loopback IP, with or without a port (a
/// bracketed IPv6 address without a port is not recognised, as in containerd).
pub fn is_localhost(hostport: &str) -> bool {
    let host = split_host_port(hostport).map_or(hostport, |(h, _)| h);
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Go's `path.Clean`.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys_and_endpoints() {
        let u = Url::parse_host_key("https://m/us", false).unwrap();
        assert_eq!((u.host.as_str(), u.path.as_str()), ("m", "/us/v2"));
        assert_eq!(Url::parse_host_key("m/", false).unwrap().path, "//v2");
        assert_eq!(
            Url::parse_host_key("https://m/v2/", false).unwrap().path,
            "/v2"
        );
        assert_eq!(Url::parse_host_key("https://m", true).unwrap().path, "");
        assert!(Url::parse_host_key("httpcache.example.com", false).is_none());
        let l = Url::parse_legacy("127.0.0.1:5000/v2/p").unwrap();
        assert_eq!((l.scheme.as_str(), l.path.as_str()), ("http", "/v2/p"));
        assert_eq!(Url::parse_legacy("https://m/").unwrap().path, "/");
        assert!(is_localhost("[::1]:8080") && is_localhost("127.0.0.1") && !is_localhost("[::1]"));
        assert_eq!(clean("/a/./b/../c//"), "/a/c");
    }
}
