//! Hosts mode: one `hosts.toml` per source registry under containerd's `config_path`
//! (pure: returns file texts; the caller writes them).

use toml_edit::{Array, DocumentMut, Item, Table, value};

use super::legacy::endpoint_list;
use crate::spec::{Mirror, RegistrySpec, Source};

/// The directory name containerd looks up for a source: `host[:port]`, or `_default`.
pub fn dir_name(source: &Source) -> String {
    match source {
        Source::Wildcard => "_default".into(),
        Source::Registry(h) => h.to_string(),
    }
}

/// The upstream a source falls back to (containerd's default host), tried after the mirrors.
pub fn upstream(source: &Source) -> Option<String> {
    match source {
        Source::Wildcard => None,
        Source::Registry(h) => Some(format!(
            "https://{}",
            crate::spec::endpoint::default_host(&h.to_string())
        )),
    }
}

pub const HEADER: &str =
    "# Managed by regmirror from the registry-info Secret; edits are overwritten.\n";

/// A Go duration for `dial_timeout` (`200ms`, `3s`).
fn go_duration(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The settings of one endpoint: as a `[host."url"]` table, or (strict, last) at the top level.
fn endpoint_settings(
    t: &mut dyn toml_edit::TableLike,
    spec: &RegistrySpec,
    target: &crate::spec::Target,
    ep: &crate::spec::endpoint::EndpointUrl,
    ca_file: Option<&str>,
    options: super::HostsOptions,
) {
    let (_, override_path) = target.endpoint_url(ep.scheme);
    t.insert("capabilities", value(Array::from_iter(["pull", "resolve"])));
    if override_path {
        t.insert("override_path", value(true));
    }
    if let (Some(ca), crate::spec::Scheme::Https) = (ca_file, ep.scheme) {
        t.insert("ca", value(ca));
    }
    if ep.skip_verify {
        t.insert("skip_verify", value(true));
    }
    if let Some(d) = options.dial_timeout {
        t.insert("dial_timeout", value(go_duration(d)));
    }
    // Credentials go to DOMAIN's host only, never to other mirror hosts.
    if let Some(c) = &spec.credentials
        && target.host == spec.domain
    {
        let mut header = Table::new();
        header["Authorization"] = value(format!("Basic {}", c.basic_token()));
        t.insert("header", Item::Table(header));
    }
}

/// The hosts.toml text for one mirror entry.
pub fn hosts_toml(
    spec: &RegistrySpec,
    mirror: &Mirror,
    ca_file: Option<&str>,
    options: super::HostsOptions,
) -> String {
    let mut doc = DocumentMut::new();
    let strict = options.strict && mirror.target.is_some();
    if let Some(server) = upstream(&mirror.source).filter(|_| !strict) {
        doc["server"] = value(server);
    }
    let mut hosts = Table::new();
    hosts.set_implicit(true);
    let mut top = Table::new();
    if let Some(t) = &mirror.target {
        let all: Vec<_> = endpoint_list(spec, Some(t))
            .into_iter()
            .zip(t.endpoints(spec.insecure))
            .collect();
        for (i, (url, ep)) in all.iter().enumerate() {
            if strict && i + 1 == all.len() {
                // The last endpoint is also the server: nothing after it, no upstream. It stays
                // a [host] too: containerd 1.x refuses a hosts.toml without a `host` table.
                doc["server"] = value(url.as_str());
                endpoint_settings(&mut top, spec, t, ep, ca_file, options);
            }
            let mut h = Table::new();
            endpoint_settings(&mut h, spec, t, ep, ca_file, options);
            hosts.insert(url, Item::Table(h));
        }
    }
    let header = top.remove("header");
    for (k, v) in top.into_iter() {
        doc.insert(&k, v);
    }
    if let Some(h) = header {
        doc.insert("header", h);
    }
    if !hosts.is_empty() {
        doc.insert("host", Item::Table(hosts));
    }
    let body = doc.to_string();
    let note = match (&mirror.target, strict) {
        (None, _) => "# no mirror for this registry: pulls go to the upstream only\n",
        (Some(_), true) => "# strict air-gap: no fallback to the upstream registry\n",
        (Some(_), false) => "",
    };
    format!("{HEADER}{note}{body}")
}
