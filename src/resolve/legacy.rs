//! The CRI plugin's legacy `registry.mirrors` (no `config_path`): the mirror entry of the
//! registry (or `*`), schemes guessed per host, and the registry itself appended unless an
//! endpoint already is it. Pure.

use std::collections::BTreeMap;

use super::host::{Capability, Origin, RegistryHost};
use super::rules::Behaviour;
use super::url::{Url, default_scheme, is_localhost};

/// The host list for `registry` from config.toml's `mirrors` (key → endpoints).
pub fn legacy_hosts(
    registry: &str,
    mirrors: &BTreeMap<String, Vec<String>>,
    b: Behaviour,
) -> Vec<RegistryHost> {
    let (key, endpoints) = match (mirrors.get(registry), mirrors.get("*")) {
        (Some(e), _) => (registry, e.as_slice()),
        (None, Some(e)) => ("*", e.as_slice()),
        (None, None) => (registry, &[][..]),
    };
    let mut urls: Vec<(Url, Origin)> = endpoints
        .iter()
        .filter_map(|ep| Url::parse_legacy(ep))
        .map(|u| {
            (
                u,
                Origin::LegacyMirror {
                    key: key.to_string(),
                },
            )
        })
        .collect();
    if !urls.iter().any(|(u, _)| u.host == registry) {
        let host = if registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        urls.push((
            Url {
                scheme: default_scheme(registry).into(),
                host: host.into(),
                path: "/v2".into(),
            },
            Origin::LegacyUpstream,
        ));
    }
    let mut caps = vec![Capability::Pull, Capability::Resolve];
    if b.referrers() {
        caps.push(Capability::Referrers);
    }
    urls.into_iter()
        .map(|(u, origin)| RegistryHost {
            skip_verify: u.scheme == "http" && is_localhost(&u.host),
            scheme: u.scheme,
            host: u.host,
            path: u.path,
            capabilities: caps.clone(),
            ca: Vec::new(),
            header: BTreeMap::new(),
            http_fallback: false,
            origin,
        })
        .collect()
}
