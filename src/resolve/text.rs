//! `regmirror resolve`'s human output: each host in the order containerd tries it, its URL for
//! this pull, why it is (not) used, where it came from, and what follows if it fails. Header
//! values are never shown (they hold credentials), only their names. Pure.

use super::{Attempt, HostSource, Origin, Resolution};

fn origin(o: &Origin) -> String {
    match o {
        Origin::Host { file } => format!("[host] table of {}", file.display()),
        Origin::Server { file } => format!("server of {}", file.display()),
        Origin::Upstream { file: Some(f) } => {
            format!("the registry itself (no server in {})", f.display())
        }
        Origin::Upstream { file: None } => {
            "the registry itself (no hosts directory applies)".into()
        }
        Origin::LegacyMirror { key } => format!("config.toml registry.mirrors.{key:?}"),
        Origin::LegacyUpstream => {
            "the registry itself, appended after config.toml's mirrors".into()
        }
    }
}

fn source(s: &HostSource) -> String {
    match s {
        HostSource::HostsDir {
            roots,
            dir,
            pull,
            default,
        } => format!(
            "hosts directories {} ({}{} pull){}",
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
            if *default {
                "containerd's default config_path; "
            } else {
                ""
            },
            pull,
            match dir {
                Some(d) => format!("; {} applies", d.display()),
                None => "; none exists for this registry".into(),
            }
        ),
        HostSource::Legacy => "config.toml registry.mirrors (no config_path)".into(),
    }
}

fn attempt(n: usize, a: &Attempt, needs: &str) -> String {
    let h = &a.host;
    let caps: Vec<&str> = h.capabilities.iter().map(|c| c.name()).collect();
    let mut out = format!(
        "{n}. {}{}\n   capabilities {}: {}\n   from {}\n",
        a.url,
        if a.eligible { "" } else { "   (skipped)" },
        caps.join(", "),
        if a.eligible {
            format!("used ({needs})")
        } else if h.has(super::Capability::Pull) {
            format!(
                "not asked for the tag (needs {needs}); serves the manifest by digest and the layers once a host resolved it"
            )
        } else {
            format!("not used: this pull needs {needs}")
        },
        origin(&h.origin)
    );
    let mut tls = Vec::new();
    if h.skip_verify {
        tls.push("TLS verification off".to_string());
    }
    if h.http_fallback {
        tls.push("https first, then plain http".to_string());
    }
    if !h.ca.is_empty() {
        tls.push(format!("CA {}", h.ca.join(", ")));
    }
    if !h.header.is_empty() {
        let names: Vec<&str> = h.header.keys().map(String::as_str).collect();
        tls.push(format!("headers {}", names.join(", ")));
    }
    if !tls.is_empty() {
        out.push_str(&format!("   {}\n", tls.join("; ")));
    }
    if a.eligible {
        out.push_str(if a.fallback_follows {
            "   if it fails: the next host below\n"
        } else {
            "   if it fails: the pull fails (no host follows)\n"
        });
    }
    out
}

/// The text report.
pub fn render(r: &Resolution) -> String {
    let needs = if r.reference_kind == "digest" {
        "pull"
    } else {
        "pull + resolve"
    };
    let mut out = format!(
        "{}/{}{}{} ({} pull) as containerd {}{} resolves it\nfrom {}\n",
        r.image.registry,
        r.image.repository,
        if r.reference_kind == "digest" {
            "@"
        } else {
            ":"
        },
        r.image.reference,
        r.reference_kind,
        r.containerd,
        if r.containerd_known {
            ""
        } else {
            " (assumed: the running version is unknown)"
        },
        source(&r.source)
    );
    for (i, a) in r.attempts.iter().enumerate() {
        out.push_str(&attempt(i + 1, a, needs));
    }
    if !r.attempts.iter().any(|a| a.eligible) {
        out.push_str("no host can serve this pull: containerd fails with \"no resolve hosts\"\n");
    }
    out
}
