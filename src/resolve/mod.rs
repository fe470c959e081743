//! What containerd will do for an image pull, read from the files on disk: one model of
//! containerd's host resolution ([`hostsdir`] for `config_path`, [`legacy`] for the CRI
//! plugin's `registry.mirrors`), versioned by the containerd release ([`rules`]), then the
//! capability filter of the pull (a tag needs `pull` + `resolve`, a digest `pull`). Pure but for
//! the [`HostsFs`] the caller passes.

pub mod host;
pub mod hostsdir;
pub mod image;
pub mod legacy;
pub mod rules;
pub mod text;
pub mod url;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml_edit::{DocumentMut, Item};

use crate::render::{decide, version};
use crate::runtime::ContainerdVersion;
pub use host::{Capability, Origin, RegistryHost};
pub use hostsdir::HostsFs;
pub use image::{ImageRef, parse_image};
use rules::Behaviour;

/// The schema name of `resolve -o json`; bumped on any incompatible change.
pub const SCHEMA: &str = "regmirror.resolve/v1";

/// Why a resolution could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("{0}")]
    Image(String),
    #[error("config.toml does not parse: {0}")]
    Config(String),
    #[error("config.toml: {0}")]
    Version(String),
}

/// Where the host list comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum HostSource {
    /// `config_path` (or containerd's default for it): these roots, searched in order.
    HostsDir {
        roots: Vec<PathBuf>,
        /// The directory that applied (`None`: none exists for this registry).
        dir: Option<PathBuf>,
        /// `transfer` (2.1+ default: `config_path` taken as one directory) or `local`.
        pull: &'static str,
        /// `config_path` is containerd's built-in default, not written in config.toml.
        default: bool,
    },
    /// `registry.mirrors` of config.toml (empty: none, the registry alone).
    Legacy,
}

/// One host with the URL of this pull and whether the pull uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// The manifest URL asked first at this host.
    pub url: String,
    /// The capabilities make this host eligible for the reference (tag or digest).
    pub eligible: bool,
    /// Another eligible host follows if this one fails.
    pub fallback_follows: bool,
    #[serde(flatten)]
    pub host: RegistryHost,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    pub schema: &'static str,
    pub image: ImageRef,
    /// `tag` (needs pull + resolve) or `digest` (needs pull).
    pub reference_kind: &'static str,
    /// The containerd release the rules were applied for.
    pub containerd: String,
    /// `false`: the running containerd was not known, the newest release was assumed.
    pub containerd_known: bool,
    pub source: HostSource,
    pub attempts: Vec<Attempt>,
}

/// The CRI registry settings read from config.toml.
struct CriConfig {
    config_path: Option<Vec<String>>,
    mirrors: BTreeMap<String, Vec<String>>,
    /// Settings that make a 2.1+ CRI pull use the local path instead of the transfer service.
    local_pull: bool,
}

fn cri_config(
    doc: &DocumentMut,
    containerd: Option<ContainerdVersion>,
) -> Result<CriConfig, ResolveError> {
    let ver = version::detect(doc).map_err(|e| ResolveError::Version(e.to_string()))?;
    let registry = decide::registry_table(containerd, ver);
    let table = |k: &str| {
        let mut p = registry.clone();
        p.push(k.into());
        version::lookup(doc, &p).and_then(Item::as_table_like)
    };
    let mirrors: BTreeMap<String, Vec<String>> = table("mirrors")
        .map(|t| {
            t.iter()
                .map(|(k, v)| {
                    let eps = v
                        .as_table_like()
                        .and_then(|e| e.get("endpoint"))
                        .and_then(Item::as_array);
                    let eps = eps.map(|a| {
                        a.iter()
                            .filter_map(|e| e.as_str().map(str::to_string))
                            .collect()
                    });
                    (k.to_string(), eps.unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default();
    let non_empty = |k: &str| table(k).is_some_and(|t| !t.is_empty());
    let plugin = version::lookup(doc, &registry[..2]).and_then(Item::as_table_like);
    let forced = plugin
        .and_then(|p| p.get("use_local_image_pull"))
        .and_then(Item::as_bool)
        .unwrap_or(false);
    Ok(CriConfig {
        config_path: decide::config_path(doc, containerd, ver),
        local_pull: forced || !mirrors.is_empty() || non_empty("configs") || non_empty("auths"),
        mirrors,
    })
}

/// containerd ≥ 2.2's `config_path` when config.toml sets neither it nor `mirrors`.
fn default_roots(default_hosts_dir: &Path) -> Vec<PathBuf> {
    vec![
        default_hosts_dir.to_path_buf(),
        PathBuf::from("/etc/docker/certs.d"),
    ]
}

/// The `config_path` roots (or containerd's default), as the pull path searches them, and the
/// host list from there.
fn hosts_dir_source(
    registry: &str,
    dirs: Option<&[String]>,
    cri: &CriConfig,
    defaulted: bool,
    default_hosts_dir: &Path,
    b: Behaviour,
    fs: &dyn HostsFs,
) -> (HostSource, Vec<RegistryHost>) {
    let roots: Vec<PathBuf> = match dirs {
        Some(d) => d.iter().map(PathBuf::from).collect(),
        None => default_roots(default_hosts_dir),
    };
    let transfer = b.transfer_service() && !cri.local_pull;
    // The transfer service takes `config_path` as one directory (a list is not split).
    let searched = if transfer && roots.len() > 1 {
        let joined: Vec<String> = roots
            .iter()
            .map(|r| r.to_string_lossy().into_owned())
            .collect();
        vec![PathBuf::from(joined.join(":"))]
    } else {
        roots.clone()
    };
    let dir = hostsdir::host_dir(registry, &searched, b, fs);
    let hosts = hostsdir::configure_hosts(registry, &searched, b, fs);
    let pull = if transfer { "transfer" } else { "local" };
    let source = HostSource::HostsDir {
        roots,
        dir,
        pull,
        default: defaulted,
    };
    (source, hosts)
}

/// The hosts containerd tries for `image` and which of them this pull uses.
pub fn resolve(
    image: &str,
    config: &str,
    containerd: Option<ContainerdVersion>,
    default_hosts_dir: &Path,
    fs: &dyn HostsFs,
) -> Result<Resolution, ResolveError> {
    let img = parse_image(image).map_err(ResolveError::Image)?;
    let doc: DocumentMut = config.parse().map_err(|e: toml_edit::TomlError| {
        ResolveError::Config(crate::render::toml_error(config, &e))
    })?;
    let b = Behaviour::of(containerd);
    let cri = cri_config(&doc, containerd)?;
    let defaulted = cri.config_path.is_none()
        && cri.mirrors.is_empty()
        && b.version >= ContainerdVersion::new(2, 2, 0);
    let (source, hosts) = match (&cri.config_path, defaulted) {
        (None, false) => (
            HostSource::Legacy,
            legacy::legacy_hosts(&img.registry, &cri.mirrors, b),
        ),
        (dirs, _) => hosts_dir_source(
            &img.registry,
            dirs.as_deref(),
            &cri,
            defaulted,
            default_hosts_dir,
            b,
            fs,
        ),
    };
    Ok(Resolution {
        schema: SCHEMA,
        reference_kind: if img.is_digest() { "digest" } else { "tag" },
        attempts: attempts(&img, hosts),
        image: img,
        containerd: b.version.to_string(),
        containerd_known: containerd.is_some(),
        source,
    })
}

/// The capability filter of a pull, and each host's manifest URL.
fn attempts(img: &ImageRef, hosts: Vec<RegistryHost>) -> Vec<Attempt> {
    let needs_resolve = !img.is_digest();
    let eligible: Vec<bool> = hosts
        .iter()
        .map(|h| h.has(Capability::Pull) && (!needs_resolve || h.has(Capability::Resolve)))
        .collect();
    hosts
        .into_iter()
        .enumerate()
        .map(|(i, h)| Attempt {
            url: format!(
                "{}://{}{}",
                h.scheme,
                h.host,
                url::clean(&format!(
                    "/{}/{}/manifests/{}",
                    h.path, img.repository, img.reference
                ))
            ),
            eligible: eligible[i],
            fallback_follows: eligible[i + 1..].iter().any(|e| *e),
            host: h,
        })
        .collect()
}

/// [`HostsFs`] on the real file system.
pub struct DiskFs;

impl HostsFs for DiskFs {
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
    fn read(&self, path: &Path) -> Option<String> {
        // Regular files up to the cap only (a FIFO is never opened for a blocking read).
        let (bytes, _) =
            crate::apply::write::read_optional(path, crate::apply::MAX_FILE_BYTES).ok()??;
        String::from_utf8(bytes).ok()
    }
    fn list(&self, dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoFs;
    impl HostsFs for NoFs {
        fn is_dir(&self, _: &Path) -> bool {
            false
        }
        fn read(&self, _: &Path) -> Option<String> {
            None
        }
        fn list(&self, _: &Path) -> Vec<String> {
            Vec::new()
        }
    }

    #[test]
    fn seed_form_has_no_v2() {
        let c = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\nendpoint = [\"harbor.example.org/airgap-images/docker.io\"]\n";
        let v = Some(ContainerdVersion::new(1, 7, 24));
        let r = resolve("nginx:1.25", c, v, Path::new("/x"), &NoFs).unwrap();
        let urls: Vec<&str> = r.attempts.iter().map(|a| a.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://harbor.example.org/airgap-images/docker.io/library/nginx/manifests/1.25",
                "https://registry-1.docker.io/v2/library/nginx/manifests/1.25"
            ]
        );
    }
}
