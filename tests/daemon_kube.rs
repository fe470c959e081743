//! `regmirror run` with the Kubernetes source, against a FAKE API server (tests/support_kube) that
//! speaks the real list/watch wire protocol: create, update, invalid update, delete, connection
//! drop, 410 Gone, an API outage — and the files on disk are right at each step. With NODE_NAME,
//! Events and the spec-hash annotation reach the Node.

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

impl Agent {
    fn start(dir: &Path, api: &FakeApiServer, node: Option<&str>) -> Agent {
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: none}}\ncurrent-context: fake\nusers:\n- name: none\n  user: {{}}\n",
                api.url()
            ),
        )
        .unwrap();
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
            process: AgentProcess::spawn(make, &dir.join("agent.log"), false),
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
