//! containerd's `ConfigureHosts` for a `config_path`: which directory applies to a registry,
//! how its hosts.toml becomes an ordered host list, and the default upstream. Versioned by
//! [`Behaviour`]. Pure: the files come through [`HostsFs`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, TableLike};

use super::host::{Capability, Origin, RegistryHost};
use super::rules::Behaviour;
use super::url::{Url, is_localhost, port_of};
use crate::spec::endpoint::default_host;

/// Read access to the hosts directories.
pub trait HostsFs {
    fn is_dir(&self, path: &Path) -> bool;
    fn read(&self, path: &Path) -> Option<String>;
    /// The file names in a directory.
    fn list(&self, dir: &Path) -> Vec<String>;
}

/// One entry before the default upstream is filled in (containerd's `hostConfig`).
#[derive(Debug, Clone, Default)]
struct Entry {
    url: Option<Url>,
    capabilities: Option<Vec<Capability>>,
    skip_verify: Option<bool>,
    ca: Vec<String>,
    client: bool,
    header: BTreeMap<String, Vec<String>>,
    origin: Option<Origin>,
}

/// The directory containerd uses for `registry` under `roots` (first existing candidate of the
/// first root that has one): `host_port_`, `host:port`, then `_default`.
pub fn host_dir(
    registry: &str,
    roots: &[PathBuf],
    b: Behaviour,
    fs: &dyn HostsFs,
) -> Option<PathBuf> {
    for root in roots {
        let mut names = Vec::new();
        if let Some((host, port)) = split_port(registry) {
            names.push(format!("{host}_{port}_"));
        }
        names.push(registry.to_string());
        if b.default_dir() {
            names.push("_default".into());
        }
        if let Some(d) = names.iter().map(|n| root.join(n)).find(|d| fs.is_dir(d)) {
            return Some(d);
        }
    }
    None
}

fn split_port(registry: &str) -> Option<(&str, &str)> {
    let (host, port) = registry.rsplit_once(':')?;
    (!port.is_empty() && port.bytes().all(|c| c.is_ascii_digit()) && !host.ends_with('['))
        .then_some((host, port))
}

/// The host list for `registry`, in the order containerd tries it (before capability filtering).
pub fn configure_hosts(
    registry: &str,
    roots: &[PathBuf],
    b: Behaviour,
    fs: &dyn HostsFs,
) -> Vec<RegistryHost> {
    let dir = host_dir(registry, roots, b, fs);
    let mut entries = dir
        .as_deref()
        .map(|d| load_dir(d, b, fs))
        .unwrap_or_default();
    if entries.last().is_none_or(|e| e.url.is_none()) {
        if entries.is_empty() {
            entries.push(Entry::default());
        }
        let file = dir.map(|d| {
            let f = d.join("hosts.toml");
            if fs.read(&f).is_some() { f } else { d }
        });
        fill_upstream(entries.last_mut().expect("one entry"), registry, b, file);
    }
    entries.into_iter().map(|e| finish(e, b)).collect()
}

/// A directory's entries: its hosts.toml, or (missing, empty or invalid) the certs in it.
fn load_dir(dir: &Path, b: Behaviour, fs: &dyn HostsFs) -> Vec<Entry> {
    let file = dir.join("hosts.toml");
    if let Some(text) = fs.read(&file).filter(|t| !t.trim().is_empty())
        && let Some(entries) = parse_hosts_file(&text, dir, &file, b)
    {
        return entries;
    }
    vec![certs_only(dir, fs)]
}

/// A Docker-style certs directory: `*.crt` are CAs, `*.cert` + `*.key` client pairs.
fn certs_only(dir: &Path, fs: &dyn HostsFs) -> Entry {
    let mut names = fs.list(dir);
    names.sort();
    Entry {
        ca: names
            .iter()
            .filter(|n| n.ends_with(".crt"))
            .map(|n| dir.join(n).to_string_lossy().into_owned())
            .collect(),
        client: names.iter().any(|n| n.ends_with(".cert")),
        ..Entry::default()
    }
}

/// `None` when containerd would reject the file (it then logs and uses the certs directory).
fn parse_hosts_file(text: &str, dir: &Path, file: &Path, b: Behaviour) -> Option<Vec<Entry>> {
    let doc: DocumentMut = text.parse().ok()?;
    let hosts = doc.get("host").and_then(Item::as_table_like);
    if hosts.is_none_or(|h| h.is_empty()) && !b.server_only_file() {
        return None;
    }
    let mut entries = Vec::new();
    for key in host_keys(&doc, b) {
        let item = hosts?.get(&key)?.as_table_like()?;
        let mut e = parse_entry(item, dir, b)?;
        e.url = Url::parse_host_key(&key, override_path(item));
        e.origin = Some(Origin::Host {
            file: file.to_path_buf(),
        });
        entries.push(e);
    }
    let root = doc.as_table();
    let mut e = parse_entry(root, dir, b)?;
    e.url = root
        .get("server")
        .and_then(Item::as_str)
        .and_then(|s| Url::parse_host_key(s, override_path(root)));
    e.origin = Some(Origin::Server {
        file: file.to_path_buf(),
    });
    entries.push(e);
    Some(entries)
}

fn override_path(t: &dyn TableLike) -> bool {
    t.get("override_path")
        .and_then(Item::as_bool)
        .unwrap_or(false)
}

/// The `[host."…"]` keys in the order containerd lists them.
fn host_keys(doc: &DocumentMut, b: Behaviour) -> Vec<String> {
    let Some(hosts) = doc.get("host").and_then(Item::as_table) else {
        return Vec::new();
    };
    if !b.table_walk_parser() {
        // go-toml v1: the keys of the tree, by the line they first appear on.
        let mut keys: Vec<(isize, String)> = hosts
            .iter()
            .map(|(k, item)| (first_position(item).unwrap_or(isize::MAX), k.to_string()))
            .collect();
        keys.sort();
        return keys.into_iter().map(|(_, k)| k).collect();
    }
    // go-toml v2's walk: each table header under `host` lists its host, unless it directly
    // follows a header of the same host; inline tables and dotted keys list nothing.
    let mut headers: Vec<(isize, String)> = Vec::new();
    for (k, item) in hosts.iter() {
        collect_headers(item, k, &mut headers);
    }
    headers.sort();
    let mut keys: Vec<String> = Vec::new();
    for (_, k) in headers {
        if keys.last() != Some(&k) {
            keys.push(k);
        }
    }
    keys
}

fn collect_headers(item: &Item, key: &str, out: &mut Vec<(isize, String)>) {
    let Some(t) = item.as_table() else {
        return;
    };
    if t.is_dotted() {
        return;
    }
    if !t.is_implicit()
        && let Some(p) = t.position()
    {
        out.push((p, key.to_string()));
    }
    for (_, sub) in t.iter() {
        collect_headers(sub, key, out);
    }
}

fn first_position(item: &Item) -> Option<isize> {
    let t = item.as_table()?;
    let own = (!t.is_implicit()).then(|| t.position()).flatten();
    let subs = t.iter().filter_map(|(_, s)| first_position(s));
    own.into_iter().chain(subs).min()
}

/// The settings of one host table (or of the file's top level).
fn parse_entry(t: &dyn TableLike, dir: &Path, b: Behaviour) -> Option<Entry> {
    let capabilities = match t.get("capabilities") {
        None => None,
        Some(item) => {
            let arr = item.as_array()?;
            let caps: Option<Vec<Capability>> = arr
                .iter()
                .map(|v| v.as_str().and_then(|s| Capability::parse(s, b.referrers())))
                .collect();
            Some(caps?)
        }
    };
    let abs = |s: &str| {
        if Path::new(s).is_absolute() {
            s.to_string()
        } else {
            dir.join(s).to_string_lossy().into_owned()
        }
    };
    Some(Entry {
        capabilities,
        skip_verify: t.get("skip_verify").and_then(Item::as_bool),
        ca: strings(t.get("ca")).iter().map(|s| abs(s)).collect(),
        client: t.get("client").is_some(),
        header: t
            .get("header")
            .and_then(Item::as_table_like)
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.to_string(), strings(Some(v))))
                    .collect()
            })
            .unwrap_or_default(),
        ..Entry::default()
    })
}

/// A string or an array of strings.
fn strings(item: Option<&Item>) -> Vec<String> {
    match item {
        Some(i) if i.is_str() => i.as_str().map(str::to_string).into_iter().collect(),
        Some(i) => i
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

/// The registry itself, where nothing named a server.
fn fill_upstream(e: &mut Entry, registry: &str, b: Behaviour, file: Option<PathBuf>) {
    let (scheme, host, skip) = if is_localhost(registry) {
        let (s, skip) = b.localhost_default(port_of(registry));
        (s, registry.to_string(), skip)
    } else {
        ("https", default_host(registry).to_string(), false)
    };
    e.url = Some(Url {
        scheme: scheme.into(),
        host,
        path: "/v2".into(),
    });
    e.capabilities = Some(Capability::defaults(b.referrers()));
    e.skip_verify = Some(e.skip_verify.unwrap_or(false) || skip);
    e.origin = Some(Origin::Upstream { file });
}

/// The `RegistryHost`: defaults filled, `http` + TLS settings upgraded to https-first.
fn finish(e: Entry, b: Behaviour) -> RegistryHost {
    let url = e.url.expect("every entry has a URL here");
    let skip_verify = e.skip_verify.unwrap_or(false);
    let tls = skip_verify || !e.ca.is_empty() || e.client;
    let upgrade = url.scheme == "http" && tls && b.http_upgrades(port_of(&url.host));
    RegistryHost {
        scheme: if upgrade { "https".into() } else { url.scheme },
        host: url.host,
        path: url.path,
        capabilities: e
            .capabilities
            .unwrap_or_else(|| Capability::defaults(b.referrers())),
        skip_verify,
        ca: e.ca,
        header: e.header,
        http_fallback: upgrade,
        origin: e.origin.unwrap_or(Origin::Upstream { file: None }),
    }
}
