//! Secret inputs → [`SecretData`]: a YAML manifest (one or more documents), or a
//! `k8s_openapi` Secret. Pure: the caller reads the file.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

use super::SecretData;

/// Why a manifest gave no usable Secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("Secret manifest is not valid YAML: {0}")]
    Yaml(String),
    #[error("no Secret named {wanted:?} in the manifest (found: {found})")]
    NotFound { wanted: String, found: String },
    #[error("Secret {name:?} is present {count} times in the manifest")]
    Ambiguous { name: String, count: usize },
    #[error("Secret data key {key:?} is not valid base64")]
    Base64 { key: String },
    #[error("Secret {section} key {key:?}: value must be a string")]
    NotString { section: &'static str, key: String },
}

#[derive(Deserialize)]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    kind: Option<String>,
    metadata: Option<Meta>,
    data: Option<BTreeMap<String, serde_yaml_ng::Value>>,
    string_data: Option<BTreeMap<String, serde_yaml_ng::Value>>,
}

fn scalar_text(
    section: &'static str,
    key: &str,
    v: &serde_yaml_ng::Value,
) -> Result<String, ManifestError> {
    use serde_yaml_ng::Value as V;
    match v {
        V::String(s) => Ok(s.clone()),
        // `INSECURE: false` without quotes is a common slip; the API server would reject it,
        // but its meaning is clear, so keep the text.
        V::Bool(b) => Ok(b.to_string()),
        V::Number(n) => Ok(n.to_string()),
        V::Null => Ok(String::new()),
        _ => Err(ManifestError::NotString {
            section,
            key: key.to_string(),
        }),
    }
}

/// Merge `data` (base64) and `stringData` the way the API server does: stringData wins per key.
fn merge(
    data: Option<&BTreeMap<String, serde_yaml_ng::Value>>,
    string_data: Option<&BTreeMap<String, serde_yaml_ng::Value>>,
) -> Result<SecretData, ManifestError> {
    let mut out = SecretData::new();
    for (k, v) in data.into_iter().flatten() {
        let text = scalar_text("data", k, v)?;
        let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(clean.as_bytes())
            .map_err(|_| ManifestError::Base64 { key: k.clone() })?;
        out.insert(k.clone(), bytes);
    }
    for (k, v) in string_data.into_iter().flatten() {
        out.insert(k.clone(), scalar_text("stringData", k, v)?.into_bytes());
    }
    Ok(out)
}

/// Parse a manifest holding one or more YAML documents and return the data of the Secret named
/// `name` (and in `namespace`, when the document names one and `namespace` is given).
pub fn secret_data_from_manifest(
    text: &str,
    name: &str,
    namespace: Option<&str>,
) -> Result<SecretData, ManifestError> {
    let mut found = Vec::new();
    let mut matches = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        let value = serde_yaml_ng::Value::deserialize(de)
            .map_err(|e| ManifestError::Yaml(e.to_string()))?;
        if value.is_null() {
            continue; // an empty document (leading/trailing `---`)
        }
        let doc: Doc = match serde_yaml_ng::from_value(value) {
            Ok(d) => d,
            Err(_) => continue, // not an object we understand: some other document
        };
        if doc.kind.as_deref() != Some("Secret") {
            continue;
        }
        let (dname, dns) = doc
            .metadata
            .as_ref()
            .map(|m| (m.name.clone(), m.namespace.clone()))
            .unwrap_or_default();
        let dname = dname.unwrap_or_default();
        found.push(format!(
            "{}/{}",
            dns.clone().unwrap_or_else(|| "-".into()),
            dname
        ));
        let ns_ok = match (namespace, dns.as_deref()) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        };
        if dname == name && ns_ok {
            matches.push(doc);
        }
    }
    match matches.len() {
        0 => Err(ManifestError::NotFound {
            wanted: match namespace {
                Some(ns) => format!("{ns}/{name}"),
                None => name.to_string(),
            },
            found: if found.is_empty() {
                "no Secret documents".into()
            } else {
                found.join(", ")
            },
        }),
        1 => merge(matches[0].data.as_ref(), matches[0].string_data.as_ref()),
        n => Err(ManifestError::Ambiguous {
            name: name.to_string(),
            count: n,
        }),
    }
}

/// The data of a Secret read from the Kubernetes API (`data` is already decoded by k8s-openapi;
/// `stringData` is never returned by the API server but is honoured if present).
pub fn secret_data_from_object(secret: &Secret) -> SecretData {
    let mut out = SecretData::new();
    for (k, v) in secret.data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_wins_over_data() {
        let m = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: registry-info, namespace: jet-system}\ndata:\n  DOMAIN: aGFyYm9yLmE=\n  USERNAME: dQ==\nstringData:\n  DOMAIN: harbor.b\n---\n";
        let d = secret_data_from_manifest(m, "registry-info", Some("jet-system")).unwrap();
        assert_eq!(d["DOMAIN"], b"harbor.b");
        assert_eq!(d["USERNAME"], b"u");
    }

    #[test]
    fn picks_by_name() {
        let m = "kind: ConfigMap\nmetadata: {name: registry-info}\n---\nkind: Secret\nmetadata: {name: other}\n---\nkind: Secret\nmetadata: {name: registry-info}\nstringData: {A: b}\n";
        let d = secret_data_from_manifest(m, "registry-info", None).unwrap();
        assert_eq!(d["A"], b"b");
        let e = secret_data_from_manifest(m, "nope", None).unwrap_err();
        assert!(e.to_string().contains("-/other"), "{e}");
    }
}
