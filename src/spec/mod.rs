//! The desired state: a registry-info Secret's keys turned into a validated [`RegistrySpec`].
//! Pure: no file system, no network. Every error names the key and the rule it broke, and never
//! echoes PASSWORD.

pub mod endpoint;
pub mod manifest;
pub mod swap;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use endpoint::{EndpointError, Host, HostPort, Scheme, Target};
pub use manifest::{ManifestError, secret_data_from_manifest, secret_data_from_object};
pub use swap::{Mirror, Source, SwapError};

/// The raw key/value pairs of a Secret (`stringData` merged over decoded `data`), as every
/// source (manifest file, mounted volume, Kubernetes API) delivers them.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// Keys the Secret may hold.
pub const KNOWN_KEYS: [&str; 7] = [
    "DOMAIN",
    "BASE_PATH",
    "USERNAME",
    "PASSWORD",
    "INSECURE",
    "CA_CERT",
    "MIRROR_REGISTRIES",
];

/// Largest value accepted for MIRROR_REGISTRIES and CA_CERT.
pub const MAX_LIST_BYTES: usize = 256 * 1024;
/// Largest value accepted for every other key.
pub const MAX_SCALAR_BYTES: usize = 4096;

/// Why a Secret was refused. Messages name the key, the value (never PASSWORD's) and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    #[error("Secret key {key} is missing (required)")]
    Missing { key: &'static str },
    #[error("Secret key {key} is empty (required)")]
    Empty { key: &'static str },
    #[error("Secret key {key} is not UTF-8 text")]
    NotUtf8 { key: &'static str },
    #[error("Secret key {key} is {len} bytes long (at most {max})")]
    TooLong {
        key: &'static str,
        len: usize,
        max: usize,
    },
    #[error("Secret key {key} = {value:?}: {why}")]
    Invalid {
        key: &'static str,
        value: String,
        why: String,
    },
    #[error("Secret key {key}: {why}")]
    Rule { key: &'static str, why: String },
    #[error("{0}")]
    Mirrors(#[from] SwapError),
}

/// A password that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(s: impl Into<String>) -> Self {
        Password(s.into())
    }
    /// The clear text, for the renderer only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Serialize for Password {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Registry credentials (USERNAME / PASSWORD).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credentials {
    pub username: String,
    pub password: Password,
}

impl Credentials {
    /// base64(`user:pass`), the value of a Basic Authorization header and of legacy `auth`.
    pub fn basic_token(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.username,
            self.password.expose()
        ))
    }
}

/// CA_CERT: one or more PEM certificates that parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaBundle {
    /// The certificates re-encoded as PEM, one after the other.
    pub pem: String,
    /// Subject of each certificate, for `show`.
    pub subjects: Vec<String>,
}

/// The validated registry override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrySpec {
    pub domain: HostPort,
    pub base_path: Option<String>,
    pub credentials: Option<Credentials>,
    pub insecure: bool,
    pub ca: Option<CaBundle>,
    pub mirrors: Vec<Mirror>,
    /// Things worth telling but not worth refusing (unknown keys, prefix mismatches).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl RegistrySpec {
    /// The hosts that receive credentials and TLS settings: DOMAIN and every target host.
    pub fn mirror_hosts(&self) -> BTreeSet<HostPort> {
        let mut hosts: BTreeSet<HostPort> = self
            .mirrors
            .iter()
            .filter_map(|m| m.target.as_ref().map(|t| t.host.clone()))
            .collect();
        hosts.insert(self.domain.clone());
        hosts
    }

    /// A stable hash of everything but the password (safe to publish in a Node annotation).
    pub fn hash(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        let digest = Sha256::digest(json.as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// A keyed fingerprint of everything, PASSWORD included: it changes with any change of the
    /// Secret's content, and without `key` (kept 0600 in the state dir) it says nothing about
    /// the password.
    pub fn fingerprint(&self, key: &[u8]) -> String {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        mac.update(serde_json::to_string(self).unwrap_or_default().as_bytes());
        if let Some(c) = &self.credentials {
            mac.update(b"\0");
            mac.update(c.password.expose().as_bytes());
        }
        let digest = mac.finalize().into_bytes();
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

fn text<'a>(
    data: &'a SecretData,
    key: &'static str,
    max: usize,
) -> Result<Option<&'a str>, SpecError> {
    let Some(raw) = data.get(key) else {
        return Ok(None);
    };
    if raw.len() > max {
        return Err(SpecError::TooLong {
            key,
            len: raw.len(),
            max,
        });
    }
    std::str::from_utf8(raw)
        .map(Some)
        .map_err(|_| SpecError::NotUtf8 { key })
}

fn required<'a>(data: &'a SecretData, key: &'static str, max: usize) -> Result<&'a str, SpecError> {
    text(data, key, max)?.ok_or(SpecError::Missing { key })
}

fn check_scalar(key: &'static str, value: &str) -> Result<(), SpecError> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(SpecError::Invalid {
            key,
            value: value.escape_debug().to_string(),
            why: format!("control character {c:?} is not allowed"),
        });
    }
    Ok(())
}

fn parse_ca(pem_text: &str) -> Result<CaBundle, SpecError> {
    let rule = |why: String| SpecError::Rule {
        key: "CA_CERT",
        why,
    };
    let mut pem_out = String::new();
    let mut subjects = Vec::new();
    for (i, item) in x509_parser::pem::Pem::iter_from_buffer(pem_text.as_bytes()).enumerate() {
        let pem = item.map_err(|e| rule(format!("PEM block {} does not parse: {e}", i + 1)))?;
        if pem.label != "CERTIFICATE" {
            return Err(rule(format!(
                "PEM block {} is a {:?}, expected CERTIFICATE",
                i + 1,
                pem.label
            )));
        }
        let cert = pem
            .parse_x509()
            .map_err(|e| rule(format!("certificate {} does not parse: {e}", i + 1)))?;
        subjects.push(cert.subject().to_string());
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&pem.contents);
        pem_out.push_str("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem_out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            pem_out.push('\n');
        }
        pem_out.push_str("-----END CERTIFICATE-----\n");
    }
    if subjects.is_empty() {
        return Err(rule(
            "no PEM certificate found (expected -----BEGIN CERTIFICATE----- blocks)".into(),
        ));
    }
    Ok(CaBundle {
        pem: pem_out,
        subjects,
    })
}

/// `value` with the userinfo of every URL-like part (`user:pass@`) shown as `***@`.
pub fn redact_userinfo(value: &str) -> String {
    value
        .split(',')
        .map(|entry| {
            entry
                .split("::")
                .map(|part| {
                    let (scheme, rest) = match part.find("://") {
                        Some(i) => part.split_at(i + 3),
                        None => ("", part),
                    };
                    let authority = rest.split('/').next().unwrap_or("");
                    match authority.rfind('@') {
                        Some(at) => format!("{scheme}***{}", &rest[at..]),
                        None => part.to_string(),
                    }
                })
                .collect::<Vec<_>>()
                .join("::")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Credentials belong in USERNAME / PASSWORD: a URL that carries them is refused before any
/// other rule can quote it.
fn refuse_userinfo(data: &SecretData) -> Result<(), SpecError> {
    for key in ["DOMAIN", "MIRROR_REGISTRIES"] {
        let Some(v) = data.get(key).and_then(|b| std::str::from_utf8(b).ok()) else {
            continue;
        };
        let shown = redact_userinfo(v);
        if shown != v {
            return Err(SpecError::Invalid {
                key,
                value: shown,
                why: "a URL here carries credentials (user:password@); put them in USERNAME and PASSWORD".into(),
            });
        }
    }
    Ok(())
}

/// Credentials sent to DOMAIN over plain http (an `http://` target, or INSECURE's http
/// fallback) can be read on the wire: say so loudly.
fn plain_http_warning(mirrors: &[Mirror], domain: &HostPort, insecure: bool) -> Option<String> {
    let plain = mirrors.iter().filter_map(|m| m.target.as_ref()).any(|t| {
        t.host == *domain
            && t.endpoints(insecure)
                .iter()
                .any(|e| e.scheme == endpoint::Scheme::Http)
    });
    plain.then(|| {
        format!(
            "the USERNAME/PASSWORD for {domain} are also sent over plain http (an http:// target or INSECURE=true): anyone on the path can read them; use https"
        )
    })
}

/// Turn a Secret's data into a [`RegistrySpec`], or say which key broke which rule.
pub fn parse_spec(data: &SecretData) -> Result<RegistrySpec, SpecError> {
    refuse_userinfo(data)?;
    let mut warnings = unknown_keys(data);
    let domain = parse_domain(data)?;
    let base_path = parse_base_path(data)?;
    let insecure = parse_insecure(data)?;
    let credentials = parse_credentials(data)?;
    let ca = match text(data, "CA_CERT", MAX_LIST_BYTES)? {
        Some(t) if !t.trim().is_empty() => Some(parse_ca(t)?),
        _ => None,
    };
    let list = required(data, "MIRROR_REGISTRIES", MAX_LIST_BYTES)?;
    let mirrors = swap::parse_mirror_registries(list)?;
    if let Some(bp) = &base_path {
        warnings.extend(outside_base_path(&mirrors, &domain, bp));
    }
    if credentials.is_some() {
        warnings.extend(plain_http_warning(&mirrors, &domain, insecure));
    }
    if ca.is_some() && insecure {
        warnings.push(
            "INSECURE=true turns TLS verification off; CA_CERT is written but not needed".into(),
        );
    }
    Ok(RegistrySpec {
        domain,
        base_path,
        credentials,
        insecure,
        ca,
        mirrors,
        warnings,
    })
}

fn unknown_keys(data: &SecretData) -> Vec<String> {
    data.keys()
        .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
        .map(|k| {
            format!(
                "Secret key {k:?} is unknown and ignored (known: {})",
                KNOWN_KEYS.join(", ")
            )
        })
        .collect()
}

/// DOMAIN: host[:port], a scheme is tolerated and dropped.
fn parse_domain(data: &SecretData) -> Result<HostPort, SpecError> {
    let raw = required(data, "DOMAIN", MAX_SCALAR_BYTES)?.trim();
    if raw.is_empty() {
        return Err(SpecError::Empty { key: "DOMAIN" });
    }
    check_scalar("DOMAIN", raw)?;
    let invalid = |why: String| SpecError::Invalid {
        key: "DOMAIN",
        value: raw.into(),
        why,
    };
    let target = endpoint::parse_target(raw).map_err(|e| invalid(e.0))?;
    if target.prefix.is_some() {
        return Err(invalid(
            "must be host[:port] without a path (the path goes into BASE_PATH)".into(),
        ));
    }
    Ok(target.host)
}

/// BASE_PATH: required key; may be empty (registry root).
fn parse_base_path(data: &SecretData) -> Result<Option<String>, SpecError> {
    let raw = required(data, "BASE_PATH", MAX_SCALAR_BYTES)?.trim();
    check_scalar("BASE_PATH", raw)?;
    if raw.is_empty() {
        return Ok(None);
    }
    endpoint::parse_repository_prefix(raw.trim_matches('/'))
        .map(Some)
        .map_err(|e| SpecError::Invalid {
            key: "BASE_PATH",
            value: raw.into(),
            why: e.0,
        })
}

/// INSECURE: true/false, any case.
fn parse_insecure(data: &SecretData) -> Result<bool, SpecError> {
    let raw = required(data, "INSECURE", MAX_SCALAR_BYTES)?.trim();
    match raw.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(SpecError::Invalid {
            key: "INSECURE",
            value: raw.escape_debug().to_string(),
            why: "must be true or false".into(),
        }),
    }
}

/// USERNAME / PASSWORD: both or neither; the password is never part of an error.
fn parse_credentials(data: &SecretData) -> Result<Option<Credentials>, SpecError> {
    let username = text(data, "USERNAME", MAX_SCALAR_BYTES)?
        .unwrap_or("")
        .trim();
    let password = text(data, "PASSWORD", MAX_SCALAR_BYTES)?.unwrap_or("");
    check_scalar("USERNAME", username)?;
    if username.contains(':') {
        return Err(SpecError::Invalid {
            key: "USERNAME",
            value: username.into(),
            why: "must not contain ':' (Basic authentication separates user and password with it)"
                .into(),
        });
    }
    if password.chars().any(|c| c.is_control()) {
        return Err(SpecError::Rule {
            key: "PASSWORD",
            why: "holds a control character (value not shown)".into(),
        });
    }
    let rule = |key, why: &str| {
        Err(SpecError::Rule {
            key,
            why: why.into(),
        })
    };
    match (username.is_empty(), password.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Ok(Some(Credentials {
            username: username.to_string(),
            password: Password::new(password),
        })),
        (false, true) => rule(
            "PASSWORD",
            "is empty while USERNAME is set: give both or neither",
        ),
        (true, false) => rule(
            "USERNAME",
            "is empty while PASSWORD is set: give both or neither",
        ),
    }
}

/// Warnings for mirrors on DOMAIN outside BASE_PATH.
fn outside_base_path(mirrors: &[Mirror], domain: &HostPort, bp: &str) -> Vec<String> {
    let inside = |p: &str| p == bp || p.starts_with(&format!("{bp}/"));
    mirrors
        .iter()
        .filter_map(|m| {
            let t = m.target.as_ref()?;
            (t.host == *domain && !t.prefix.as_deref().is_some_and(inside)).then(|| {
                format!(
                    "mirror for {} points at DOMAIN {domain} outside BASE_PATH {bp:?} (target {t})",
                    m.source
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> SecretData {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn password_is_never_printed() {
        let d = data(&[
            ("DOMAIN", "h.example"),
            ("BASE_PATH", "p"),
            ("INSECURE", "FALSE"),
            ("USERNAME", "u"),
            ("PASSWORD", "hunter2-secret"),
            ("MIRROR_REGISTRIES", "docker.io::h.example/p/docker.io"),
        ]);
        let s = parse_spec(&d).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&s).unwrap().contains("hunter2"));
        assert!(!s.insecure);
    }
}
