//! What `check` probes, pure but for the [`HostsFs`] it reads: the hosts containerd would use,
//! found through the [`crate::resolve`] model, either from the files on disk or from the spec
//! rendered **in memory** (hosts mode, as `apply` writes it, on an empty `version = 3`
//! config.toml: legacy mode writes the same endpoint URLs, in the same order, with the same
//! upstream fallback). Each host becomes a [`Target`] with the CA / skip-verify and the
//! credentials containerd would use there: a hosts.toml `Authorization` header (sent with every
//! request, as containerd does), or `registry.configs."<host>".auth` of config.toml (sent when
//! the registry asks). Credentials never print: [`Target`]'s `Debug` hides them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, TableLike};

use super::net::TlsSettings;
use crate::render::{self, ConfigOwnership, HostsOptions, Mode};
use crate::resolve::{self, HostSource, HostsFs, RegistryHost, Resolution, ResolveError};
use crate::runtime::ContainerdVersion;
use crate::spec::endpoint::default_host;
use crate::spec::{Credentials, Password, RegistrySpec};

/// A registry name no entry names: what a wildcard (`_default`, `mirrors."*"`) is probed as.
pub const WILDCARD_PROBE: &str = "regmirror-check.invalid";
/// The in-memory hosts directory a spec is rendered into.
pub const MEM_ROOT: &str = "/regmirror-check/certs.d";

/// Files held in memory, as a [`HostsFs`].
#[derive(Debug, Default, Clone)]
pub struct MemFs(pub BTreeMap<PathBuf, String>);

impl HostsFs for MemFs {
    fn is_dir(&self, path: &Path) -> bool {
        self.0.keys().any(|k| k.starts_with(path) && k != path)
    }
    fn read(&self, path: &Path) -> Option<String> {
        self.0.get(path).cloned()
    }
    fn list(&self, dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = self
            .0
            .keys()
            .filter_map(|k| k.strip_prefix(dir).ok())
            .filter_map(|rest| rest.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        names.dedup();
        names
    }
}

/// Header values (credentials): sent, never shown.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, _)| (k, "***")))
            .finish()
    }
}

/// One host to probe, with the settings containerd would use for it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The registries (sources) whose pulls use this host (`*` for the wildcard).
    pub registries: Vec<String>,
    pub scheme: String,
    /// `host[:port]`.
    pub host: String,
    /// The API path of the host (`/v2`, `/v2/<prefix>`, or a legacy path as written).
    pub path: String,
    pub tls: TlsSettings,
    /// The CA files named for this host.
    pub ca_files: Vec<String>,
    /// A CA file that cannot be read or holds no certificate.
    pub ca_error: Option<String>,
    /// Sent with every request (hosts.toml `[host.….header]`).
    pub headers: Headers,
    /// Answer a Basic challenge, or fetch a Bearer token, with these.
    pub credentials: Option<Credentials>,
    /// https first, then plain http on the same port.
    pub http_fallback: bool,
    pub warnings: Vec<String>,
}

impl Target {
    /// `scheme://host` + path: the endpoint as containerd has it.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.path)
    }
    /// Where the API root is asked: `scheme://host/v2/` (a registry answers there whatever
    /// repository prefix the endpoint carries).
    pub fn ping_url(&self) -> String {
        format!("{}://{}/v2/", self.scheme, self.host)
    }
    fn key(&self) -> (String, bool, Vec<String>, bool) {
        (
            self.url(),
            self.tls.skip_verify,
            self.ca_files.clone(),
            self.credentials.is_some(),
        )
    }
}

/// TLS and credentials of `registry.configs."<host>"` in config.toml.
#[derive(Debug, Clone, Default)]
struct HostConfig {
    credentials: Option<Credentials>,
    ca_file: Option<String>,
    skip_verify: bool,
}

/// `user:pass` of a Basic token (base64), if it is one.
pub fn decode_basic(token: &str) -> Option<Credentials> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some(Credentials {
        username: u.to_string(),
        password: Password::new(p),
    })
}

fn str_of<'a>(t: &'a dyn TableLike, k: &str) -> Option<&'a str> {
    t.get(k).and_then(Item::as_str).filter(|s| !s.is_empty())
}

/// `registry.configs` of config.toml, as the running containerd reads it.
fn host_configs(
    doc: &DocumentMut,
    containerd: Option<ContainerdVersion>,
) -> BTreeMap<String, HostConfig> {
    let Ok(ver) = render::version::detect(doc) else {
        return BTreeMap::new();
    };
    let mut path = render::decide::registry_table(containerd, ver);
    path.push("configs".into());
    let Some(configs) = render::version::lookup(doc, &path).and_then(Item::as_table_like) else {
        return BTreeMap::new();
    };
    configs
        .iter()
        .filter_map(|(host, item)| {
            let t = item.as_table_like()?;
            let auth = t.get("auth").and_then(Item::as_table_like);
            let credentials =
                auth.and_then(|a| match (str_of(a, "username"), str_of(a, "password")) {
                    (Some(u), Some(p)) => Some(Credentials {
                        username: u.to_string(),
                        password: Password::new(p),
                    }),
                    _ => str_of(a, "auth").and_then(decode_basic),
                });
            let tls = t.get("tls").and_then(Item::as_table_like);
            Some((
                host.to_string(),
                HostConfig {
                    credentials,
                    ca_file: tls.and_then(|t| str_of(t, "ca_file")).map(str::to_string),
                    skip_verify: tls
                        .and_then(|t| t.get("insecure_skip_verify"))
                        .and_then(Item::as_bool)
                        .unwrap_or(false),
                },
            ))
        })
        .collect()
}

/// The files containerd reads (config.toml + hosts directories), on disk or in memory.
pub struct Layout {
    config: String,
    containerd: Option<ContainerdVersion>,
    hosts_dir: PathBuf,
    fs: Box<dyn HostsFs + Send + Sync>,
    configs: BTreeMap<String, HostConfig>,
    /// Legacy `registry.mirrors` keys.
    mirror_keys: Vec<String>,
}

/// Why a layout or plan cannot be made (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("render: {0}")]
    Render(String),
    #[error("{0}")]
    Resolve(#[from] ResolveError),
}

impl Layout {
    /// The spec rendered in memory (hosts mode, with the node's hosts.toml `options`).
    pub fn from_spec(spec: &RegistrySpec, options: HostsOptions) -> Result<Layout, PlanError> {
        let prior = ConfigOwnership::default();
        let root = PathBuf::from(MEM_ROOT);
        let input = render::RenderInput {
            config: "version = 3\n",
            prior: &prior,
            spec: Some(spec),
            mode: Mode::Hosts,
            certs_dir: &root,
            containerd: None,
            hosts: options,
        };
        let r = render::render(&input).map_err(|e| PlanError::Render(e.to_string()))?;
        let files = r
            .files
            .into_iter()
            .map(|f| (f.path, String::from_utf8_lossy(&f.contents).into_owned()))
            .collect();
        Layout::new(r.config, None, root, Box::new(MemFs(files)))
    }

    /// The files on disk: config.toml's text, the hosts directory containerd ≥ 2.2 defaults to.
    pub fn from_disk(
        config: String,
        containerd: Option<ContainerdVersion>,
        certs_dir: &Path,
    ) -> Result<Layout, PlanError> {
        Layout::new(
            config,
            containerd,
            certs_dir.to_path_buf(),
            Box::new(resolve::DiskFs),
        )
    }

    /// Any config.toml text and hosts files (tests, the agent).
    pub fn new(
        config: String,
        containerd: Option<ContainerdVersion>,
        hosts_dir: PathBuf,
        fs: Box<dyn HostsFs + Send + Sync>,
    ) -> Result<Layout, PlanError> {
        let doc: DocumentMut = config.parse().map_err(|e: toml_edit::TomlError| {
            ResolveError::Config(render::toml_error(&config, &e))
        })?;
        let mirror_keys = render::version::detect(&doc)
            .ok()
            .and_then(|ver| {
                let mut p = render::decide::registry_table(containerd, ver);
                p.push("mirrors".into());
                render::version::lookup(&doc, &p)
                    .and_then(Item::as_table_like)
                    .map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
            })
            .unwrap_or_default();
        Ok(Layout {
            configs: host_configs(&doc, containerd),
            config,
            containerd,
            hosts_dir,
            fs,
            mirror_keys,
        })
    }

    /// containerd's answer for `image` (the `resolve` model).
    pub fn resolve(&self, image: &str) -> Result<Resolution, ResolveError> {
        resolve::resolve(
            image,
            &self.config,
            self.containerd,
            &self.hosts_dir,
            &*self.fs,
        )
    }

    /// The registries that have an entry: hosts directories (`_default` as the wildcard), or
    /// legacy mirror keys. Shown as written (`*` for the wildcard).
    pub fn registries(&self) -> Result<Vec<String>, PlanError> {
        let probe = self.resolve(&format!("{WILDCARD_PROBE}/regmirror/check:latest"))?;
        let mut out: Vec<String> = match probe.source {
            HostSource::Legacy => self.mirror_keys.clone(),
            HostSource::HostsDir { roots, .. } => roots
                .iter()
                .flat_map(|root| {
                    let mut names = self.fs.list(root);
                    names.retain(|n| self.fs.is_dir(&root.join(n)));
                    names
                })
                .map(|n| dir_registry(&n))
                .collect(),
        };
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The image a registry entry is probed with.
    fn probe_image(registry: &str) -> String {
        let r = if registry == "*" {
            WILDCARD_PROBE
        } else {
            registry
        };
        format!("{r}/regmirror/check:latest")
    }

    /// Every mirror host of every entry (upstreams left out), each once, with the registries
    /// that use it.
    pub fn targets(&self) -> Result<Vec<Target>, PlanError> {
        let mut out: Vec<Target> = Vec::new();
        for reg in self.registries()? {
            let r = self.resolve(&Self::probe_image(&reg))?;
            for a in r.attempts {
                if is_upstream(&a.host, &r.image.registry) {
                    continue;
                }
                let mut t = self.target(&a.host);
                t.registries = vec![reg.clone()];
                match out.iter_mut().find(|o| o.key() == t.key()) {
                    Some(o) => {
                        if !o.registries.contains(&reg) {
                            o.registries.push(reg.clone());
                        }
                    }
                    None => out.push(t),
                }
            }
        }
        Ok(out)
    }

    /// The steps of a pull of `image`, in containerd's order.
    pub fn image_plan(&self, image: &str) -> Result<ImagePlan, PlanError> {
        let r = self.resolve(image)?;
        let registry = r.image.registry.clone();
        let steps = r
            .attempts
            .iter()
            .map(|a| Step {
                url: a.url.clone(),
                eligible: a.eligible,
                upstream: is_upstream(&a.host, &registry),
                target: self.target(&a.host),
            })
            .collect();
        Ok(ImagePlan {
            image: format!(
                "{}/{}{}{}",
                r.image.registry,
                r.image.repository,
                if r.image.is_digest() { "@" } else { ":" },
                r.image.reference
            ),
            steps,
            resolution: r,
        })
    }

    /// The settings containerd uses for `h`.
    fn target(&self, h: &RegistryHost) -> Target {
        let cfg = self.configs.get(&h.host).cloned().unwrap_or_default();
        let (headers, from_header) = host_headers(h);
        let https = h.scheme == "https" || h.http_fallback;
        let (ca_files, skip_verify) = ca_settings(h, &cfg, https);
        let (ca_pem, ca_error) = self.read_ca_files(&ca_files);
        let credentials = from_header.or(cfg.credentials);
        let warnings = target_warnings(h, credentials.is_some());
        Target {
            registries: Vec::new(),
            scheme: h.scheme.clone(),
            host: h.host.clone(),
            path: h.path.clone(),
            tls: TlsSettings {
                skip_verify,
                ca_pem: if https { ca_pem } else { Vec::new() },
            },
            ca_files: if https { ca_files } else { Vec::new() },
            ca_error: ca_error.filter(|_| https),
            headers: Headers(headers),
            credentials,
            http_fallback: h.http_fallback,
            warnings,
        }
    }

    /// The contents of the CA files that can be read, and an error naming the last one that
    /// cannot.
    fn read_ca_files(&self, ca_files: &[String]) -> (Vec<String>, Option<String>) {
        let mut ca_pem = Vec::new();
        let mut ca_error = None;
        for f in ca_files {
            match self.fs.read(Path::new(f)) {
                Some(t) => ca_pem.push(t),
                None => ca_error = Some(format!("CA file {f} cannot be read")),
            }
        }
        (ca_pem, ca_error)
    }
}

/// The hosts.toml headers of `h`, flattened, and the credentials of a Basic `Authorization`
/// header among them (the last one wins).
fn host_headers(h: &RegistryHost) -> (Vec<(String, String)>, Option<Credentials>) {
    let mut headers = Vec::new();
    let mut from_header = None;
    for (k, vals) in &h.header {
        for v in vals {
            if k.eq_ignore_ascii_case("authorization")
                && let Some(b) = v
                    .strip_prefix("Basic ")
                    .or_else(|| v.strip_prefix("basic "))
            {
                from_header = decode_basic(b);
            }
            headers.push((k.clone(), v.clone()));
        }
    }
    (headers, from_header)
}

/// The CA files and skip-verify of `h`: its own, plus config.toml's `cfg` for a legacy
/// mirror or upstream. Skip-verify only counts over TLS (`https`).
fn ca_settings(h: &RegistryHost, cfg: &HostConfig, https: bool) -> (Vec<String>, bool) {
    let legacy = matches!(
        h.origin,
        resolve::Origin::LegacyMirror { .. } | resolve::Origin::LegacyUpstream
    );
    let mut ca_files = h.ca.clone();
    let mut skip_verify = h.skip_verify && https;
    if legacy {
        ca_files.extend(cfg.ca_file.clone());
        skip_verify |= cfg.skip_verify && https;
    }
    (ca_files, skip_verify)
}

/// What is wrong with `h` as configured: a path without `/v2`, credentials sent in clear.
fn target_warnings(h: &RegistryHost, has_credentials: bool) -> Vec<String> {
    let mut warnings = Vec::new();
    if !h.path.starts_with("/v2") {
        warnings.push(format!(
            "the path {:?} has no /v2: containerd asks {}{}/<repository>/manifests/…, which a registry answers 404, and falls back",
            h.path, h.host, h.path
        ));
    }
    if has_credentials && h.scheme == "http" {
        warnings.push("credentials go to this host in clear (plain http)".into());
    }
    warnings
}

/// The registry a hosts directory name stands for: `_default` → `*`, `host_port_` →
/// `host:port`, else the name.
pub fn dir_registry(name: &str) -> String {
    if name == "_default" {
        return "*".into();
    }
    if let Some(stem) = name.strip_suffix('_')
        && let Some((host, port)) = stem.rsplit_once('_')
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
    {
        return format!("{host}:{port}");
    }
    name.to_string()
}

/// The host is the registry's own (containerd's default host for it): not a mirror.
pub fn is_upstream(h: &RegistryHost, registry: &str) -> bool {
    h.host == registry || h.host == default_host(registry)
}

/// One host of a pull, in order.
#[derive(Debug, Clone)]
pub struct Step {
    /// The manifest URL containerd asks there.
    pub url: String,
    /// The host's capabilities make it take part in this pull.
    pub eligible: bool,
    /// The registry itself (the fallback), not a mirror.
    pub upstream: bool,
    pub target: Target,
}

/// A pull of one image.
#[derive(Debug, Clone)]
pub struct ImagePlan {
    /// Normalised: `docker.io/library/nginx:1.25`.
    pub image: String,
    pub steps: Vec<Step>,
    pub resolution: Resolution,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_spec;

    fn spec(pairs: &[(&str, &str)]) -> RegistrySpec {
        let mut all: BTreeMap<&str, &str> = [("BASE_PATH", ""), ("INSECURE", "false")].into();
        all.extend(pairs.iter().copied());
        let data = all
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        parse_spec(&data).unwrap()
    }

    #[test]
    fn spec_targets_get_credentials_on_domain_only() {
        let s = spec(&[
            ("DOMAIN", "harbor.example.org"),
            ("USERNAME", "u"),
            ("PASSWORD", "s3cret"),
            (
                "MIRROR_REGISTRIES",
                "docker.io::harbor.example.org/airgap-images/docker.io,quay.io::other.example.net/q,gcr.io::",
            ),
        ]);
        let l = Layout::from_spec(&s, HostsOptions::default()).unwrap();
        assert_eq!(l.registries().unwrap(), ["docker.io", "gcr.io", "quay.io"]);
        let t = l.targets().unwrap();
        let urls: Vec<String> = t.iter().map(Target::url).collect();
        assert_eq!(
            urls,
            [
                "https://harbor.example.org/v2/airgap-images/docker.io",
                "https://other.example.net/v2/q"
            ]
        );
        assert_eq!(t[0].ping_url(), "https://harbor.example.org/v2/");
        let c = t[0].credentials.as_ref().unwrap();
        assert_eq!((c.username.as_str(), c.password.expose()), ("u", "s3cret"));
        assert!(t[1].credentials.is_none() && t[1].headers.0.is_empty());
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("s3cret") && !dbg.contains(&s.credentials.unwrap().basic_token()));
    }

    #[test]
    fn spec_image_plan_names_containerd_urls_and_fallback() {
        let s = spec(&[
            ("DOMAIN", "127.0.0.1:5000"),
            ("INSECURE", "true"),
            (
                "MIRROR_REGISTRIES",
                "docker.io::127.0.0.1:5000/airgap-images/docker.io",
            ),
        ]);
        let l = Layout::from_spec(&s, HostsOptions::default()).unwrap();
        let p = l.image_plan("tiny:1").unwrap();
        assert_eq!(p.image, "docker.io/library/tiny:1");
        let got: Vec<(&str, bool, bool)> = p
            .steps
            .iter()
            .map(|s| (s.url.as_str(), s.target.tls.skip_verify, s.upstream))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "https://127.0.0.1:5000/v2/airgap-images/docker.io/library/tiny/manifests/1",
                    true,
                    false
                ),
                (
                    "http://127.0.0.1:5000/v2/airgap-images/docker.io/library/tiny/manifests/1",
                    false,
                    false
                ),
                (
                    "https://registry-1.docker.io/v2/library/tiny/manifests/1",
                    false,
                    true
                ),
            ]
        );
        // An image of a registry without an entry goes to its upstream only.
        let q = l.image_plan("quay.io/a/b:1").unwrap();
        assert!(q.steps.iter().all(|s| s.upstream));
    }

    #[test]
    fn strict_airgap_has_no_upstream_step() {
        let s = spec(&[
            ("DOMAIN", "m.example"),
            ("MIRROR_REGISTRIES", "docker.io::m.example/p"),
        ]);
        let strict = HostsOptions {
            strict: true,
            ..HostsOptions::default()
        };
        let l = Layout::from_spec(&s, strict).unwrap();
        let p = l.image_plan("nginx").unwrap();
        assert!(
            !p.steps.is_empty() && p.steps.iter().all(|s| !s.upstream),
            "{p:?}"
        );
    }

    #[test]
    fn legacy_disk_layout_reads_configs() {
        let cfg = r#"version = 2
[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
endpoint = ["https://m.example:5000/v2/p", "m2.example/p"]
[plugins."io.containerd.grpc.v1.cri".registry.configs."m.example:5000".auth]
username = "u"
password = "pw"
[plugins."io.containerd.grpc.v1.cri".registry.configs."m.example:5000".tls]
insecure_skip_verify = true
"#;
        let l = Layout::new(
            cfg.into(),
            Some(ContainerdVersion::new(1, 7, 24)),
            "/x".into(),
            Box::new(MemFs::default()),
        )
        .unwrap();
        let t = l.targets().unwrap();
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(t[0].tls.skip_verify);
        assert_eq!(t[0].credentials.as_ref().unwrap().password.expose(), "pw");
        assert!(t[1].credentials.is_none());
        assert!(t[1].warnings[0].contains("no /v2"), "{:?}", t[1].warnings);
    }

    #[test]
    fn dir_names() {
        assert_eq!(dir_registry("_default"), "*");
        assert_eq!(dir_registry("h_5000_"), "h:5000");
        assert_eq!(dir_registry("docker.io"), "docker.io");
        assert_eq!(dir_registry("a_b_"), "a_b_");
        let b = decode_basic("dTpwOnc=").unwrap();
        assert_eq!((b.username.as_str(), b.password.expose()), ("u", "p:w"));
    }
}
