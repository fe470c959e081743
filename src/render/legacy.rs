//! Legacy mode: `registry.mirrors."<source>".endpoint` and `registry.configs."<host>"` in
//! config.toml (pure: edits a parsed document).

use toml_edit::{Array, DocumentMut, Value};

use super::owned::{ConfigOwnership, set_value, value_at};
use super::{RenderError, version};
use crate::spec::{RegistrySpec, Source};

fn key(path: &[String], more: &[&str]) -> Vec<String> {
    path.iter()
        .cloned()
        .chain(more.iter().map(|s| s.to_string()))
        .collect()
}

/// Containerd's legacy mirror key for a source.
pub fn mirror_key(source: &Source) -> String {
    match source {
        Source::Wildcard => "*".into(),
        Source::Registry(h) => h.to_string(),
    }
}

/// The endpoint list for one mirror entry, in the order containerd tries them.
pub fn endpoint_list(spec: &RegistrySpec, target: Option<&crate::spec::Target>) -> Vec<String> {
    target
        .map(|t| {
            t.endpoints(spec.insecure)
                .into_iter()
                .map(|e| t.endpoint_url(e.scheme).0)
                .collect()
        })
        .unwrap_or_default()
}

/// Write the spec into `doc` under `registry` (the version's CRI registry table).
pub fn apply(
    doc: &mut DocumentMut,
    registry: &[String],
    spec: &RegistrySpec,
    ca_file: Option<&str>,
    own: &mut ConfigOwnership,
    warnings: &mut Vec<String>,
) -> Result<(), RenderError> {
    let cp = key(registry, &["config_path"]);
    if let Some(p) = version::lookup(doc, &cp).and_then(|i| i.as_str())
        && !p.is_empty()
    {
        return Err(RenderError::MirrorsNextToConfigPath {
            path: cp,
            value: p.to_string(),
        });
    }
    for m in &spec.mirrors {
        let path = key(registry, &["mirrors", &mirror_key(&m.source), "endpoint"]);
        if value_at(doc, &path).is_some() {
            warnings.push(format!(
                "config.toml already has a mirror for {}; regmirror replaces it while applied and restores it on revert",
                m.source
            ));
        }
        let urls = endpoint_list(spec, m.target.as_ref());
        set_value(doc, &path, Value::Array(Array::from_iter(urls)), own)?;
    }
    write_host_configs(doc, registry, spec, ca_file, own)
}

/// `configs."<host>"` for DOMAIN and every target host: CA file and INSECURE; credentials for
/// DOMAIN's host only.
fn write_host_configs(
    doc: &mut DocumentMut,
    registry: &[String],
    spec: &RegistrySpec,
    ca_file: Option<&str>,
    own: &mut ConfigOwnership,
) -> Result<(), RenderError> {
    for host in spec.mirror_hosts() {
        let h = host.to_string();
        if let Some(c) = &spec.credentials
            && host == spec.domain
        {
            set_value(
                doc,
                &key(registry, &["configs", &h, "auth", "username"]),
                c.username.as_str().into(),
                own,
            )?;
            set_value(
                doc,
                &key(registry, &["configs", &h, "auth", "password"]),
                c.password.expose().into(),
                own,
            )?;
        }
        if let Some(ca) = ca_file {
            set_value(
                doc,
                &key(registry, &["configs", &h, "tls", "ca_file"]),
                ca.into(),
                own,
            )?;
        }
        if spec.insecure {
            set_value(
                doc,
                &key(registry, &["configs", &h, "tls", "insecure_skip_verify"]),
                true.into(),
                own,
            )?;
        }
    }
    Ok(())
}
