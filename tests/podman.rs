//! End-to-end: `regmirror … --runtime podman` against a REAL Podman (Debian 12: 4.3) and a REAL
//! docker-registry on 127.0.0.1. regmirror writes the containers-registries.conf drop-in, the
//! certs.d CA and the auth file into a temp copy of `/etc/containers`; each `podman pull` runs in
//! a private mount namespace where that copy is bind-mounted over `/etc/containers` (the
//! machine's own files are never touched), with its storage in a temp dir (`--root`,
//! `--runroot`, `--tmpdir`, vfs). Measured on podman 4.3.1: `CONTAINERS_REGISTRIES_CONF` alone
//! does NOT move the drop-in directory (drop-ins are still read from
//! `/etc/containers/registries.conf.d`), hence the bind mount. The auth file is read through
//! `REGISTRY_AUTH_FILE=/etc/containers/auth.json` (podman's own default is
//! `/run/containers/0/auth.json`), set only when that file exists: podman 4.3 refuses to pull
//! when the variable names a missing file.
//!
//! Every pull is proven by the registry's access log: the mirror path
//! (`/v2/airgap-images/docker.io/library/tiny/manifests/1`) answered 200. There is no internet
//! here, so a pull that fell back to docker.io fails anyway.
//!
//! Needs root, podman and the e2e suite's binaries; without them each test prints `skipped: …`
//! (or panics when `REGMIRROR_E2E=1`).

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::cli::{BIN, Secret};
use support::registry::{Kind, PASSWORD, Registry, USER};

const DOCKER_REPO: &str = "airgap-images/docker.io/library/tiny";
const DOCKER_PATH: &str = "/v2/airgap-images/docker.io/library/tiny/manifests/1";
const QUAY_PATH: &str = "/v2/airgap-images/quay.io/e2e/tiny/manifests/1";

fn ready(test: &str) -> bool {
    if !support::prerequisites(test) {
        return false;
    }
    let missing = support::missing_binaries([("podman", "podman"), ("unshare", "util-linux")]);
    support::prerequisites_verdict(test, "podman", &missing.into_iter().collect::<Vec<_>>())
}

macro_rules! podman_test {
    ($name:expr) => {
        $crate::skip_unless!(ready($name), "podman", $name)
    };
}

/// A throw-away `/etc/containers` (a copy of this machine's) and podman storage.
struct Node {
    dir: tempfile::TempDir,
    pulls: AtomicUsize,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Node {
    fn new() -> Node {
        let dir = support::temp_dir("podman");
        let etc = dir.path().join("etc-containers");
        if Path::new("/etc/containers").is_dir() {
            support::run(
                Command::new("cp")
                    .arg("-a")
                    .arg("/etc/containers")
                    .arg(&etc),
            );
        } else {
            std::fs::create_dir_all(etc.join("registries.conf.d")).unwrap();
        }
        // Only what regmirror writes may be in the drop-in dir of the copy, plus Debian's
        // shortnames.conf.
        std::fs::create_dir_all(etc.join("registries.conf.d")).unwrap();
        Node {
            dir,
            pulls: AtomicUsize::new(0),
        }
    }

    fn etc(&self) -> PathBuf {
        self.dir.path().join("etc-containers")
    }

    fn secret(&self, s: &Secret) -> PathBuf {
        let p = self.dir.path().join("secret.yaml");
        std::fs::write(&p, s.manifest()).unwrap();
        p
    }

    /// `regmirror <sub> --runtime podman` with this node's paths (and containerd paths that
    /// must stay untouched).
    fn regmirror(&self, sub: &str, extra: &[&str]) -> Run {
        self.regmirror_as("podman", sub, extra)
    }

    /// `regmirror resolve --runtime podman IMAGE -o json` against this node's files.
    fn resolve(&self, image: &str) -> serde_json::Value {
        let etc = self.etc();
        let out = Command::new(BIN)
            .args(["resolve", "--runtime", "podman", "-o", "json"])
            .arg("--registries-conf")
            .arg(etc.join("registries.conf"))
            .arg("--registries-conf-d")
            .arg(etc.join("registries.conf.d"))
            .arg(image)
            .output()
            .expect("run regmirror resolve");
        assert!(
            out.status.success(),
            "resolve failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("resolve -o json is JSON")
    }

    /// `regmirror <sub> --runtime RT` with this node's paths.
    fn regmirror_as(&self, rt: &str, sub: &str, extra: &[&str]) -> Run {
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGMIRROR_") {
                cmd.env_remove(k);
            }
        }
        let etc = self.etc();
        let d = self.dir.path();
        cmd.arg(sub)
            .args(["--runtime", rt])
            .arg("--registries-conf-d")
            .arg(etc.join("registries.conf.d"))
            .arg("--containers-certs-dir")
            .arg(etc.join("certs.d"))
            .arg("--auth-file")
            .arg(etc.join("auth.json"))
            .arg("--state-dir")
            .arg(d.join("state"))
            .arg("--config")
            .arg(d.join("containerd/config.toml"))
            .arg("--certs-dir")
            .arg(d.join("containerd/certs.d"))
            .args(extra);
        let out = cmd.output().expect("run regmirror");
        assert!(
            !d.join("containerd").exists(),
            "--runtime {rt} touched the containerd paths"
        );
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn apply(&self, secret: &Path) -> Run {
        let r = self.regmirror("apply", &["--secret-file", secret.to_str().unwrap()]);
        assert_eq!(r.code, 0, "apply failed:\n{r}");
        r
    }

    /// `podman pull IMAGE` in a private mount namespace that sees this node's
    /// `/etc/containers`, with fresh storage (so every pull asks the registry), bounded to 60 s.
    fn pull(&self, image: &str) -> Run {
        let n = self.pulls.fetch_add(1, Ordering::SeqCst);
        let st = self.dir.path().join(format!("storage-{n}"));
        for s in ["root", "run", "tmp"] {
            std::fs::create_dir_all(st.join(s)).unwrap();
        }
        const SETUP: &str = r#"set -e
mount --bind "$1" /etc/containers
shift
exec "$@""#;
        let mut cmd = Command::new("unshare");
        // podman 4.3 fails (`stat …: no such file`) when REGISTRY_AUTH_FILE names no file.
        if self.etc().join("auth.json").exists() {
            cmd.env("REGISTRY_AUTH_FILE", "/etc/containers/auth.json");
        }
        let out = cmd
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                SETUP,
                "sh",
            ])
            .arg(self.etc())
            .args(["timeout", "60", "podman"])
            .arg("--root")
            .arg(st.join("root"))
            .arg("--runroot")
            .arg(st.join("run"))
            .arg("--tmpdir")
            .arg(st.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--events-backend",
                "none",
                "--cgroup-manager",
                "cgroupfs",
                "pull",
                "--quiet",
                image,
            ])
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                "/etc/containers/registries.conf",
            )
            .env_remove("CONTAINERS_CONF")
            .output()
            .expect("run unshare podman");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Every file and directory under the node's `/etc/containers` copy and state dir, with
    /// its mode (and bytes for files).
    fn snapshot(&self) -> BTreeMap<PathBuf, (u32, Option<Vec<u8>>)> {
        fn walk(root: &Path, p: &Path, out: &mut BTreeMap<PathBuf, (u32, Option<Vec<u8>>)>) {
            let Ok(m) = std::fs::symlink_metadata(p) else {
                return;
            };
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let mode = m.permissions().mode() & 0o7777;
            if m.is_dir() {
                out.insert(rel, (mode, None));
                let mut entries: Vec<_> = std::fs::read_dir(p).unwrap().flatten().collect();
                entries.sort_by_key(|e| e.file_name());
                for e in entries {
                    walk(root, &e.path(), out);
                }
            } else {
                out.insert(rel, (mode, Some(std::fs::read(p).unwrap_or_default())));
            }
        }
        let mut out = BTreeMap::new();
        walk(self.dir.path(), &self.etc(), &mut out);
        walk(self.dir.path(), &self.dir.path().join("state"), &mut out);
        out
    }
}

fn assert_pulled_through_mirror(node: &Node, reg: &Registry, image: &str, path: &str) {
    let mark = reg.mark();
    let r = node.pull(image);
    let hits = reg.hits(mark, path);
    assert!(
        r.code == 0 && hits.iter().any(|h| h.status == 200),
        "podman pull {image} did not go through the mirror at {path}:\n{r}\nregistry log:\n{}\ndrop-in:\n{}",
        reg.log_since(mark),
        std::fs::read_to_string(node.etc().join("registries.conf.d/50-regmirror.conf"))
            .unwrap_or_default()
    );
}

fn secret_for(reg: &Registry, mirrors: &str) -> Secret {
    Secret::new(&reg.host(), mirrors)
}

/// A plain-HTTP registry holding the tiny image, a node, and an INSECURE Secret mirroring
/// docker.io to it.
fn plain_docker_io_mirror() -> (Registry, Node, Secret) {
    let reg = Registry::start(Kind::Plain);
    reg.push_tiny(DOCKER_REPO);
    let node = Node::new();
    let mut s = secret_for(
        &reg,
        &format!("docker.io::{}/airgap-images/docker.io", reg.host()),
    );
    s.insecure = true;
    (reg, node, s)
}

#[test]
fn plain_http_insecure_pull_goes_through_mirror() {
    podman_test!("plain_http_insecure_pull_goes_through_mirror");
    let (reg, node, s) = plain_docker_io_mirror();
    let secret = node.secret(&s);
    let d = node.regmirror("diff", &["--secret-file", secret.to_str().unwrap()]);
    assert_eq!(d.code, 1, "diff must report changes:\n{d}");
    assert!(
        d.stdout.contains(&format!(
            "+location = \"{}/airgap-images/docker.io\"",
            reg.host()
        )) && d.stdout.contains("+insecure = true"),
        "{d}"
    );
    node.apply(&secret);
    let conf =
        std::fs::read_to_string(node.etc().join("registries.conf.d/50-regmirror.conf")).unwrap();
    assert!(conf.starts_with("# managed by regmirror"), "{conf}");
    assert_pulled_through_mirror(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    // Idempotent: a second apply and diff change nothing.
    let again = node.apply(&secret);
    assert!(again.stdout.contains("nothing to change"), "{again}");
    let d = node.regmirror("diff", &["--secret-file", secret.to_str().unwrap()]);
    assert_eq!(d.code, 0, "{d}");
}

#[test]
fn tls_ca_and_basic_auth_pull_goes_through_mirror() {
    podman_test!("tls_ca_and_basic_auth_pull_goes_through_mirror");
    let reg = Registry::start(Kind::TlsAuth);
    reg.push_tiny(DOCKER_REPO);
    let node = Node::new();
    // The admin's own auth file: its other key must survive apply and revert.
    let admin_auth = "{\n\t\"auths\": {\n\t\t\"other.example\": {\n\t\t\t\"auth\": \"b3RoZXI6c2VjcmV0\"\n\t\t}\n\t}\n}\n";
    let auth = node.etc().join("auth.json");
    std::fs::write(&auth, admin_auth).unwrap();
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut s = secret_for(
        &reg,
        &format!("docker.io::{}/airgap-images/docker.io", reg.host()),
    );
    s.username = USER.into();
    s.password = PASSWORD.into();
    s.ca_cert = reg.tls.as_ref().unwrap().ca_pem();
    let secret = node.secret(&s);
    let token = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    };
    let d = node.regmirror("diff", &["--secret-file", secret.to_str().unwrap()]);
    assert_eq!(d.code, 1, "{d}");
    let a = node.apply(&secret);
    for r in [&d, &a] {
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(
            !all.contains(PASSWORD) && !all.contains(&token) && !all.contains("b3RoZXI6c2VjcmV0"),
            "a credential was printed:\n{r}"
        );
    }
    assert!(d.stdout.contains("\"auth\": \"***\""), "{d}");
    let ca = node.etc().join("certs.d").join(reg.host()).join("ca.crt");
    assert!(ca.is_file(), "no {}", ca.display());
    let meta = std::fs::metadata(&auth).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&auth).unwrap()).unwrap();
    assert_eq!(v["auths"]["other.example"]["auth"], "b3RoZXI6c2VjcmV0");
    assert_eq!(v["auths"][reg.host()]["auth"], token.as_str());
    assert_pulled_through_mirror(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    // Revert: the admin's auth file byte for byte, no CA, no drop-in.
    let r = node.regmirror("revert", &[]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(std::fs::read_to_string(&auth).unwrap(), admin_auth);
    assert!(!ca.exists() && !ca.parent().unwrap().exists());
}

#[test]
fn no_mirror_entry_writes_no_mirror() {
    podman_test!("no_mirror_entry_writes_no_mirror");
    let reg = Registry::start(Kind::Plain);
    reg.push_tiny(DOCKER_REPO);
    reg.push_tiny("airgap-images/quay.io/e2e/tiny");
    let node = Node::new();
    let mut s = secret_for(
        &reg,
        &format!(
            "docker.io::{}/airgap-images/docker.io,quay.io::",
            reg.host()
        ),
    );
    s.insecure = true;
    node.apply(&node.secret(&s));
    let conf =
        std::fs::read_to_string(node.etc().join("registries.conf.d/50-regmirror.conf")).unwrap();
    let quay = conf.split("prefix = \"quay.io\"").nth(1).expect(&conf);
    assert!(!quay.contains("[[registry.mirror]]"), "{conf}");
    assert_pulled_through_mirror(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    let mark = reg.mark();
    let r = node.pull("quay.io/e2e/tiny:1");
    assert_ne!(
        r.code, 0,
        "quay.io has no mirror and there is no internet:\n{r}"
    );
    assert!(
        reg.hits(mark, QUAY_PATH).is_empty(),
        "quay.io went to the mirror:\n{}",
        reg.log_since(mark)
    );
}

#[test]
fn revert_is_byte_exact_and_pulls_stop_using_the_mirror() {
    podman_test!("revert_is_byte_exact_and_pulls_stop_using_the_mirror");
    let reg = Registry::start(Kind::Plain);
    reg.push_tiny(DOCKER_REPO);
    let node = Node::new();
    // An admin file at the CA's path, and an auth file regmirror does not know.
    let ca_dir = node.etc().join("certs.d").join(reg.host());
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::write(ca_dir.join("ca.crt"), "admin's own bytes\r\n").unwrap();
    std::fs::set_permissions(
        ca_dir.join("ca.crt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::write(node.etc().join("auth.json"), "{\"auths\":{}}").unwrap();
    let before = node.snapshot();
    let mut s = secret_for(
        &reg,
        &format!("docker.io::{}/airgap-images/docker.io", reg.host()),
    );
    s.insecure = true;
    s.username = "u".into();
    s.password = "p".into();
    s.ca_cert = support::tls::ca_signed(&node.dir.path().join("tls")).ca_pem();
    let secret = node.secret(&s);
    std::fs::remove_dir_all(node.dir.path().join("tls")).unwrap();
    node.apply(&secret);
    assert_ne!(node.snapshot(), before);
    assert_pulled_through_mirror(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    let r = node.regmirror("revert", &[]);
    assert_eq!(r.code, 0, "{r}");
    let after = node.snapshot();
    let state = PathBuf::from("state");
    let strip = |m: &BTreeMap<PathBuf, (u32, Option<Vec<u8>>)>| {
        m.iter()
            .filter(|(p, _)| !p.starts_with(&state))
            .map(|(p, v)| (p.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(strip(&after), strip(&before), "revert is not byte-exact");
    assert!(!node.dir.path().join("state/podman-state.json").exists());
    let mark = reg.mark();
    let p = node.pull("docker.io/library/tiny:1");
    assert_ne!(p.code, 0, "no mirror after revert and no internet:\n{p}");
    assert!(
        reg.hits(mark, DOCKER_PATH).is_empty(),
        "{}",
        reg.log_since(mark)
    );
    // A second revert has nothing to do.
    let r = node.regmirror("revert", &[]);
    assert!(r.code == 0 && r.stdout.contains("nothing to change"), "{r}");
}

#[test]
fn wildcard_is_refused_with_nothing_written() {
    podman_test!("wildcard_is_refused_with_nothing_written");
    let node = Node::new();
    let before = node.snapshot();
    let s = Secret::new("127.0.0.1:5000", "*::127.0.0.1:5000/airgap-images");
    let secret = node.secret(&s);
    for sub in ["diff", "apply"] {
        let r = node.regmirror(sub, &["--secret-file", secret.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{sub} must refuse:\n{r}");
        assert!(
            r.stderr.contains("\"*::127.0.0.1:5000/airgap-images\"")
                && r.stderr.contains("wildcard"),
            "{r}"
        );
    }
    assert_eq!(node.snapshot(), before, "a refused apply wrote something");
    assert!(!node.dir.path().join("state").exists());
}

#[test]
fn resolve_first_url_is_the_mirror_podman_pulled() {
    podman_test!("resolve_first_url_is_the_mirror_podman_pulled");
    let (reg, node, s) = plain_docker_io_mirror();
    node.apply(&node.secret(&s));
    let r = node.resolve("docker.io/library/tiny:1");
    assert_eq!(r["schema"], "regmirror.resolve-podman/v1");
    let first = r["attempts"][0]["url"].as_str().expect("a first URL");
    assert_eq!(
        first,
        format!("http://{}{DOCKER_PATH}", reg.host()),
        "resolve: {r:#}"
    );
    assert_eq!(r["attempts"][0]["kind"], "mirror");
    assert_eq!(
        r["attempts"][1]["url"],
        "https://registry-1.docker.io/v2/library/tiny/manifests/1"
    );
    // The path of that URL is what the real pull asked the mirror for.
    let path = first.split_once(&reg.host()).unwrap().1;
    assert_pulled_through_mirror(&node, &reg, "docker.io/library/tiny:1", path);
}

/// CRI-O is not packaged here: its reload (SIGHUP, what `systemctl reload crio` sends) is
/// proven against a stand-in process that records every SIGHUP it gets. The files are the
/// ones the podman tests prove with real pulls.
#[test]
fn crio_reload_sends_sighup_only_when_a_file_changed() {
    let node = Node::new();
    let d = node.dir.path();
    let (pid_file, hups) = (d.join("crio.pid"), d.join("hups"));
    let script = format!(
        "trap 'echo hup >> {}' HUP; echo $$ > {}; while :; do sleep 0.05; done",
        hups.display(),
        pid_file.display()
    );
    let mut standin = Command::new("sh").args(["-c", &script]).spawn().unwrap();
    let count = || {
        std::fs::read_to_string(&hups)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let wait_for = |n: usize| {
        for _ in 0..100 {
            if count() >= n {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        count()
    };
    for _ in 0..100 {
        if std::fs::read_to_string(&pid_file).is_ok_and(|p| p.ends_with('\n')) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let s = Secret::new(
        "127.0.0.1:5000",
        "docker.io::127.0.0.1:5000/airgap/docker.io",
    );
    let secret = node.secret(&s);
    let reload = [
        "--reload",
        "auto",
        "--crio-pid-file",
        pid_file.to_str().unwrap(),
    ];
    let mut args = vec!["--secret-file", secret.to_str().unwrap()];
    args.extend(reload);
    let d1 = node.regmirror_as("crio", "diff", &args[..2]);
    assert!(
        d1.code == 1
            && d1.stdout.contains("runtime crio")
            && d1.stdout.contains("reload needed: yes"),
        "{d1}"
    );
    let a = node.regmirror_as("crio", "apply", &args);
    assert!(a.code == 0 && a.stdout.contains("SIGHUP to"), "{a}");
    assert_eq!(wait_for(1), 1, "one SIGHUP after a change:\n{a}");
    // Unchanged: no reload.
    let a = node.regmirror_as("crio", "apply", &args);
    assert!(a.code == 0 && a.stdout.contains("nothing to change"), "{a}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(count(), 1, "an unchanged apply reloaded:\n{a}");
    // --reload none (the default) writes and says a reload is needed.
    let r = node.regmirror_as("crio", "revert", &reload);
    assert!(r.code == 0 && r.stdout.contains("removed"), "{r}");
    assert_eq!(wait_for(2), 2, "one SIGHUP after revert:\n{r}");
    let a = node.regmirror_as("crio", "apply", &args[..2]);
    assert!(
        a.code == 0 && a.stdout.contains("not reloaded (--reload none)"),
        "{a}"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(count(), 2);
    // `auto` picks crio when only CRI-O's socket exists (here: a plain file at that path).
    let sock = d.join("crio.sock");
    std::fs::write(&sock, "").unwrap();
    let auto = node.regmirror_as(
        "auto",
        "diff",
        &[
            "--secret-file",
            secret.to_str().unwrap(),
            "--containerd-socket",
            d.join("no-containerd.sock").to_str().unwrap(),
            "--crio-socket",
            sock.to_str().unwrap(),
        ],
    );
    assert!(
        auto.code == 0
            && auto
                .stderr
                .contains("runtime auto: crio (no containerd socket; CRI-O's socket exists)"),
        "{auto}"
    );
    let r = node.regmirror_as("crio", "revert", &[]);
    assert_eq!(r.code, 0, "{r}");
    let _ = standin.kill();
    let _ = standin.wait();
}
