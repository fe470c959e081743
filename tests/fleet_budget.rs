//! The fleet's restart budget, with 20 real agent processes (`regmirror run`, kube source) against
//! the FAKE API server (tests/support_kube: real wire protocol, Leases with resourceVersion
//! conflicts, Node status conditions) and one real containerd 1.7 whose CRI answers their health
//! checks and load verification (its `config_path` is the certs dir all 20 write to).
//!
//! Each agent's reload command is a script that logs `start`/`end` with a timestamp to a shared
//! timeline and sleeps, standing in for a containerd restart; the timeline is the proof:
//! 1. a Secret change: all 20 converge, never more than N = 2 restarts at once;
//! 2. every restart fails its health check (the script exits 1): the first nodes roll back and
//!    halt the rollout: at most N nodes restart for that spec, the rest say `RolloutHalted`;
//! 3. a changed Secret rolls out again; an agent killed while it holds a slot frees the slot
//!    after the lease duration (3 s), and the others converge.
//!
//! Bounded: every wait has a deadline; the whole test takes well under two minutes.

mod support;
mod support_kube;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::agent::AgentProcess;
use support::containerd::{Base, Containerd, Release};
use support_kube::FakeApiServer;

const NS: &str = "jet-system";
const NODES: usize = 20;
const SLOTS: usize = 2;
const LEASE_SECS: u64 = 3;

fn secret(host: &str) -> BTreeMap<String, String> {
    [
        ("DOMAIN", host.to_string()),
        ("BASE_PATH", "airgap-images".into()),
        ("INSECURE", "false".into()),
        (
            "MIRROR_REGISTRIES",
            format!("docker.io::{host}/airgap-images/docker.io"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The restart stand-in: log start/end, sleep; `fail` (a file) makes it exit 1, `hang` makes it
/// sleep 30 s (the agent gets killed meanwhile).
fn script(dir: &Path) -> PathBuf {
    let path = dir.join("restart.sh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nT={t}\necho \"start $NODE_NAME $(date +%s.%N)\" >> $T\n[ -e {d}/hang-$NODE_NAME ] && sleep 30\nsleep 0.4\necho \"end $NODE_NAME $(date +%s.%N)\" >> $T\n[ -e {d}/fail ] && exit 1\nexit 0\n",
            t = dir.join("timeline").display(),
            d = dir.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn kubeconfig(dir: &Path, api: &FakeApiServer) -> PathBuf {
    let p = dir.join("kubeconfig");
    std::fs::write(
        &p,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: none}}\ncurrent-context: fake\nusers:\n- name: none\n  user: {{}}\n",
            api.url()
        ),
    )
    .unwrap();
    p
}

struct Fleet {
    dir: tempfile::TempDir,
    ctd: Containerd,
    agents: Vec<Option<AgentProcess>>,
}

impl Fleet {
    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{i}"))
    }

    fn start_agent(&self, i: usize, kubeconfig: &Path, script: &Path) -> AgentProcess {
        let d = self.node_dir(i);
        std::fs::create_dir_all(&d).unwrap();
        if !d.join("config.toml").exists() {
            std::fs::write(d.join("config.toml"), "version = 2\n").unwrap();
        }
        let make = || {
            let mut cmd = Command::new(support::cli::BIN);
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("REGMIRROR_") {
                    cmd.env_remove(k);
                }
            }
            cmd.arg("run")
                .args(["--kubeconfig", kubeconfig.to_str().unwrap()])
                .args(["--config", d.join("config.toml").to_str().unwrap()])
                .args(["--certs-dir", self.ctd.certs_dir.to_str().unwrap()])
                .args(["--state-dir", d.join("state").to_str().unwrap()])
                .args(["--containerd-socket", self.ctd.socket.to_str().unwrap()])
                .args(["--mode", "hosts", "--host-pid", "0"])
                .args(["--reload", &format!("command:{}", script.display())])
                .args(["--restart-jitter", "0", "--debounce", "100ms"])
                .args(["--restart-budget", &SLOTS.to_string()])
                .args(["--restart-lease", &format!("{LEASE_SECS}s")])
                .args(["--health-timeout", "5s"])
                .env("PATH", self.ctd.release.path_env())
                .env("NODE_NAME", format!("node-{i}"))
                .env("REGMIRROR_LOG", "info");
            cmd
        };
        AgentProcess::spawn(make, &d.join("agent.log"), false)
    }

    /// Stop every agent and make its node fresh again (config.toml without regmirror, no
    /// state), so the next Secret is a first apply that needs a restart (in hosts mode only
    /// turning `config_path` on does).
    fn reset(&mut self) {
        for a in self.agents.iter_mut().flatten() {
            a.stop();
        }
        self.agents.clear();
        for i in 0..NODES {
            let d = self.node_dir(i);
            std::fs::write(d.join("config.toml"), "version = 2\n").unwrap();
            let _ = std::fs::remove_dir_all(d.join("state"));
        }
        let _ = std::fs::remove_file(self.dir.path().join("timeline"));
    }

    /// For each node whose condition is not True: its condition message and its log's tail.
    fn not_ready_report(&self, api: &FakeApiServer) -> String {
        let mut out = String::new();
        for i in 0..NODES {
            let node = format!("node-{i}");
            let c = ready_condition(api, &node);
            if c["status"] == "True" {
                continue;
            }
            let log =
                std::fs::read_to_string(self.node_dir(i).join("agent.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            out.push_str(&format!(
                "--- {node}: {}\n{}\n",
                c["message"],
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        out
    }

    fn start_all(&mut self, kubeconfig: &Path, script: &Path) {
        for i in 0..NODES {
            let a = self.start_agent(i, kubeconfig, script);
            self.agents.push(Some(a));
        }
    }

    fn timeline(&self) -> Vec<(String, String, f64)> {
        std::fs::read_to_string(self.dir.path().join("timeline"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((
                    it.next()?.to_string(),
                    it.next()?.to_string(),
                    it.next()?.parse().ok()?,
                ))
            })
            .collect()
    }
}

/// The most restarts running at the same moment, from `start`/`end` lines (a start without an
/// end counts until the end of the timeline).
fn max_concurrent(t: &[(String, String, f64)]) -> usize {
    let (mut now, mut max) = (0usize, 0usize);
    for (kind, _, _) in t {
        if kind == "start" {
            now += 1;
            max = max.max(now);
        } else {
            now = now.saturating_sub(1);
        }
    }
    max
}

/// The node's RegistryMirrorReady condition (JSON null when it has none).
fn ready_condition(api: &FakeApiServer, node: &str) -> serde_json::Value {
    let n = api.node(node).unwrap_or_default();
    n["status"]["conditions"]
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["type"] == "RegistryMirrorReady")
                .cloned()
        })
        .unwrap_or_default()
}

fn condition(api: &FakeApiServer, node: &str) -> (String, String) {
    let c = ready_condition(api, node);
    (
        c["status"].as_str().unwrap_or("").into(),
        c["reason"].as_str().unwrap_or("").into(),
    )
}

fn wait(what: &str, within: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !ok() {
        assert!(
            t0.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    t0.elapsed()
}

fn print_timeline(label: &str, t: &[(String, String, f64)]) {
    let t0 = t.first().map_or(0.0, |x| x.2);
    eprintln!(
        "--- timeline: {label} ({} lines, max {} at once)",
        t.len(),
        max_concurrent(t)
    );
    for (kind, node, at) in t {
        eprintln!("  {:>7.3} s  {kind:<5} {node}", at - t0);
    }
}

/// Nodes whose condition is True (Applied, or UpToDate once its own write was seen).
fn ready(api: &FakeApiServer) -> usize {
    (0..NODES)
        .filter(|i| condition(api, &format!("node-{i}")).0 == "True")
        .count()
}

#[test]
fn at_most_n_restarts_at_once_a_failure_halts_the_rollout_and_dead_holders_expire() {
    if !support::prerequisites("fleet_budget") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt.block_on(FakeApiServer::start());
    let dir = support::temp_dir("fleet");
    let mut ctd = Containerd::prepare_on(Release::V1_7, Base::Debian);
    // containerd reads the certs dir every agent writes to (config_path), so each agent's load
    // verification (CRI Status shows the config_path it wrote) holds.
    let mut doc: toml_edit::DocumentMut = ctd.config_text().parse().unwrap();
    support::containerd::cri_registry(&mut doc)["config_path"] =
        toml_edit::value(ctd.certs_dir.to_str().unwrap());
    ctd.write_config(&doc.to_string());
    ctd.start();
    let mut fleet = Fleet {
        dir,
        ctd,
        agents: Vec::new(),
    };
    let kc = kubeconfig(fleet.dir.path(), &api);
    let sh = script(fleet.dir.path());
    api.create_secret(NS, "registry-info", secret("a.example.org"));
    let t0 = Instant::now();
    let conditions = |api: &FakeApiServer| -> Vec<(String, String)> {
        (0..NODES)
            .map(|i| condition(api, &format!("node-{i}")))
            .collect()
    };
    fleet.start_all(&kc, &sh);

    // 1. First rollout: all converge, at most SLOTS at once.
    let t_wait = Instant::now();
    while ready(&api) < NODES && t_wait.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    if ready(&api) < NODES {
        let reqs: Vec<String> = api
            .requests()
            .iter()
            .filter(|r| r.path.contains("/nodes/"))
            .map(|r| format!("{} {}", r.method, r.path))
            .take(10)
            .collect();
        panic!(
            "not all applied: {:?}\nnode requests: {reqs:#?}\nnode-0: {}\n{}",
            conditions(&api),
            api.node("node-0").unwrap_or_default(),
            fleet.not_ready_report(&api)
        );
    }
    let took = t_wait.elapsed();
    eprintln!("node-0: {}", api.node("node-0").unwrap_or_default());
    let t1 = fleet.timeline();
    print_timeline("first rollout", &t1);
    eprintln!(
        "rollout 1: {NODES} nodes applied in {took:.2?} (agents started {:.2?} before)",
        t0.elapsed() - took
    );
    assert_eq!(
        t1.iter().filter(|x| x.0 == "start").count(),
        NODES,
        "one restart per node"
    );
    assert!(
        max_concurrent(&t1) <= SLOTS,
        "more than {SLOTS} restarts at once"
    );
    assert!(max_concurrent(&t1) >= 1);
    let lease_writes = api.lease_log().len();
    eprintln!("{lease_writes} Lease writes so far");

    // 2. Every restart fails: the first ones roll back and halt the rest.
    fleet.reset();
    std::fs::write(fleet.dir.path().join("fail"), "").unwrap();
    api.update_secret(NS, "registry-info", secret("b.example.org"));
    fleet.start_all(&kc, &sh);
    // Every node either restarted (and failed), or was halted without restarting. The 20
    // agents share one certs dir (one containerd answers them all), so when two restarts fail
    // together, one rollback can take out the hosts.toml the other wrote: that node's rollback
    // is then refused as superseded, and it re-writes the file without a restart (condition
    // True). What must hold is the fleet property: at most SLOTS nodes restart, all others halt.
    let restarted = |t: &[(String, String, f64)]| -> Vec<String> {
        let mut n: Vec<String> = t
            .iter()
            .filter(|x| x.0 == "start")
            .map(|x| x.1.clone())
            .collect();
        n.sort();
        n.dedup();
        n
    };
    let settled = |i: usize, restarted: &[String]| {
        let name = format!("node-{i}");
        let (status, reason) = condition(&api, &name);
        if restarted.contains(&name) {
            matches!(reason.as_str(), "RolledBack" | "SpecHeld") || status == "True"
        } else {
            reason == "RolloutHalted"
        }
    };
    let t_halt = Instant::now();
    while !(0..NODES).all(|i| settled(i, &restarted(&fleet.timeline()))) {
        assert!(
            t_halt.elapsed() < Duration::from_secs(60),
            "timed out waiting for the halt to reach every node: {:?}, restarted {:?}",
            conditions(&api),
            restarted(&fleet.timeline())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let t2 = fleet.timeline();
    print_timeline("failing rollout", &t2);
    let failed_restarts = t2.iter().filter(|x| x.0 == "start").count();
    let rolled = restarted(&t2);
    eprintln!(
        "rollout 2 (failing): {failed_restarts} restart(s) (each rollback restarts again) on {rolled:?}, halted on the other {}",
        NODES - rolled.len()
    );
    assert!(!rolled.is_empty() && rolled.len() <= SLOTS, "{rolled:?}");
    let halted = (0..NODES)
        .filter(|i| condition(&api, &format!("node-{i}")).1 == "RolloutHalted")
        .count();
    assert_eq!(halted, NODES - rolled.len(), "{:?}", conditions(&api));
    let halt = api.lease(NS, "regmirror-restart-halt").expect("halt Lease");
    assert!(
        halt["metadata"]["annotations"]["regmirror.io/halted-spec"].is_string(),
        "{halt}"
    );
    std::fs::remove_file(fleet.dir.path().join("fail")).unwrap();

    // 3. A new Secret rolls out again. The victim starts first and takes a slot; it is killed
    //    (SIGKILL) while it holds it: its Lease must be taken over only once it expired.
    fleet.reset();
    let victim = 7;
    std::fs::write(fleet.dir.path().join(format!("hang-node-{victim}")), "").unwrap();
    api.update_secret(NS, "registry-info", secret("c.example.org"));
    let mut victim_agent = fleet.start_agent(victim, &kc, &sh);
    wait("the victim to hold a slot", Duration::from_secs(30), || {
        fleet
            .timeline()
            .iter()
            .any(|x| x.0 == "start" && x.1 == format!("node-{victim}"))
    });
    let held = |api: &FakeApiServer| -> Option<String> {
        (0..SLOTS)
            .map(|i| format!("regmirror-restart-{i}"))
            .find(|n| {
                api.lease(NS, n)
                    .is_some_and(|l| l["spec"]["holderIdentity"] == format!("node-{victim}"))
            })
    };
    let slot = held(&api).expect("the victim holds a Lease");
    for i in (0..NODES).filter(|&i| i != victim) {
        let a = fleet.start_agent(i, &kc, &sh);
        fleet.agents.push(Some(a));
    }
    std::thread::sleep(Duration::from_millis(500));
    victim_agent.kill();
    let _ = Command::new("pkill").args(["-f", "sleep 30"]).status();
    let retaken = wait(
        "the dead holder's slot to be taken over",
        Duration::from_secs(20),
        || {
            api.lease(NS, &slot).is_some_and(|l| {
                let h = l["spec"]["holderIdentity"].as_str().unwrap_or("");
                !h.is_empty() && h != format!("node-{victim}")
            })
        },
    );
    let took = wait("the other 19 applied", Duration::from_secs(90), || {
        (0..NODES).filter(|&i| i != victim).all(|i| {
            condition(&api, &format!("node-{i}")).0 == "True"
                && fleet
                    .timeline()
                    .iter()
                    .any(|x| x.0 == "end" && x.1 == format!("node-{i}"))
        })
    });
    let t3 = fleet.timeline();
    print_timeline("rollout with a killed holder", &t3);
    eprintln!(
        "rollout 3: {slot} of the killed node-{victim} taken over {retaken:.2?} after the kill (lease {LEASE_SECS} s, renewed every 1 s); the other {} nodes applied {:.2?} after the kill",
        NODES - 1,
        retaken + took
    );
    assert!(
        retaken >= Duration::from_millis(1500),
        "a slot held by a live-looking Lease was taken after {retaken:?}"
    );
    assert!(
        max_concurrent(&t3) <= SLOTS + 1,
        "the killed holder's start has no end"
    );
    let others = t3
        .iter()
        .filter(|x| x.0 == "end" && x.1 != format!("node-{victim}"))
        .count();
    assert_eq!(others, NODES - 1);
    for a in fleet.agents.iter_mut().flatten() {
        a.stop();
    }
    drop(api);
    drop(rt);
}
