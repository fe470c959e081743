//! Which URLs containerd will try for an image, read from the files on disk: the hosts.toml of
//! the image's registry (when `config_path` is set) or the legacy `mirrors` table, then the
//! upstream. Follows the rules in CONTAINERD.md (scheme guessing, `/v2` handling).

use std::path::Path;

use toml_edit::DocumentMut;

use crate::render::{decide, version};

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    /// Tag or digest.
    pub reference: String,
}

/// Parse `[registry/]repo[:tag|@digest]` the way containerd's CRI normalizes it.
pub fn parse_image(image: &str) -> Result<ImageRef, String> {
    if image.is_empty() || image.contains(char::is_whitespace) {
        return Err(format!("image {image:?} is not a reference"));
    }
    let (name, reference) = if let Some((n, d)) = image.split_once('@') {
        (n, d.to_string())
    } else {
        match image.rfind(':') {
            Some(i) if !image[i..].contains('/') => (&image[..i], image[i + 1..].to_string()),
            _ => (image, "latest".to_string()),
        }
    };
    let (registry, repo) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let repository = if registry == "docker.io" && !repo.contains('/') {
        format!("library/{repo}")
    } else {
        repo
    };
    Ok(ImageRef {
        registry,
        repository,
        reference,
    })
}

/// One URL containerd will try, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub url: String,
    pub origin: String,
}

fn upstream_host(registry: &str) -> String {
    if registry == "docker.io" {
        "registry-1.docker.io".into()
    } else {
        registry.into()
    }
}

fn is_loopback_host(hostport: &str) -> bool {
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            hostport
        }
    });
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

fn manifests(base: &str, img: &ImageRef) -> String {
    format!(
        "{}/{}/manifests/{}",
        base.trim_end_matches('/'),
        img.repository,
        img.reference
    )
}

/// The ordered attempts for `image`, given config.toml's text, the running containerd's version
/// (`None`: unknown; it decides which table a version 1 file is read from) and a reader for
/// hosts.toml files.
pub fn resolve(
    image: &str,
    config: &str,
    containerd: Option<crate::runtime::ContainerdVersion>,
    default_hosts_dir: &Path,
    read_hosts: &dyn Fn(&Path) -> Option<String>,
) -> Result<Vec<Attempt>, String> {
    let img = parse_image(image)?;
    let doc: DocumentMut = config
        .parse()
        .map_err(|e| format!("config.toml does not parse: {e}"))?;
    let ver = version::detect(&doc).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut mirrors = decide::registry_table(containerd, ver);
    mirrors.push("mirrors".into());
    let has_legacy = version::lookup(&doc, &mirrors)
        .and_then(|i| i.as_table_like())
        .is_some_and(|t| !t.is_empty());
    // containerd ≥ 2.2 (version ≥ 3 configs) defaults config_path when neither is set.
    let dirs = decide::config_path(&doc, containerd, ver).or_else(|| {
        (matches!(ver, version::ConfigVersion::V3Plus(_)) && !has_legacy)
            .then(|| vec![default_hosts_dir.to_string_lossy().into_owned()])
    });
    if let Some(dirs) = dirs {
        for dir in &dirs {
            let candidates = [img.registry.clone(), "_default".to_string()];
            for c in candidates {
                let path = Path::new(dir).join(&c).join("hosts.toml");
                let Some(text) = read_hosts(&path) else {
                    continue;
                };
                let hdoc: DocumentMut = text.parse().map_err(|e| {
                    format!(
                        "{} does not parse (containerd would ignore it and use the upstream): {e}",
                        path.display()
                    )
                })?;
                if let Some(hosts) = hdoc.get("host").and_then(|h| h.as_table_like()) {
                    for (url, t) in hosts.iter() {
                        let override_path = t
                            .get("override_path")
                            .and_then(|v| v.as_bool())
                            .unwrap_or(false);
                        let full = if url.contains("://") {
                            url.to_string()
                        } else {
                            format!("https://{url}")
                        };
                        let base = if override_path || full.trim_end_matches('/').ends_with("/v2") {
                            full
                        } else {
                            format!("{}/v2", full.trim_end_matches('/'))
                        };
                        out.push(Attempt {
                            url: manifests(&base, &img),
                            origin: format!("mirror, {}", path.display()),
                        });
                    }
                }
                let server = hdoc
                    .get("server")
                    .and_then(|s| s.as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("https://{}", upstream_host(&img.registry)));
                out.push(Attempt {
                    url: manifests(&format!("{}/v2", server.trim_end_matches('/')), &img),
                    origin: format!("server, {}", path.display()),
                });
                return Ok(out);
            }
        }
        out.push(Attempt {
            url: manifests(
                &format!("https://{}/v2", upstream_host(&img.registry)),
                &img,
            ),
            origin: "upstream (no hosts.toml)".into(),
        });
        return Ok(out);
    }
    let table = version::lookup(&doc, &mirrors).and_then(|i| i.as_table_like());
    let entry = table.and_then(|t| {
        t.get(&img.registry)
            .map(|e| (img.registry.clone(), e))
            .or_else(|| t.get("*").map(|e| ("*".to_string(), e)))
    });
    if let Some((key, e)) = entry
        && let Some(eps) = e
            .as_table_like()
            .and_then(|t| t.get("endpoint"))
            .and_then(|v| v.as_array())
    {
        for ep in eps.iter().filter_map(|v| v.as_str()) {
            let full = if ep.contains("://") {
                ep.to_string()
            } else if is_loopback_host(ep.split('/').next().unwrap_or(ep)) {
                format!("http://{ep}")
            } else {
                format!("https://{ep}")
            };
            let (scheme_host, path) = match full.splitn(4, '/').collect::<Vec<_>>().as_slice() {
                [s, "", h, p] => (format!("{s}//{h}"), format!("/{p}")),
                [s, "", h] => (format!("{s}//{h}"), String::new()),
                _ => (full.clone(), String::new()),
            };
            let base = if path.trim_matches('/').is_empty() {
                format!("{scheme_host}/v2")
            } else {
                format!("{scheme_host}{}", path.trim_end_matches('/'))
            };
            out.push(Attempt {
                url: manifests(&base, &img),
                origin: format!("mirror, config.toml mirrors.{key:?}"),
            });
        }
    }
    out.push(Attempt {
        url: manifests(
            &format!("https://{}/v2", upstream_host(&img.registry)),
            &img,
        ),
        origin: "upstream (always tried last)".into(),
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs() {
        assert_eq!(parse_image("nginx").unwrap().repository, "library/nginx");
        let r = parse_image("harbor.x:5000/a/b@sha256:ab").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.reference.as_str()),
            ("harbor.x:5000", "sha256:ab")
        );
    }

    #[test]
    fn seed_form_has_no_v2() {
        let c = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\nendpoint = [\"harbor.example.org/airgap-images/docker.io\"]\n";
        let a = resolve("nginx:1.25", c, None, Path::new("/x"), &|_| None).unwrap();
        assert_eq!(
            a[0].url,
            "https://harbor.example.org/airgap-images/docker.io/library/nginx/manifests/1.25"
        );
        assert_eq!(
            a[1].url,
            "https://registry-1.docker.io/v2/library/nginx/manifests/1.25"
        );
    }
}
