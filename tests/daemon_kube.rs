//! `regmirror run` with the Kubernetes source, against a FAKE API server (tests/support_kube) that
//! speaks the real list/watch wire protocol: create, update, invalid update, delete, connection
//! drop, 410 Gone, an API outage — and the files on disk are right at each step. With NODE_NAME,
//! Events and the spec-hash annotation reach the Node; `/metrics` has `regmirror_build_info`
//! and the duration histograms. `regmirror diff --from-cluster` (text and `-o json`) reads the
//! Secret with one GET and changes nothing, anywhere.

mod common;
mod support_kube;

use common::agent::AgentProcess;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support_kube::FakeApiServer;

const CONFIG: &str = "version = 2\n\n# admin settings\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.9\"\n";
const NS: &str = "jet-system";
const NAME: &str = "registry-info";

/// The Secret's data: harbor.example.org mirrors, INSECURE as given, with credentials.
fn data(mirrors: &str, insecure: &str) -> BTreeMap<String, String> {
    let mut pairs = common::base_pairs(mirrors);
    common::set(&mut pairs, "INSECURE", insecure);
    common::set(&mut pairs, "USERNAME", "robot");
    common::set(&mut pairs, "PASSWORD", "kube-secret-pw-123");
    pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

struct Agent {
    process: AgentProcess,
    dir: PathBuf,
}

/// A kubeconfig in `dir` for the fake API server (plain http, no user), its path.
fn write_kubeconfig(dir: &Path, api: &FakeApiServer) -> PathBuf {
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: none}}\ncurrent-context: fake\nusers:\n- name: none\n  user: {{}}\n",
            api.url()
        ),
    )
    .unwrap();
    kubeconfig
}

impl Agent {
    fn start(dir: &Path, api: &FakeApiServer, node: Option<&str>) -> Agent {
        Agent::spawn(dir, api, node, false)
    }
    /// With `listen`: `--listen 127.0.0.1:<port>`, returns once `/healthz` answers.
    fn spawn(dir: &Path, api: &FakeApiServer, node: Option<&str>, listen: bool) -> Agent {
        let kubeconfig = write_kubeconfig(dir, api);
        let make = || {
            let mut cmd = common::agent_command(dir);
            cmd.args(["--kubeconfig", kubeconfig.to_str().unwrap()])
                .env_remove("NODE_NAME")
                .env("REGMIRROR_LOG", "debug");
            if let Some(n) = node {
                cmd.env("NODE_NAME", n);
            }
            cmd
        };
        Agent {
            process: AgentProcess::spawn(make, &dir.join("agent.log"), listen),
            dir: dir.to_path_buf(),
        }
    }
    fn config(&self) -> String {
        std::fs::read_to_string(self.dir.join("config.toml")).unwrap_or_default()
    }
    fn log(&self) -> String {
        self.process.log()
    }
    /// Wait (bounded) until config.toml satisfies `cond`.
    async fn until(&self, what: &str, cond: impl Fn(&str) -> bool) -> Duration {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if cond(&self.config()) {
                return t0.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "not within 20 s: {what}\nconfig:\n{}\nlog:\n{}",
            self.config(),
            self.log()
        );
    }
    fn stop(&mut self) -> Option<i32> {
        self.process.stop().and_then(|s| s.code())
    }
}

const A: &str = "docker.io::harbor.example.org/airgap-images/docker.io,quay.io::harbor.example.org/airgap-images/quay.io";
const B: &str = "docker.io::harbor.example.org/airgap-images/docker.io";
const C: &str = "docker.io::harbor.example.org/airgap-images/docker.io,gcr.io::harbor.example.org/airgap-images/gcr.io";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_lifecycle_keeps_files_right_at_each_step() {
    let api = FakeApiServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("config.toml"), CONFIG).unwrap();
    let mut agent = Agent::start(tmp.path(), &api, None);

    // The Secret does not exist yet: a successful list without it changes nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(agent.config(), CONFIG);

    // create
    api.create_secret(NS, NAME, data(A, "false"));
    let t = agent
        .until("create applied", |c| c.contains("mirrors.\"quay.io\""))
        .await;
    eprintln!("create → config.toml: {t:?}");

    // update
    api.update_secret(NS, NAME, data(B, "false"));
    agent
        .until("update applied", |c| {
            c.contains("docker.io") && !c.contains("quay.io")
        })
        .await;

    // invalid update: nothing changes on disk
    let before = agent.config();
    api.update_secret(NS, NAME, data(A, "sometimes"));
    let t0 = Instant::now();
    while !agent.log().contains("INSECURE") && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(agent.log().contains("Secret rejected"), "{}", agent.log());
    assert_eq!(agent.config(), before, "an invalid Secret changes no byte");

    // connection drop: the watch resumes and sees the next update
    api.drop_connections();
    api.update_secret(NS, NAME, data(C, "false"));
    agent
        .until("update after a dropped connection", |c| {
            c.contains("gcr.io")
        })
        .await;

    // an API outage is never a deletion
    api.set_unavailable(true);
    api.drop_connections();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        agent.config().contains("gcr.io"),
        "outage kept the applied state"
    );
    api.set_unavailable(false);

    // 410 Gone: history compacted while disconnected → relist, sees the current object
    api.update_secret(NS, NAME, data(A, "false"));
    api.compact_history();
    api.drop_connections();
    agent
        .until("state after 410 relist", |c| {
            c.contains("quay.io") && !c.contains("gcr.io")
        })
        .await;

    // delete → revert (default): the admin's bytes exactly
    api.delete_secret(NS, NAME);
    let t = agent.until("delete reverted", |c| c == CONFIG).await;
    eprintln!("delete → reverted: {t:?}");

    let log = agent.log();
    assert!(
        !log.contains("kube-secret-pw-123"),
        "PASSWORD in the debug log"
    );
    assert_eq!(agent.stop(), Some(0));
    let watches = api.requests().iter().filter(|r| r.is_watch()).count();
    let lists = api.requests().iter().filter(|r| r.is_secret_list()).count();
    eprintln!("{lists} list(s), {watches} watch(es) over the whole lifecycle");
    assert!(lists >= 2, "the 410 made it relist");
    for r in api.requests() {
        if r.is_watch() || r.is_secret_list() {
            assert_eq!(
                r.param("fieldSelector"),
                Some("metadata.name=registry-info")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_events_and_spec_hash_annotation() {
    let api = FakeApiServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("config.toml"), CONFIG).unwrap();
    api.create_secret(NS, NAME, data(A, "false"));
    let mut agent = Agent::start(tmp.path(), &api, Some("node-a"));
    agent.until("applied", |c| c.contains("quay.io")).await;

    let wait_for = |what: &'static str, f: &dyn Fn() -> bool| {
        let t0 = Instant::now();
        while !f() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "not within 10 s: {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let reasons = || -> Vec<String> {
        api.events()
            .iter()
            .filter_map(|e| e.get("reason").and_then(|r| r.as_str()).map(str::to_string))
            .collect()
    };
    wait_for("Applied event", &|| {
        reasons().iter().any(|r| r == "RegistryConfigApplied")
    });
    wait_for("annotation", &|| {
        api.node_patches().iter().any(|p| {
            p.node == "node-a"
                && p.body["metadata"]["annotations"]["regmirror.io/spec-hash"].is_string()
        })
    });
    api.update_secret(NS, NAME, data(A, "no-way"));
    wait_for("Rejected event", &|| {
        reasons().iter().any(|r| r == "RegistryConfigRejected")
    });
    let ev = api
        .events()
        .into_iter()
        .find(|e| e["reason"] == "RegistryConfigRejected")
        .unwrap();
    let note = ev["note"]
        .as_str()
        .or(ev["message"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(note.contains("INSECURE"), "the Event says which key: {ev}");
    assert_eq!(ev["regarding"]["kind"], "Node", "{ev}");
    let all = serde_json::to_string(&api.events()).unwrap() + &format!("{:?}", api.node_patches());
    assert!(
        !all.contains("kube-secret-pw-123"),
        "PASSWORD in Events or patches"
    );
    assert_eq!(agent.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_build_info_and_duration_histograms() {
    let api = FakeApiServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("config.toml"), CONFIG).unwrap();
    api.create_secret(NS, NAME, data(A, "false"));
    let mut agent = Agent::spawn(tmp.path(), &api, None, true);
    agent.until("applied", |c| c.contains("quay.io")).await;
    let metrics = agent.process.metrics();
    let series = format!(
        "regmirror_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    let build_info = metrics
        .lines()
        .find(|l| l.starts_with("regmirror_build_info{"))
        .unwrap_or_else(|| panic!("no regmirror_build_info:\n{metrics}"));
    // git_sha is there only when the build set REGMIRROR_GIT_SHA.
    assert!(
        build_info == format!("{series} 1")
            || (build_info.contains("git_sha=\"") && build_info.ends_with(" 1")),
        "{build_info}"
    );
    for family in [
        "regmirror_reconcile_duration_seconds",
        "regmirror_containerd_restart_duration_seconds",
        "regmirror_health_check_duration_seconds",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {family} histogram")),
            "{family} missing:\n{metrics}"
        );
        for sample in ["_bucket{le=\"+Inf\"}", "_count", "_sum"] {
            assert!(
                metrics
                    .lines()
                    .any(|l| l.starts_with(&format!("{family}{sample} "))),
                "{family}{sample} missing:\n{metrics}"
            );
        }
    }
    assert_eq!(agent.stop(), Some(0));
}

/// `regmirror diff --from-cluster` on the containerd files in `dir`, with `extra` arguments:
/// (exit code, stdout, stderr). No REGMIRROR_* variable leaks in; the version is `unknown`.
async fn diff_from_cluster(dir: &Path, kubeconfig: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(common::BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("REGMIRROR_") || k == "KUBECONFIG" {
            cmd.env_remove(k);
        }
    }
    cmd.env("NO_COLOR", "1")
        .env("REGMIRROR_CONTAINERD_VERSION", "unknown")
        .arg("diff")
        .args(["--config", dir.join("config.toml").to_str().unwrap()])
        .args(["--certs-dir", dir.join("certs.d").to_str().unwrap()])
        .args(["--state-dir", dir.join("state").to_str().unwrap()])
        .args(extra);
    if !extra.contains(&"--secret-file") {
        cmd.args([
            "--from-cluster",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ]);
    }
    let o = tokio::task::spawn_blocking(move || cmd.output().expect("run regmirror"))
        .await
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_from_cluster_reads_the_secret_with_one_get_and_changes_nothing() {
    use base64::Engine as _;
    let api = FakeApiServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("config.toml"), CONFIG).unwrap();
    let kubeconfig = write_kubeconfig(dir, &api);
    let rv = api.create_secret(NS, NAME, data(A, "false"));
    let before = common::tree(dir);
    let secrets = [
        "kube-secret-pw-123".to_string(),
        base64::engine::general_purpose::STANDARD.encode("robot:kube-secret-pw-123"),
    ];
    let no_secret = |what: &str, text: &str| {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "PASSWORD in {what}:\n{text}");
        }
    };

    // Text: the same diff as from a file, plus where the Secret came from.
    let (code, out, err) = diff_from_cluster(dir, &kubeconfig, &[]).await;
    assert_eq!(code, 1, "changes → exit 1\n{out}\n{err}");
    assert!(
        out.contains("+++ ") && out.contains("harbor.example.org"),
        "{out}"
    );
    assert!(out.contains("containerd restart needed: yes"), "{out}");
    assert!(
        err.contains(&format!("Secret {NS}/{NAME} from {}", api.url()))
            && err.contains(&format!("resourceVersion {rv}")),
        "{err}"
    );
    no_secret("diff", &(out.clone() + &err));

    // JSON (regmirror.diff/v1).
    let (code, out, err) = diff_from_cluster(dir, &kubeconfig, &["-o", "json"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    no_secret("diff -o json", &out);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["schema"], "regmirror.diff/v1");
    assert_eq!(v["changed"], true);
    assert_eq!(
        v["mode"], "legacy",
        "a version-2 config.toml, containerd unknown: {v}"
    );
    assert_eq!(v["restart_needed"], true);
    assert_eq!(v["containerd"]["version"], serde_json::Value::Null);
    assert_eq!(
        v["source"],
        serde_json::json!({"kind": "cluster", "server": api.url().trim_end_matches('/').to_string() + "/",
            "namespace": NS, "name": NAME, "resource_version": rv})
    );
    let files = v["files"].as_array().unwrap();
    let config = dir.join("config.toml").display().to_string();
    let cfg = files
        .iter()
        .find(|f| f["path"] == config.as_str())
        .unwrap_or_else(|| panic!("config.toml not in {v}"));
    assert_eq!(cfg["action"], "modify");
    assert_eq!(
        cfg["credentials"], true,
        "config.toml gets registry.configs auth"
    );
    assert_eq!(cfg["mode"], "0600");
    assert!(
        cfg["diff"]
            .as_str()
            .unwrap()
            .contains("mirrors.\"quay.io\""),
        "{cfg}"
    );
    assert!(cfg["diff"].as_str().unwrap().contains("\"***\""), "{cfg}");

    // The same Secret from a manifest: the same document but for `source`.
    let mut pairs: Vec<(String, String)> = data(A, "false").into_iter().collect();
    pairs.sort();
    let manifest = dir.join("secret.yaml");
    std::fs::write(&manifest, common::manifest(&pairs)).unwrap();
    let (code, file_out, err) = diff_from_cluster(
        dir,
        &kubeconfig,
        &["--secret-file", manifest.to_str().unwrap(), "-o", "json"],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    let mut f: serde_json::Value = serde_json::from_str(&file_out).unwrap();
    assert_eq!(
        f["source"],
        serde_json::json!({"kind": "file", "path": manifest.display().to_string()})
    );
    let mut c = v.clone();
    f["source"] = serde_json::Value::Null;
    c["source"] = serde_json::Value::Null;
    assert_eq!(f, c, "file and cluster give the same plan");
    std::fs::remove_file(&manifest).unwrap();

    // A Secret that is not there, a source given twice, an unreachable API: exit 2.
    let (code, _, err) = diff_from_cluster(dir, &kubeconfig, &["--secret-name", "nope"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("Secret jet-system/nope not found"), "{err}");
    let (code, _, err) = diff_from_cluster(
        dir,
        &kubeconfig,
        &["--from-cluster", "--secret-file", "/nonexistent.yaml"],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
    api.set_unavailable(true);
    let (code, _, err) = diff_from_cluster(dir, &kubeconfig, &["--request-timeout", "5s"]).await;
    api.set_unavailable(false);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("GET Secret {NS}/{NAME}")), "{err}");

    // Read-only: nothing on disk changed, and the API saw GETs of the one Secret only.
    assert_eq!(common::tree(dir), before, "diff wrote nothing");
    for r in api.requests() {
        assert_eq!(r.method, "GET", "{r:?}");
        assert!(
            r.path == format!("/api/v1/namespaces/{NS}/secrets/{NAME}")
                || r.path == format!("/api/v1/namespaces/{NS}/secrets/nope"),
            "{r:?}"
        );
    }
}
