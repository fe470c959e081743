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

/// The hosts.toml text for one mirror entry.
pub fn hosts_toml(spec: &RegistrySpec, mirror: &Mirror, ca_file: Option<&str>) -> String {
    let mut doc = DocumentMut::new();
    if let Some(server) = upstream(&mirror.source) {
        doc["server"] = value(server);
    }
    let mut hosts = Table::new();
    hosts.set_implicit(true);
    if let Some(t) = &mirror.target {
        for (url, ep) in endpoint_list(spec, Some(t))
            .into_iter()
            .zip(t.endpoints(spec.insecure))
        {
            let (_, override_path) = t.endpoint_url(ep.scheme);
            let mut h = Table::new();
            h["capabilities"] = value(Array::from_iter(["pull", "resolve"]));
            if override_path {
                h["override_path"] = value(true);
            }
            if let (Some(ca), crate::spec::Scheme::Https) = (ca_file, ep.scheme) {
                h["ca"] = value(ca);
            }
            if ep.skip_verify {
                h["skip_verify"] = value(true);
            }
            // Credentials go to DOMAIN's host only, never to other mirror hosts.
            if let Some(c) = &spec.credentials
                && t.host == spec.domain
            {
                let mut header = Table::new();
                header["Authorization"] = value(format!("Basic {}", c.basic_token()));
                h.insert("header", Item::Table(header));
            }
            hosts.insert(&url, Item::Table(h));
        }
    }
    if !hosts.is_empty() {
        doc.insert("host", Item::Table(hosts));
    }
    let body = doc.to_string();
    format!(
        "{HEADER}{}{body}",
        if mirror.target.is_none() {
            "# no mirror for this registry: pulls go to the upstream only\n"
        } else {
            ""
        }
    )
}
