//! The corpus of real config.toml files (`../shared/corpus/`, sources in its SOURCES.md; read
//! from there, never copied here) against each containerd of the matrix (1.6.20, 1.7.24,
//! 2.1.9). For each file and release, in a jail whose `/etc`, `/var` are the test's own (see
//! `support::jail`), with the file's `<name>.root/` tree laid out first:
//!
//! 1. `regmirror apply --containerd-version V` (auto mode) of a Secret with two mirrors,
//!    CA_CERT and credentials, or an exit-2 refusal listed in [`REFUSED`] (with the reason it
//!    must name, and no byte changed);
//! 2. `regmirror diff` again: no change (exit 0);
//! 3. `containerd config dump` of that release: exit 0, and the mirrors (legacy) or the
//!    `config_path` (hosts) are in the table that release reads (`io.containerd.grpc.v1.cri`
//!    on 1.x, `io.containerd.cri.v1.images` on 2.x), with the hosts.toml in that directory;
//! 4. `regmirror revert`: config.toml byte-identical, and the tree as it was (no file or
//!    directory left behind, the `.root` files untouched).
//!
//! Files of config version ≥ 3 are not run on 1.x (1.x cannot read them). Plus a CRLF copy of
//! Debian's file: every line regmirror adds ends in CRLF. With `REGMIRROR_E2E=1` a missing
//! corpus, release or tool is a failure. Run: `REGMIRROR_E2E=1 cargo test --test corpus`.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use support::cli::Secret;
use support::containerd::Release;
use support::jail::Jail;

/// (file, release, what the refusal must say): auto mode picks hosts mode there, and the file
/// already holds legacy mirrors of the admin's, which containerd will not load together with
/// config_path. regmirror refuses rather than break the CRI plugin.
/// And a version 4 file (containerd ≥ 2.3) on 2.1.9, which cannot read it.
const REFUSED: &[(&str, Release, &str)] = &[
    (
        "kubespray-v4.toml",
        Release::V2_1,
        "reads config versions up to 3",
    ),
    (
        "kind-2023-mirrors.toml",
        Release::V2_1,
        "not owned by regmirror",
    ),
    (
        "microk8s-2021-mirrors.toml",
        Release::V2_1,
        "not owned by regmirror",
    ),
    (
        "minikube-2022-mirrors.toml",
        Release::V2_1,
        "not owned by regmirror",
    ),
];

/// The newest containerd named for a version 4 file: no such binary is obtainable here (2.1.9
/// is Debian's newest), so those files also run with `--containerd-version 2.3.0` on the 2.1
/// binary's jail, without `config dump` (documented behaviour, not measured).
const DOCUMENTED_2_3: &str = "2.3.0";

fn corpus_dir() -> PathBuf {
    std::env::var_os("REGMIRROR_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"))
}

/// The corpus files, by name (plus the derived CRLF file).
fn corpus() -> Option<BTreeMap<String, Vec<u8>>> {
    let dir = corpus_dir();
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".toml") {
            out.insert(name, std::fs::read(e.path()).unwrap());
        }
    }
    let debian = out.get("debian-bookworm-packaged.toml")?.clone();
    let crlf = String::from_utf8(debian).unwrap().replace('\n', "\r\n");
    out.insert("derived-debian-crlf.toml".into(), crlf.into_bytes());
    Some(out)
}

fn file_version(text: &[u8]) -> i64 {
    let doc: toml_edit::DocumentMut = String::from_utf8_lossy(text)
        .parse()
        .expect("corpus file parses");
    doc.get("version").and_then(|v| v.as_integer()).unwrap_or(1)
}

/// Every file and directory under `dir`, with file contents.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p.clone());
                out.insert(p, None);
            } else if ft.is_file() {
                out.insert(p.clone(), Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    for (p, bytes) in tree(from) {
        let dest = to.join(p.strip_prefix(from).unwrap());
        match bytes {
            None => std::fs::create_dir_all(&dest).unwrap(),
            Some(b) => {
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::write(&dest, b).unwrap();
            }
        }
    }
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn run(jail: &Jail, release: Release, argv: &[&str]) -> Outcome {
    let out = jail.run(&release.bin_dir(), argv);
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const CONFIG: &str = "/etc/containerd/config.toml";

fn regmirror(
    jail: &Jail,
    release: Release,
    as_version: &str,
    sub: &str,
    extra: &[&str],
) -> Outcome {
    let mut argv = vec![
        "/opt/bin/regmirror",
        sub,
        "--config",
        CONFIG,
        "--certs-dir",
        "/etc/containerd/certs.d",
        "--state-dir",
        "/var/lib/regmirror",
        "--containerd-version",
        as_version,
        "--host-pid",
        "0",
    ];
    argv.extend_from_slice(extra);
    run(jail, release, &argv)
}

/// The registry table of `release`'s `config dump`.
fn dumped_registry(jail: &Jail, release: Release) -> (toml_edit::Item, String) {
    let out = run(
        jail,
        release,
        &[
            "/opt/containerd/containerd",
            "--config",
            CONFIG,
            "config",
            "dump",
        ],
    );
    assert_eq!(
        out.code,
        0,
        "containerd {} config dump: {out}",
        release.version()
    );
    let doc: toml_edit::DocumentMut = out.stdout.parse().expect("dump parses");
    let plugin = if release.is_2x() {
        "io.containerd.cri.v1.images"
    } else {
        "io.containerd.grpc.v1.cri"
    };
    let reg = doc["plugins"][plugin]["registry"].clone();
    (reg, out.stdout)
}

/// One file on one release: see the module docs. Returns a failure description or `None`.
fn check(
    name: &str,
    original: &[u8],
    release: Release,
    as_version: &str,
    secret: &str,
) -> Option<String> {
    let dump = as_version == release.version();
    let jail = Jail::new();
    let root_tree = corpus_dir().join(name.replace(".toml", ".root"));
    if root_tree.is_dir() {
        copy_tree(&root_tree, &jail.root);
    }
    std::fs::create_dir_all(jail.path("/etc/containerd")).unwrap();
    std::fs::write(jail.path(CONFIG), original).unwrap();
    std::fs::write(jail.path("/etc/registry-info.yaml"), secret).unwrap();
    let before = tree(&jail.root);
    let fail = |what: String| Some(format!("{name} on containerd {as_version}: {what}"));

    let apply = regmirror(
        &jail,
        release,
        as_version,
        "apply",
        &[
            "--secret-file",
            "/etc/registry-info.yaml",
            "--reload",
            "none",
        ],
    );
    if let Some((_, _, why)) = REFUSED
        .iter()
        .find(|(f, r, _)| *f == name && *r == release && dump)
    {
        if apply.code != 2 || !apply.stderr.contains(why) {
            return fail(format!("expected a refusal naming {why:?}: {apply}"));
        }
        if tree(&jail.root) != before {
            return fail("a refused apply changed the tree".into());
        }
        eprintln!("{name} on {as_version}: refused as expected ({why})");
        return None;
    }
    if apply.code != 0 {
        return fail(format!("apply: {apply}"));
    }
    let hosts = apply.stdout.contains("(mode hosts)");
    let diff = regmirror(
        &jail,
        release,
        as_version,
        "diff",
        &["--secret-file", "/etc/registry-info.yaml"],
    );
    if diff.code != 0 {
        return fail(format!("diff after apply is not empty: {diff}"));
    }
    let applied = std::fs::read(jail.path(CONFIG)).unwrap();
    if name.contains("crlf") {
        let text = String::from_utf8_lossy(&applied);
        if text.replace("\r\n", "").contains('\n') {
            return fail(format!("LF-only lines in a CRLF file:\n{text:?}"));
        }
    }
    let (reg, dump) = if dump {
        dumped_registry(&jail, release)
    } else {
        (toml_edit::Item::None, String::new())
    };
    if dump.is_empty() {
        // Documented behaviour only: check the file itself.
    } else if hosts {
        let cp = reg
            .get("config_path")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let first = cp.split(':').find(|d| !d.is_empty()).unwrap_or("");
        if first.is_empty() || !jail.path(first).join("docker.io/hosts.toml").is_file() {
            return fail(format!(
                "hosts mode, but config dump's config_path {cp:?} has no docker.io/hosts.toml:\n{dump}"
            ));
        }
    } else {
        let ep = reg
            .get("mirrors")
            .and_then(|m| m.get("docker.io"))
            .and_then(|m| m.get("endpoint"));
        let ok = ep.and_then(|e| e.as_array()).is_some_and(|a| {
            a.iter().any(|v| {
                v.as_str() == Some("https://harbor.example.org/v2/airgap-images/docker.io")
            })
        });
        if !ok {
            return fail(format!(
                "legacy mode, but config dump has no docker.io mirror:\n{dump}"
            ));
        }
    }
    let revert = regmirror(&jail, release, as_version, "revert", &[]);
    if revert.code != 0 {
        return fail(format!("revert: {revert}"));
    }
    if std::fs::read(jail.path(CONFIG)).unwrap() != original {
        return fail("config.toml after revert is not byte-identical".into());
    }
    // regmirror's own state dir (its lock file stays, like the package's directory) aside.
    let mut after = tree(&jail.root);
    after.retain(|p, _| !p.starts_with(jail.path("/var/lib")));
    if after != before {
        let changed: Vec<_> = after
            .keys()
            .chain(before.keys())
            .filter(|k| after.get(*k) != before.get(*k))
            .collect();
        return fail(format!("the tree after revert differs: {changed:?}"));
    }
    eprintln!(
        "{name} on {as_version}: mode {}, diff empty, {}, revert exact",
        if hosts { "hosts" } else { "legacy" },
        if dump.is_empty() {
            "no config dump (documented behaviour; no such binary here)"
        } else {
            "config dump ok"
        }
    );
    None
}

#[test]
fn corpus_on_every_release() {
    if !support::prerequisites("corpus_on_every_release") {
        return;
    }
    let Some(files) = corpus() else {
        support::prerequisites_verdict(
            "corpus_on_every_release",
            "corpus",
            &[format!(
                "no corpus at {} (set REGMIRROR_CORPUS)",
                corpus_dir().display()
            )],
        );
        return;
    };
    assert!(files.len() >= 21, "corpus has {} files", files.len());
    let dir = support::temp_dir("corpus-ca");
    let tls = support::tls::ca_signed(dir.path());
    let mut secret = Secret::new(
        "harbor.example.org",
        "docker.io::harbor.example.org/airgap-images/docker.io,registry.k8s.io::harbor.example.org/airgap-images/k8s.io",
    );
    secret.ca_cert = tls.ca_pem();
    secret.username = "robot$ci".into();
    secret.password = "s3cr3t-corpus".into();
    let manifest = secret.manifest();
    let mut failures = Vec::new();
    let mut ran = 0;
    for release in Release::ALL {
        if let Some(p) = release.problem() {
            support::prerequisites_verdict("corpus_on_every_release", "containerd release", &[p]);
            continue;
        }
        for (name, bytes) in &files {
            if file_version(bytes) >= 3 && !release.is_2x() {
                continue;
            }
            ran += 1;
            failures.extend(check(name, bytes, release, release.version(), &manifest));
            if file_version(bytes) >= 4 && release.is_2x() {
                ran += 1;
                failures.extend(check(name, bytes, release, DOCUMENTED_2_3, &manifest));
            }
        }
    }
    eprintln!(
        "corpus: {ran} file × release runs, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {ran} failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
