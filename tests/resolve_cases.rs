//! `resolve`'s model of containerd's host resolution, held against containerd's own test cases
//! and the rules read from its code: `tests/fixtures/resolve/containerd_cases.toml` (each case
//! names its source test or code and the containerd releases it holds for; the rules are in
//! RULES.md beside it). Every case runs for every release of a representative list that its
//! version range admits, and must give exactly the expected host list (scheme, host, path,
//! capabilities, and TLS / header / fallback settings where the case states them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regmirror::resolve::hostsdir::{HostsFs, configure_hosts};
use regmirror::resolve::legacy::legacy_hosts;
use regmirror::resolve::rules::Behaviour;
use regmirror::resolve::{RegistryHost, parse_image};
use regmirror::runtime::ContainerdVersion;
use serde::Deserialize;

/// Releases at which some behaviour changes (and the ones this project runs for real).
const RELEASES: &[&str] = &[
    "1.6.0", "1.6.8", "1.6.9", "1.6.16", "1.6.17", "1.6.20", "1.6.24", "1.6.25", "1.6.39", "1.7.0",
    "1.7.6", "1.7.7", "1.7.8", "1.7.23", "1.7.24", "1.7.31", "1.7.32", "2.0.0", "2.0.7", "2.1.0",
    "2.1.9", "2.2.0", "2.2.2", "2.3.4",
];

#[derive(Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Case {
    name: String,
    from: String,
    containerd: String,
    image: String,
    config_path: Option<Vec<String>>,
    legacy_endpoints: Option<Vec<String>>,
    legacy_other_mirrors: Option<BTreeMap<String, Vec<String>>>,
    pull_mode: Option<String>,
    verify: Option<String>,
    note: Option<String>,
    #[serde(default)]
    files: BTreeMap<String, String>,
    expect: Vec<Expect>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Expect {
    scheme: String,
    host: String,
    path: String,
    capabilities: Vec<String>,
    skip_verify: Option<bool>,
    ca: Option<Vec<String>>,
    header: Option<BTreeMap<String, Vec<String>>>,
    http_fallback: Option<bool>,
}

/// The case's files, under its `config_path` roots.
struct MemFs(BTreeMap<PathBuf, String>);

impl HostsFs for MemFs {
    fn is_dir(&self, path: &Path) -> bool {
        self.0.keys().any(|f| f.starts_with(path) && f != path)
    }
    fn read(&self, path: &Path) -> Option<String> {
        self.0.get(path).cloned()
    }
    fn list(&self, dir: &Path) -> Vec<String> {
        self.0
            .keys()
            .filter(|f| f.parent() == Some(dir))
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect()
    }
}

fn hosts_for(case: &Case, version: ContainerdVersion) -> Vec<RegistryHost> {
    let b = Behaviour::of(Some(version));
    let registry = parse_image(&case.image).unwrap().registry;
    if case.legacy_endpoints.is_some() || case.legacy_other_mirrors.is_some() {
        let mut mirrors = case.legacy_other_mirrors.clone().unwrap_or_default();
        if let Some(e) = &case.legacy_endpoints {
            mirrors.insert(registry.clone(), e.clone());
        }
        return legacy_hosts(&registry, &mirrors, b);
    }
    let roots: Vec<PathBuf> = case
        .config_path
        .iter()
        .flatten()
        .map(PathBuf::from)
        .collect();
    let files = case
        .files
        .iter()
        .map(|(rel, text)| match rel.strip_prefix("@1/") {
            Some(r) => (roots[1].join(r), text.clone()),
            None => (roots[0].join(rel), text.clone()),
        })
        .collect();
    let transfer = case.pull_mode.as_deref() == Some("transfer") && b.transfer_service();
    let searched = if transfer && roots.len() > 1 {
        let joined: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        vec![PathBuf::from(joined.join(":"))]
    } else {
        roots
    };
    configure_hosts(&registry, &searched, b, &MemFs(files))
}

/// Differences between the model's hosts and the expectation, as lines.
fn compare(got: &[RegistryHost], want: &[Expect]) -> Vec<String> {
    let mut out = Vec::new();
    if got.len() != want.len() {
        out.push(format!("{} hosts, expected {}", got.len(), want.len()));
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let caps: Vec<&str> = g.capabilities.iter().map(|c| c.name()).collect();
        let mut diff = |what: &str, got: String, want: String| {
            if got != want {
                out.push(format!("host {i} {what}: got {got}, expected {want}"));
            }
        };
        diff("scheme", g.scheme.clone(), w.scheme.clone());
        diff("host", g.host.clone(), w.host.clone());
        diff("path", format!("{:?}", g.path), format!("{:?}", w.path));
        diff(
            "capabilities",
            format!("{caps:?}"),
            format!("{:?}", w.capabilities),
        );
        if let Some(s) = w.skip_verify {
            diff("skip_verify", g.skip_verify.to_string(), s.to_string());
        }
        if let Some(ca) = &w.ca {
            diff("ca", format!("{:?}", g.ca), format!("{ca:?}"));
        }
        if let Some(h) = &w.header {
            diff("header", format!("{:?}", g.header), format!("{h:?}"));
        }
        if let Some(f) = w.http_fallback {
            diff("http_fallback", g.http_fallback.to_string(), f.to_string());
        }
    }
    out
}

#[test]
fn every_case_on_every_release_it_names() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resolve/containerd_cases.toml");
    let cases: Cases = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut failures = Vec::new();
    let (mut runs, mut names) = (0, std::collections::BTreeSet::new());
    for case in &cases.case {
        assert!(
            names.insert(case.name.clone()),
            "duplicate case {}",
            case.name
        );
        let req = semver::VersionReq::parse(&case.containerd)
            .unwrap_or_else(|e| panic!("{}: containerd {:?}: {e}", case.name, case.containerd));
        let mut matched = 0;
        for r in RELEASES {
            if !req.matches(&semver::Version::parse(r).unwrap()) {
                continue;
            }
            matched += 1;
            runs += 1;
            let diffs = compare(&hosts_for(case, r.parse().unwrap()), &case.expect);
            if !diffs.is_empty() {
                failures.push(format!(
                    "{} on {r} ({}):\n  {}",
                    case.name,
                    case.from,
                    diffs.join("\n  ")
                ));
            }
        }
        assert!(
            matched > 0,
            "{}: no release of the list matches {}",
            case.name,
            case.containerd
        );
    }
    eprintln!(
        "{} cases, {runs} case × release runs, {} failed",
        cases.case.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
