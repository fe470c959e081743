//! The `containers-registries.conf` renderer (Podman, CRI-O, Buildah, Skopeo): a
//! [`RegistrySpec`] → the text of ONE drop-in file owned by regmirror
//! (`/etc/containers/registries.conf.d/50-regmirror.conf`), the CA file the runtime reads
//! (`/etc/containers/certs.d/<DOMAIN>/ca.crt`) and the credentials entry of a
//! `containers-auth.json` file. Pure: takes values and texts, returns texts.
//!
//! Mapping (one `[[registry]]` per MIRROR_REGISTRIES entry, in the Secret's order):
//!
//! | Secret | registries.conf |
//! |---|---|
//! | `src::host/prefix` | `[[registry]] prefix = "src"`, `location = "src"`, `[[registry.mirror]] location = "host/prefix"` |
//! | `src::http://host/p` | the mirror gets `insecure = true` (the format has no scheme: insecure allows http) |
//! | `INSECURE=true` | every mirror gets `insecure = true` (https without verification, then http) |
//! | `src::` (no target) | a `[[registry]]` for `src` without mirrors: pulls go to `src` itself |
//! | `*::…` / `default::…` | refused ([`RegistriesError::Wildcard`]): the format has no prefix that matches every registry |
//! | `CA_CERT` | `<certs-dir>/<DOMAIN>/ca.crt` |
//! | `USERNAME`/`PASSWORD` | `auths."<DOMAIN>".auth = base64(user:pass)` in the auth file |

use serde_json::{Map, Value};

use crate::spec::{RegistrySpec, Scheme, Source};

/// First line of every drop-in regmirror writes.
pub const MANAGED_HEADER: &str = "# managed by regmirror";
/// The drop-in's file name in the registries.conf.d directory.
pub const DROP_IN_NAME: &str = "50-regmirror.conf";

/// What the registries.conf format cannot express: refused, never approximated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistriesError {
    #[error(
        "MIRROR_REGISTRIES entry {entry:?}: registries.conf has no wildcard prefix that matches every registry (a [[registry]] needs a concrete prefix such as docker.io); list each source registry explicitly for --runtime podman"
    )]
    Wildcard { entry: String },
    #[error("auth file {what}: {why}")]
    Auth { what: String, why: String },
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    toml_edit::Value::from(s).to_string()
}

/// The drop-in's text for `spec`, or the entry the format cannot express.
pub fn render_conf(spec: &RegistrySpec) -> Result<String, RegistriesError> {
    let mut out = String::new();
    out.push_str(MANAGED_HEADER);
    out.push_str(
        "; do not edit: `regmirror apply --runtime podman` rewrites it, `regmirror revert` removes it.\n",
    );
    for m in &spec.mirrors {
        let src = match &m.source {
            Source::Registry(h) => h.to_string(),
            Source::Wildcard => {
                let target = m.target.as_ref().map(|t| t.to_string()).unwrap_or_default();
                return Err(RegistriesError::Wildcard {
                    entry: format!("*::{target}"),
                });
            }
        };
        out.push('\n');
        match &m.target {
            None => out.push_str(&format!(
                "# {src}: no mirror (MIRROR_REGISTRIES entry \"{src}::\"); pulls go to {src} itself\n"
            )),
            Some(t) => out.push_str(&format!("# {src}::{t}\n")),
        }
        out.push_str("[[registry]]\n");
        out.push_str(&format!("prefix = {}\n", quoted(&src)));
        out.push_str(&format!("location = {}\n", quoted(&src)));
        if let Some(t) = &m.target {
            let location = match &t.prefix {
                Some(p) => format!("{}/{p}", t.host),
                None => t.host.to_string(),
            };
            out.push_str("\n[[registry.mirror]]\n");
            out.push_str(&format!("location = {}\n", quoted(&location)));
            if spec.insecure || t.scheme == Some(Scheme::Http) {
                out.push_str("insecure = true\n");
            }
        }
    }
    Ok(out)
}

/// The auth file's key for `spec`'s credentials: DOMAIN (`host[:port]`).
pub fn auth_key(spec: &RegistrySpec) -> String {
    spec.domain.to_string()
}

/// The auth file's entry for `spec`'s credentials, `None` without credentials.
pub fn auth_entry(spec: &RegistrySpec) -> Option<Value> {
    spec.credentials
        .as_ref()
        .map(|c| serde_json::json!({ "auth": c.basic_token() }))
}

/// The `auths.<key>` entry of an auth file's text (`None`: no file, or no such key).
pub fn auth_entry_of(text: Option<&[u8]>, key: &str) -> Result<Option<Value>, RegistriesError> {
    let Some(t) = text else { return Ok(None) };
    let doc = parse_auth(t)?;
    Ok(doc.get("auths").and_then(|a| a.get(key)).cloned())
}

fn parse_auth(text: &[u8]) -> Result<Map<String, Value>, RegistriesError> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let v: Value = serde_json::from_slice(text).map_err(|e| RegistriesError::Auth {
        what: "does not parse as JSON".into(),
        why: format!("line {} column {}", e.line(), e.column()),
    })?;
    let Value::Object(map) = v else {
        return Err(RegistriesError::Auth {
            what: "is not a JSON object".into(),
            why: "expected {\"auths\": {...}}".into(),
        });
    };
    if map.get("auths").is_some_and(|a| !a.is_object()) {
        return Err(RegistriesError::Auth {
            what: "\"auths\" is not an object".into(),
            why: "expected {\"auths\": {\"host\": {\"auth\": \"...\"}}}".into(),
        });
    }
    Ok(map)
}

/// `text` (an auth file, or none) with `auths.<key>` set to `entry`, or removed when `entry` is
/// `None`; every other key is kept. `None` when the result is empty and there was no file.
pub fn merge_auth(
    text: Option<&[u8]>,
    key: &str,
    entry: Option<&Value>,
) -> Result<Option<Vec<u8>>, RegistriesError> {
    let mut doc = match text {
        Some(t) => parse_auth(t)?,
        None => Map::new(),
    };
    let auths = doc
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .expect("checked by parse_auth");
    match entry {
        Some(e) => {
            auths.insert(key.to_string(), e.clone());
        }
        None => {
            auths.remove(key);
        }
    }
    let empty = auths.is_empty() && doc.len() == 1;
    if empty && text.is_none() {
        return Ok(None);
    }
    let mut out = serde_json::to_string_pretty(&Value::Object(doc)).expect("json");
    out.push('\n');
    Ok(Some(out.into_bytes()))
}

/// An auth file's text for a person: every credential value (`auth`, `password`,
/// `identitytoken`, `registrytoken`) shown as `"***"`. A text that does not parse is not shown.
pub fn redact_auth_json(text: &str) -> String {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, val) in m.iter_mut() {
                    let k = k.to_ascii_lowercase();
                    if val.is_string()
                        && ["auth", "password", "token", "secret"]
                            .iter()
                            .any(|w| k.contains(w))
                    {
                        *val = Value::String("***".into());
                    } else {
                        walk(val);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    if text.trim().is_empty() {
        return text.to_string();
    }
    match serde_json::from_str::<Value>(text) {
        Ok(mut v) => {
            walk(&mut v);
            let mut s = serde_json::to_string_pretty(&v).expect("json");
            s.push('\n');
            s
        }
        Err(_) => "# (this file does not parse as JSON; its contents are not shown: they may hold credentials)\n".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{SecretData, parse_spec};

    fn spec(pairs: &[(&str, &str)]) -> RegistrySpec {
        let mut d: SecretData = [
            ("DOMAIN", "h.example:5000"),
            ("BASE_PATH", "airgap"),
            ("INSECURE", "false"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
        for (k, v) in pairs {
            d.insert(k.to_string(), v.as_bytes().to_vec());
        }
        parse_spec(&d).unwrap()
    }

    #[test]
    fn mirror_entries_map_to_prefix_location_and_mirror() {
        let s = spec(&[(
            "MIRROR_REGISTRIES",
            "docker.io::h.example:5000/airgap/docker.io,quay.io::http://h.example:5000/airgap/quay.io,gcr.io::",
        )]);
        let t = render_conf(&s).unwrap();
        assert!(t.starts_with(MANAGED_HEADER));
        assert!(t.contains(
            "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\n[[registry.mirror]]\nlocation = \"h.example:5000/airgap/docker.io\"\n"
        ));
        assert!(t.contains("location = \"h.example:5000/airgap/quay.io\"\ninsecure = true\n"));
        assert!(!t.contains("airgap/docker.io\"\ninsecure"));
        let gcr = t.split("prefix = \"gcr.io\"").nth(1).unwrap();
        assert!(!gcr.contains("[[registry.mirror]]"));
        let doc: toml_edit::DocumentMut = t.parse().unwrap();
        assert_eq!(doc["registry"].as_array_of_tables().unwrap().len(), 3);
    }

    #[test]
    fn insecure_marks_every_mirror() {
        let s = spec(&[
            ("INSECURE", "true"),
            (
                "MIRROR_REGISTRIES",
                "docker.io::h.example:5000/airgap/docker.io",
            ),
        ]);
        assert!(render_conf(&s).unwrap().contains("insecure = true\n"));
    }

    #[test]
    fn wildcard_is_refused_naming_the_entry() {
        let s = spec(&[("MIRROR_REGISTRIES", "*::h.example:5000/airgap")]);
        let e = render_conf(&s).unwrap_err();
        assert!(
            e.to_string().contains("\"*::h.example:5000/airgap\""),
            "{e}"
        );
    }

    #[test]
    fn auth_merge_keeps_other_keys_and_removes_only_ours() {
        let s = spec(&[
            ("USERNAME", "u"),
            ("PASSWORD", "hunter2"),
            (
                "MIRROR_REGISTRIES",
                "docker.io::h.example:5000/airgap/docker.io",
            ),
        ]);
        let admin = br#"{"auths":{"other.example":{"auth":"b3RoZXI="}},"credHelpers":{"x":"y"}}"#;
        let entry = auth_entry(&s).unwrap();
        let merged = merge_auth(Some(admin), &auth_key(&s), Some(&entry))
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&merged).unwrap();
        assert_eq!(v["auths"]["other.example"]["auth"], "b3RoZXI=");
        assert_eq!(v["credHelpers"]["x"], "y");
        assert_eq!(v["auths"]["h.example:5000"]["auth"], "dTpodW50ZXIy");
        let shown = redact_auth_json(std::str::from_utf8(&merged).unwrap());
        assert!(!shown.contains("dTpodW50ZXIy") && !shown.contains("b3RoZXI="));
        let back = merge_auth(Some(&merged), &auth_key(&s), None)
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&back).unwrap();
        assert!(v["auths"].get("h.example:5000").is_none());
        assert_eq!(v["auths"]["other.example"]["auth"], "b3RoZXI=");
        assert_eq!(merge_auth(None, "k", None).unwrap(), None);
        assert!(merge_auth(Some(b"[1]"), "k", None).is_err());
    }
}
