//! `regmirror resolve --runtime podman|crio IMAGE`: which URLs containers/image
//! (`pkg/sysregistriesv2`, used by Podman, CRI-O, Buildah and Skopeo) tries for IMAGE, in
//! order, from the registries.conf text and its drop-ins. Pure: takes texts, returns values.
//!
//! The rules, as containers/image implements them:
//! - `registries.conf` is read first, then every `*.conf` of `registries.conf.d` in name order.
//!   A drop-in's `[[registry]]` replaces an earlier one with the same `prefix`; once a drop-in
//!   was merged, the registries are ordered by `prefix` (containers/image sorts them).
//! - `prefix` defaults to `location`. It matches the reference `host/repo:tag` when it equals
//!   it, or is followed in it by `:`, `/` or `@` (so `example.com` also matches
//!   `example.com:5000/…`: a containers/image quirk kept here). `*.example.com` matches any
//!   host ending in `.example.com`.
//! - The longest `prefix` (by its length, `*.` included) wins; on a tie, the first in order.
//! - A `blocked` registry refuses the pull: no URL is tried.
//! - The mirrors, in order (`mirror-by-digest-only` and `pull-from-mirror` honoured), then
//!   `location` itself; each rewrites the reference as `location + what followed the prefix`.
//!   An empty `location` (only allowed with a wildcard prefix) keeps the reference.
//! - `docker.io` is served by `registry-1.docker.io`. `insecure = true` lets the runtime use
//!   plain http (after https without verification): the URL is shown as `http://`.

use std::path::PathBuf;

use serde::Serialize;

/// The JSON schema name of [`Resolution`].
pub const SCHEMA: &str = "regmirror.resolve-podman/v1";

/// One file read, in order: `registries.conf` first, then the drop-ins.
#[derive(Debug, Clone)]
pub struct ConfText {
    pub path: PathBuf,
    pub text: String,
    /// A drop-in (merged by prefix) rather than the main file.
    pub drop_in: bool,
}

/// A `[[registry.mirror]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mirror {
    pub location: String,
    pub insecure: bool,
    /// `pull-from-mirror`: `all` (unset), `digest-only` or `tag-only`.
    pub pull_from_mirror: Option<String>,
}

/// A `[[registry]]`, after containers/image's post-processing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registry {
    pub prefix: String,
    pub location: String,
    pub insecure: bool,
    pub blocked: bool,
    pub mirror_by_digest_only: bool,
    pub mirrors: Vec<Mirror>,
    /// The file it came from.
    pub file: PathBuf,
}

/// One URL the runtime tries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// `mirror` or `location`.
    pub kind: &'static str,
    /// The endpoint's `location` as written.
    pub location: String,
    /// The rewritten reference (`host/repo:tag`).
    pub reference: String,
    pub host: String,
    pub repository: String,
    pub insecure: bool,
    /// The manifest URL (`http://` when insecure).
    pub url: String,
}

/// What `resolve --runtime podman` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    pub schema: &'static str,
    pub image: String,
    /// The normalized reference that is matched (`host/repo:tag` or `host/repo@digest`).
    pub reference: String,
    /// The `[[registry]]` that matched, or none (the image's own registry is used).
    pub registry: Option<Registry>,
    pub blocked: bool,
    pub attempts: Vec<Attempt>,
    /// Every file read, in order.
    pub files: Vec<PathBuf>,
}

fn bool_of(t: &dyn toml_edit::TableLike, key: &str, file: &str) -> Result<bool, String> {
    match t.get(key) {
        None => Ok(false),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| format!("{file}: `{key}` is not a boolean")),
    }
}

fn str_of(t: &dyn toml_edit::TableLike, key: &str, file: &str) -> Result<String, String> {
    match t.get(key) {
        None => Ok(String::new()),
        Some(v) => v
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{file}: `{key}` is not a string")),
    }
}

/// containers/image's `parseLocation`: no scheme, no trailing `/`.
fn location(s: &str, file: &str) -> Result<String, String> {
    let s = s.trim_end_matches('/');
    if s.starts_with("http://") || s.starts_with("https://") {
        return Err(format!(
            "{file}: invalid location {s:?}: URI schemes are not supported"
        ));
    }
    Ok(s.to_string())
}

/// The `[[registry]]` tables of one file, post-processed (errors name the file).
pub fn parse_file(c: &ConfText) -> Result<Vec<Registry>, String> {
    let file = c.path.display().to_string();
    let doc: toml_edit::DocumentMut = c
        .text
        .parse()
        .map_err(|e| format!("{file}: not TOML: {e}"))?;
    if doc.contains_key("registries") {
        return Err(format!(
            "{file}: the v1 format ([registries.search]) is not supported by regmirror resolve"
        ));
    }
    let Some(item) = doc.get("registry") else {
        return Ok(Vec::new());
    };
    let tables = item
        .as_array_of_tables()
        .ok_or_else(|| format!("{file}: `registry` is not an array of tables ([[registry]])"))?;
    tables.iter().map(|t| parse_registry(t, &file, c)).collect()
}

/// One `[[registry]]` table `t` of `c` (named `file` in errors), post-processed.
fn parse_registry(t: &toml_edit::Table, file: &str, c: &ConfText) -> Result<Registry, String> {
    let loc = location(&str_of(t, "location", file)?, file)?;
    let prefix = registry_prefix(t, &loc, file)?;
    let by_digest = bool_of(t, "mirror-by-digest-only", file)?;
    let mirrors = parse_mirrors(t, &prefix, by_digest, file)?;
    Ok(Registry {
        prefix,
        location: loc,
        insecure: bool_of(t, "insecure", file)?,
        blocked: bool_of(t, "blocked", file)?,
        mirror_by_digest_only: by_digest,
        mirrors,
        file: c.path.clone(),
    })
}

/// The `prefix` of the `[[registry]]` `t` whose location is `loc`: `loc` when unset;
/// checked (a location or `*.example.com`).
fn registry_prefix(t: &toml_edit::Table, loc: &str, file: &str) -> Result<String, String> {
    let mut prefix = str_of(t, "prefix", file)?;
    if prefix.is_empty() {
        if loc.is_empty() {
            return Err(format!(
                "{file}: a [[registry]] has neither location nor prefix"
            ));
        }
        prefix = loc.to_string();
    } else {
        prefix = location(&prefix, file)?;
        if !prefix.starts_with("*.") && loc.is_empty() {
            return Err(format!(
                "{file}: [[registry]] {prefix:?}: location is unset and prefix is not in the format *.example.com"
            ));
        }
    }
    if prefix.starts_with("*.") && prefix.contains(['/', '@', ':']) {
        return Err(format!(
            "{file}: wildcarded prefix {prefix:?} must be in the format *.example.com"
        ));
    }
    Ok(prefix)
}

/// The `[[registry.mirror]]` tables of the `[[registry]]` `t` (`prefix`, with
/// `mirror-by-digest-only` = `by_digest`), in order.
fn parse_mirrors(
    t: &toml_edit::Table,
    prefix: &str,
    by_digest: bool,
    file: &str,
) -> Result<Vec<Mirror>, String> {
    let Some(m) = t.get("mirror") else {
        return Ok(Vec::new());
    };
    let arr = m
        .as_array_of_tables()
        .ok_or_else(|| format!("{file}: `mirror` is not [[registry.mirror]]"))?;
    arr.iter()
        .map(|m| parse_mirror(m, prefix, by_digest, file))
        .collect()
}

/// One `[[registry.mirror]]` table `m` of the `[[registry]]` `prefix`, checked.
fn parse_mirror(
    m: &toml_edit::Table,
    prefix: &str,
    by_digest: bool,
    file: &str,
) -> Result<Mirror, String> {
    let l = location(&str_of(m, "location", file)?, file)?;
    if l.is_empty() {
        return Err(format!(
            "{file}: [[registry]] {prefix:?}: a mirror has no location"
        ));
    }
    let pfm = str_of(m, "pull-from-mirror", file)?;
    if !["", "all", "digest-only", "tag-only"].contains(&pfm.as_str()) {
        return Err(format!(
            "{file}: unsupported pull-from-mirror {pfm:?} (all, digest-only, tag-only)"
        ));
    }
    if by_digest && !pfm.is_empty() {
        return Err(format!(
            "{file}: [[registry]] {prefix:?}: pull-from-mirror with mirror-by-digest-only"
        ));
    }
    Ok(Mirror {
        location: l,
        insecure: bool_of(m, "insecure", file)?,
        pull_from_mirror: Some(pfm).filter(|p| !p.is_empty()),
    })
}

/// Every registry, merged as containers/image merges the main file and its drop-ins.
pub fn load(files: &[ConfText]) -> Result<Vec<Registry>, String> {
    let mut regs: Vec<Registry> = Vec::new();
    for f in files {
        let mut new = parse_file(f)?;
        if !f.drop_in {
            regs.append(&mut new);
            continue;
        }
        let mut map: std::collections::BTreeMap<String, Registry> =
            std::collections::BTreeMap::new();
        for r in regs.drain(..).chain(new) {
            map.insert(r.prefix.clone(), r);
        }
        regs = map.into_values().collect();
    }
    Ok(regs)
}

/// `refMatchingPrefix`: the length of `ref_` matched by `prefix`, or `None`.
pub fn matching_prefix(ref_: &str, prefix: &str) -> Option<usize> {
    let boundary = |c: u8| matches!(c, b':' | b'/' | b'@');
    if let Some(domain) = prefix.strip_prefix('*') {
        let i = ref_.find(domain)?;
        if ref_[..i].contains('/') {
            return None;
        }
        let end = i + domain.len();
        return (end == ref_.len() || boundary(ref_.as_bytes()[end])).then_some(end);
    }
    if ref_ == prefix {
        return Some(prefix.len());
    }
    (ref_.len() > prefix.len()
        && ref_.starts_with(prefix)
        && boundary(ref_.as_bytes()[prefix.len()]))
    .then_some(prefix.len())
}

/// `FindRegistry`: the registry with the longest matching prefix (first on a tie).
pub fn find<'a>(regs: &'a [Registry], ref_: &str) -> Option<&'a Registry> {
    let mut best: Option<&Registry> = None;
    for r in regs {
        if matching_prefix(ref_, &r.prefix).is_some()
            && best.is_none_or(|b| r.prefix.len() > b.prefix.len())
        {
            best = Some(r);
        }
    }
    best
}

/// `host/repo:tag` → (host, repo, `:tag` or `@digest`).
fn split_ref(r: &str) -> (String, String, String) {
    let (host, rest) = r.split_once('/').unwrap_or((r, ""));
    let (repo, tail) = if let Some(i) = rest.find('@') {
        (&rest[..i], &rest[i..])
    } else if let Some(i) = rest.rfind(':') {
        (&rest[..i], &rest[i..])
    } else {
        (rest, "")
    };
    (host.to_string(), repo.to_string(), tail.to_string())
}

fn attempt(kind: &'static str, location: &str, reference: String, insecure: bool) -> Attempt {
    let (host, repository, tail) = split_ref(&reference);
    let api = if host == "docker.io" {
        "registry-1.docker.io".to_string()
    } else {
        host.clone()
    };
    let manifest = tail.trim_start_matches([':', '@']);
    let scheme = if insecure { "http" } else { "https" };
    Attempt {
        kind,
        location: location.to_string(),
        url: format!("{scheme}://{api}/v2/{repository}/manifests/{manifest}"),
        reference,
        host,
        repository,
        insecure,
    }
}

/// Resolve `image` (fully qualified: `host/repo[:tag|@digest]`) against `files`.
pub fn resolve(image: &str, files: &[ConfText]) -> Result<Resolution, String> {
    check_qualified(image)?;
    let parsed = crate::resolve::image::parse_image(image)?;
    let digest = parsed.reference.contains(':');
    let sep = if digest { '@' } else { ':' };
    let reference = format!(
        "{}/{}{sep}{}",
        parsed.registry, parsed.repository, parsed.reference
    );
    let regs = load(files)?;
    let found = find(&regs, &reference).cloned();
    let blocked = found.as_ref().is_some_and(|r| r.blocked);
    let attempts = match &found {
        None => vec![attempt(
            "location",
            &parsed.registry,
            reference.clone(),
            false,
        )],
        Some(_) if blocked => Vec::new(),
        Some(r) => registry_attempts(r, &reference, digest),
    };
    Ok(Resolution {
        schema: SCHEMA,
        image: image.to_string(),
        reference,
        registry: found,
        blocked,
        attempts,
        files: files.iter().map(|f| f.path.clone()).collect(),
    })
}

/// Refuse a short name (no registry host first): Podman and CRI-O resolve those otherwise.
fn check_qualified(image: &str) -> Result<(), String> {
    let first = image.split('/').next().unwrap_or_default();
    if !image.contains('/') || !(first.contains('.') || first.contains(':') || first == "localhost")
    {
        return Err(format!(
            "image {image:?} is a short name: Podman and CRI-O resolve it through unqualified-search-registries and short-name aliases; give a fully qualified name (e.g. docker.io/library/{image})"
        ));
    }
    Ok(())
}

/// The URLs tried for `reference` (by digest when `digest`) through the matching, unblocked
/// registry `r`: its mirrors that take this pull, then its location.
fn registry_attempts(r: &Registry, reference: &str, digest: bool) -> Vec<Attempt> {
    let len = matching_prefix(reference, &r.prefix).expect("it matched");
    let rest = &reference[len..];
    let rewrite = |loc: &str| {
        if loc.is_empty() {
            reference.to_string()
        } else {
            format!("{loc}{rest}")
        }
    };
    let mut attempts: Vec<Attempt> = r
        .mirrors
        .iter()
        .filter(|m| mirror_takes_pull(r, m, digest))
        .map(|m| attempt("mirror", &m.location, rewrite(&m.location), m.insecure))
        .collect();
    attempts.push(attempt(
        "location",
        &r.location,
        rewrite(&r.location),
        r.insecure,
    ));
    attempts
}

/// Whether the mirror `m` of `r` is tried for a pull by digest (`digest`) or by tag:
/// `mirror-by-digest-only`, else its `pull-from-mirror`.
fn mirror_takes_pull(r: &Registry, m: &Mirror, digest: bool) -> bool {
    if r.mirror_by_digest_only {
        digest
    } else {
        match m.pull_from_mirror.as_deref() {
            Some("digest-only") => digest,
            Some("tag-only") => !digest,
            _ => true,
        }
    }
}

/// The text form: one line per URL, in order.
pub fn render_text(r: &Resolution) -> String {
    let mut out = format!("{} → {}\n", r.image, r.reference);
    match &r.registry {
        None => out.push_str("no [[registry]] matches: the image's own registry\n"),
        Some(g) => out.push_str(&format!(
            "[[registry]] prefix {:?} ({})\n",
            g.prefix,
            g.file.display()
        )),
    }
    if r.blocked {
        out.push_str("blocked: the runtime refuses this pull (blocked = true)\n");
    }
    for (i, a) in r.attempts.iter().enumerate() {
        let note = if a.insecure {
            " (insecure: https without verification, then http)"
        } else {
            ""
        };
        out.push_str(&format!("{}. {} {}{note}\n", i + 1, a.kind, a.url));
    }
    out
}

/// Read `registries.conf` (missing: skipped) and the `*.conf` files of `conf_d` in name order.
pub fn read_files(
    conf: &std::path::Path,
    conf_d: &std::path::Path,
) -> Result<Vec<ConfText>, String> {
    let read = |p: &std::path::Path| -> Result<Option<String>, String> {
        match crate::apply::write::read_optional(p, 4 * 1024 * 1024) {
            Ok(None) => Ok(None),
            Ok(Some((b, _))) => String::from_utf8(b)
                .map(Some)
                .map_err(|_| format!("read {}: not UTF-8 text", p.display())),
            Err(e) => Err(format!("read {}: {e}", p.display())),
        }
    };
    let mut out = Vec::new();
    if let Some(text) = read(conf)? {
        out.push(ConfText {
            path: conf.to_path_buf(),
            text,
            drop_in: false,
        });
    }
    let mut names = Vec::new();
    match std::fs::read_dir(conf_d) {
        Ok(rd) => {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "conf") && p.is_file() {
                    names.push(p);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("read {}: {e}", conf_d.display())),
    }
    names.sort();
    for p in names {
        if let Some(text) = read(&p)? {
            out.push(ConfText {
                path: p,
                text,
                drop_in: true,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(name: &str, text: &str, drop_in: bool) -> ConfText {
        ConfText {
            path: PathBuf::from(name),
            text: text.to_string(),
            drop_in,
        }
    }

    fn urls(image: &str, files: &[ConfText]) -> Vec<String> {
        resolve(image, files)
            .unwrap()
            .attempts
            .into_iter()
            .map(|a| a.url)
            .collect()
    }

    #[test]
    fn prefix_matching_rules() {
        assert_eq!(
            matching_prefix("docker.io/library/x:1", "docker.io"),
            Some(9)
        );
        assert_eq!(matching_prefix("docker.io", "docker.io"), Some(9));
        assert_eq!(matching_prefix("docker.iox/a:1", "docker.io"), None);
        assert_eq!(matching_prefix("docker.io/lib/x:1", "docker.io/li"), None);
        assert_eq!(
            matching_prefix("docker.io/lib/x:1", "docker.io/lib"),
            Some(13)
        );
        assert_eq!(
            matching_prefix("docker.io/lib/x:1", "docker.io/lib/x"),
            Some(15)
        );
        assert_eq!(
            matching_prefix("docker.io/lib/x:1", "docker.io/lib/x:1"),
            Some(17)
        );
        // The containers/image quirk: `example.com` matches `example.com:5000`.
        assert_eq!(
            matching_prefix("example.com:5000/a:1", "example.com"),
            Some(11)
        );
        // Wildcards: any subdomain, not the apex, only in the host.
        assert_eq!(
            matching_prefix("a.b.example.com/x:1", "*.example.com"),
            Some(15)
        );
        assert_eq!(matching_prefix("example.com/x:1", "*.example.com"), None);
        assert_eq!(
            matching_prefix("other.com/a.example.com/x", "*.example.com"),
            None
        );
        assert_eq!(matching_prefix("a.example.comx/y", "*.example.com"), None);
    }

    #[test]
    fn longest_prefix_wins_and_ties_go_to_the_first() {
        let main = conf(
            "registries.conf",
            r#"
[[registry]]
prefix = "quay.io"
location = "quay.io"
[[registry.mirror]]
location = "m1.example/quay"

[[registry]]
prefix = "quay.io/team"
location = "quay.io/team"
[[registry.mirror]]
location = "m2.example/team"
insecure = true

[[registry]]
prefix = "*.corp.example"
location = "mirror.corp.example:5000"
"#,
            false,
        );
        assert_eq!(
            urls("quay.io/team/app:2", std::slice::from_ref(&main)),
            [
                "http://m2.example/v2/team/app/manifests/2",
                "https://quay.io/v2/team/app/manifests/2"
            ]
        );
        assert_eq!(
            urls("quay.io/other/app@sha256:ab", std::slice::from_ref(&main)),
            [
                "https://m1.example/v2/quay/other/app/manifests/sha256:ab",
                "https://quay.io/v2/other/app/manifests/sha256:ab"
            ]
        );
        assert_eq!(
            urls("reg.corp.example/a/b:1", std::slice::from_ref(&main)),
            ["https://mirror.corp.example:5000/v2/a/b/manifests/1"]
        );
        // No match: the image's own registry; docker.io is registry-1.docker.io.
        assert_eq!(
            urls("docker.io/busybox", &[main]),
            ["https://registry-1.docker.io/v2/library/busybox/manifests/latest"]
        );
    }

    #[test]
    fn drop_ins_override_by_prefix_in_name_order_and_blocked_refuses() {
        let main = conf(
            "registries.conf",
            "[[registry]]\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"admin.example/d\"\n",
            false,
        );
        let ours = conf(
            "d/50-regmirror.conf",
            "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"h:5000/airgap/docker.io\"\ninsecure = true\n",
            true,
        );
        let r = resolve("docker.io/library/tiny:1", &[main.clone(), ours.clone()]).unwrap();
        assert_eq!(
            r.attempts[0].url,
            "http://h:5000/v2/airgap/docker.io/library/tiny/manifests/1"
        );
        assert_eq!(
            r.attempts[1].url,
            "https://registry-1.docker.io/v2/library/tiny/manifests/1"
        );
        assert_eq!(
            r.registry.unwrap().file,
            PathBuf::from("d/50-regmirror.conf")
        );
        let later = conf(
            "d/60-admin.conf",
            "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\nblocked = true\n",
            true,
        );
        let r = resolve("docker.io/library/tiny:1", &[main, ours, later]).unwrap();
        assert!(r.blocked && r.attempts.is_empty());
    }

    #[test]
    fn digest_only_mirrors_and_bad_files() {
        let c = conf(
            "r.conf",
            "[[registry]]\nlocation = \"q.io\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.example\"\n",
            false,
        );
        assert_eq!(
            urls("q.io/a:1", std::slice::from_ref(&c)),
            ["https://q.io/v2/a/manifests/1"]
        );
        assert_eq!(urls("q.io/a@sha256:00", &[c]).len(), 2);
        for bad in [
            "[[registry]]\nprefix = \"x.io\"\n",
            "[[registry]]\nlocation = \"https://x.io\"\n",
            "[[registry]]\nprefix = \"*.x.io/ns\"\n",
            "[registries.search]\nregistries = []\n",
            "registry = 1\n",
        ] {
            assert!(
                resolve("x.io/a:1", &[conf("b.conf", bad, false)]).is_err(),
                "{bad}"
            );
        }
        assert!(resolve("busybox", &[]).is_err());
    }
}
