//! regmirror on REAL systemd nodes (issue "Real nodes"): Debian 12 booted with systemd-nspawn
//! (`shared/tools/nspawn-node`: systemd as PID 1, Debian's containerd 1.6.20 as a service), the
//! project's `.deb` installed with `dpkg -i`, and real `docker-registry` mirrors on the host's
//! 127.0.0.1 (the nodes share the host's network namespace). Pulls are CRI `PullImage` calls made
//! by the host's test process through the NODE's socket (`/proc/<leader>/root/run/containerd/
//! containerd.sock`), so the node's containerd does the pulling; the registries' access logs
//! prove where it went.
//!
//! 1. `edge_host_deb_applies_mirrors_through_systemd`: dpkg -i → enabled, not started; Secret +
//!    /etc/default → `Type=notify` start reaches `active` only after READY=1; mirrors in
//!    config.toml; containerd restarted exactly once by regmirror through systemd; a CRI pull via
//!    an htpasswd+TLS mirror; readable journal without the PASSWORD.
//! 2. `watchdog_kills_a_stopped_agent_and_restart_does_not_touch_containerd`: SIGSTOP → killed
//!    after WatchdogSec (a drop-in lowers it from 30 s to 5 s), restarted after RestartSec (10 s,
//!    the unit's own), converges with no containerd restart.
//! 3. `secret_edits_restart_once_in_legacy_and_never_in_hosts_mode`: Secret edit → exactly one
//!    restart → pulls via the new mirror; REGMIRROR_MODE=hosts → one restart (config_path on);
//!    a Secret edit in hosts mode → no restart, pulls via the new mirror.
//! 4. `bad_config_is_rolled_back_and_reported`: a containerd drop-in `ExecStartPre=` injects
//!    `config_path` next to the legacy mirrors once (an admin edit racing the restart), the CRI
//!    plugin fails, regmirror restores the last good files, containerd is healthy again; the
//!    journal and /metrics (`regmirror_rollbacks_total 1`) show it.
//! 5. `daemonset_style_agent_on_the_host_restarts_the_nodes_containerd`: `regmirror run` outside
//!    the node (host mount/net namespaces, the node's PID namespace: a hostPID pod's topology),
//!    editing the node's files through `/proc/<leader>/root`, with
//!    `--host-pid <leader> --reload systemd`: setns into the node's PID 1 namespaces restarts the
//!    node's containerd.
//! 6. `reinstall_keeps_state_and_does_not_restart_containerd`: `dpkg -i` over the installed
//!    package, then `dpkg -r` + `dpkg -i`: state.json kept, containerd untouched.
//!
//! One node per test (unique names, so tests run in parallel), powered off by PID in a Drop guard
//! also on failure; every host process (registries, the agent of case 5) is stopped by PID on
//! drop. Needs root, systemd-container, debootstrap (only until the rootfs is cached under
//! `<target>/nspawn-rootfs/`, or `REGMIRROR_NSPAWN_ROOTFS`), cargo-deb and the registry tools of
//! `tests/support`; skipped otherwise (a failure with `REGMIRROR_E2E=1`).
//! Run: `REGMIRROR_E2E=1 cargo test --test node_systemd -- --nocapture`.

mod node_support;
mod support;

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use node_support::{Node, rootfs, shared_deb, unique_name};
use regmirror::cri::{CriClient, CriStatus};
use support::cli::Secret;
use support::registry::{Kind, Registry};
use support::{ChildGuard, http_get, last_lines as tail, metric, poll_every};

const DOCKER_REPO: &str = "airgap-images/docker.io/library/tiny";
const UNIT: &str = "regmirror";
/// The unit's own watchdog (systemd/regmirror.service).
const UNIT_WATCHDOG: &str = "30s";
/// The watchdog the watchdog test sets with a drop-in (see that test for why not 3 s).
const TEST_WATCHDOG_SECS: u64 = 5;
/// Bound for "the agent applied, containerd restarted and is healthy".
const SETTLE: Duration = Duration::from_secs(40);
/// How long nothing more may happen after a change for "exactly once" to hold.
const QUIET: Duration = Duration::from_secs(4);
const PULL_TIMEOUT: Duration = Duration::from_secs(60);

/// What containerd must request from the mirror for `docker.io/library/tiny:<tag>`.
fn docker_path(tag: &str) -> String {
    format!("/v2/airgap-images/docker.io/library/tiny/manifests/{tag}")
}

/// The registry tools of `tests/support` (containerd is not needed on the host).
const HOST_BINS: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("htpasswd", "apache2-utils"),
    ("openssl", "openssl"),
];

/// Skips the test (returns) when the prerequisites are missing, else times it.
macro_rules! node_test {
    ($name:expr) => {
        skip_unless!(node_support::prerequisites($name, HOST_BINS), "node", $name)
    };
}

// ---------------------------------------------------------------------------------------------
// Registries and CRI through the node's socket
// ---------------------------------------------------------------------------------------------

/// A registry holding the tiny image as `docker.io/library/tiny:<tag>` for each tag, under
/// `airgap-images/`.
fn mirror(kind: Kind, tags: &[&str]) -> Registry {
    let r = Registry::start(kind);
    r.push_tiny(DOCKER_REPO);
    for tag in tags.iter().filter(|t| **t != "1") {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--insecure-policy", "--dest-tls-verify=false"]);
        if let Some((u, p)) = r.creds() {
            cmd.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        cmd.arg(format!("oci:{}:1", support::image::layout().display()))
            .arg(format!("docker://{}/{DOCKER_REPO}:{tag}", r.host()));
        support::run(&mut cmd);
    }
    r
}

/// A Secret mapping docker.io to `reg` over plain http.
fn plain_secret(reg: &Registry) -> Secret {
    Secret::new(
        &reg.host(),
        &format!("docker.io::http://{}/airgap-images/docker.io", reg.host()),
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// CRI PullImage through the node's socket: a pull BY the node's containerd.
fn pull(node: &Node, image: &str) -> Result<String, String> {
    let t = Instant::now();
    let socket = node.cri_socket();
    let r = rt().block_on(async {
        let mut c = CriClient::connect(&socket)
            .await
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(PULL_TIMEOUT, c.pull_image(image)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("PullImage {image} timed out")),
        }
    });
    eprintln!(
        "node pull {image}: {} in {:.2?}",
        if r.is_ok() { "ok" } else { "FAILED" },
        t.elapsed()
    );
    r
}

/// CRI Status(verbose) through the node's socket.
fn cri_status(node: &Node) -> Result<CriStatus, String> {
    let socket = node.cri_socket();
    rt().block_on(async {
        let mut c = CriClient::connect(&socket)
            .await
            .map_err(|e| e.to_string())?;
        c.status().await.map_err(|e| e.to_string())
    })
}

/// The docker.io endpoints the node's containerd really loaded.
fn effective_docker_endpoints(node: &Node) -> serde_json::Value {
    let st = cri_status(node).expect("CRI Status");
    st.config.as_ref().expect("Status(verbose) config")["registry"]["mirrors"]["docker.io"]
        ["endpoint"]
        .clone()
}

/// Pulls `image` through the node and asserts that `reg` answered `path` with 200.
fn assert_pull_via(node: &Node, reg: &Registry, image: &str, path: &str) {
    let mark = reg.mark();
    let result = pull(node, image);
    let hits = reg.hits(mark, path);
    let served = hits.iter().any(|r| r.status == 200);
    if result.is_err() || !served {
        panic!(
            "pull of {image} by the node's containerd through mirror {} failed\n  CRI: {result:?}\n  \
             expected {path} answered 200; access log since the pull started:\n{}\n  containerd \
             journal:\n{}\nconfig.toml:\n{}",
            reg.host(),
            reg.log_since(mark),
            tail(&node.journal("containerd"), 25),
            read_node(node, "/etc/containerd/config.toml"),
        );
    }
    let agent = &hits.iter().find(|r| r.status == 200).unwrap().user_agent;
    assert!(agent.starts_with("containerd/"), "user agent {agent:?}");
    eprintln!(
        "  mirror {} served {path} to {agent} ({} requests for the pull)",
        reg.host(),
        reg.requests_since(mark).len()
    );
}

/// Runs `pulls` and asserts that `other` got no request meanwhile.
fn assert_untouched(other: &Registry, pulls: impl FnOnce()) {
    let mark = other.mark();
    pulls();
    assert!(
        other.requests_since(mark).is_empty(),
        "{}",
        other.log_since(mark)
    );
}

// ---------------------------------------------------------------------------------------------
// The node and the agent in it
// ---------------------------------------------------------------------------------------------

/// Boots a node for `case` with the shared `.deb` at `/pkg/regmirror.deb`.
fn boot(case: &str) -> Node {
    let t = Instant::now();
    let rootfs = rootfs();
    let deb = shared_deb();
    let node = Node::up(
        &rootfs,
        &unique_name(&format!("rm-{case}")),
        &[format!("--bind-ro={}:/pkg", deb.display())],
    );
    eprintln!(
        "node {} up (leader pid {}, boot {:.2} s; rootfs + deb + boot {:.1?})",
        node.name,
        node.leader,
        node.boot_secs,
        t.elapsed()
    );
    node
}

fn read_node(node: &Node, path: &str) -> String {
    std::fs::read_to_string(node.path(path)).unwrap_or_default()
}

/// containerd's MainPID and how many times systemd has started it since boot (the journal's
/// "Started containerd.service" lines: every start, whoever asked for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ctd {
    pid: u32,
    starts: usize,
}

fn containerd(node: &Node) -> Ctd {
    let out = node.ok("systemctl show -p MainPID --value containerd; \
         journalctl -u containerd --no-pager -o cat | grep -c '^Started containerd' || true");
    let mut l = out.lines();
    Ctd {
        pid: l.next().unwrap_or("0").trim().parse().unwrap_or(0),
        starts: l.next().unwrap_or("0").trim().parse().unwrap_or(0),
    }
}

/// `dpkg -i` on a fresh node: enabled by the package, not started (no Secret yet).
fn install(node: &Node) {
    let out = node.exec("dpkg -i /pkg/regmirror.deb 2>&1");
    let text = support::stdout(&out);
    assert!(out.status.success(), "dpkg -i:\n{text}");
    assert!(text.contains("enabled but not started"), "{text}");
    assert_eq!(node.ok("systemctl is-enabled regmirror").trim(), "enabled");
    assert_eq!(
        support::stdout(&node.exec("systemctl is-active regmirror")).trim(),
        "inactive"
    );
}

/// Writes the Secret manifest the unit watches, 0600, atomically (temp file + rename, like an
/// editor), through the node's root.
fn write_secret(node: &Node, s: &Secret) {
    let dir = node.path("/etc/regmirror");
    let tmp = dir.join(".registry-secret.yaml.tmp");
    std::fs::write(&tmp, s.manifest()).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, dir.join("registry-secret.yaml")).unwrap();
}

/// Appends settings to /etc/default/regmirror: no restart jitter, the HTTP listener on a free
/// port of 127.0.0.1 (the nodes share the host's network, so each needs its own), plus `extra`.
/// Returns the port.
fn configure(node: &Node, extra: &[&str]) -> u16 {
    let port = support::free_port();
    let mut lines = vec![
        "REGMIRROR_RESTART_JITTER=0".to_string(),
        format!("REGMIRROR_LISTEN=127.0.0.1:{port}"),
    ];
    lines.extend(extra.iter().map(|s| s.to_string()));
    append_default(node, &lines.join("\n"));
    port
}

fn append_default(node: &Node, text: &str) {
    let p = node.path("/etc/default/regmirror");
    let mut cur = std::fs::read_to_string(&p).unwrap();
    cur.push_str("\n# added by tests/node_systemd.rs\n");
    cur.push_str(text);
    cur.push('\n');
    std::fs::write(&p, cur).unwrap();
}

/// What a unit start looked like from outside.
#[derive(Debug)]
struct StartTrace {
    /// Distinct `ActiveState/SubState` values, with the seconds since the start was queued.
    states: Vec<(f64, String)>,
    /// Seconds until `active` was first seen.
    active_after: f64,
    /// StatusText when `active` was first seen.
    status: String,
    main_pid: u32,
    /// containerd when `active` was first seen.
    ctd: Ctd,
}

/// `systemctl <verb> --no-block regmirror` and watches the unit until it is `active/running`
/// (panics with the journal if it fails or takes longer than [`SETTLE`]).
fn start_and_trace(node: &Node, verb: &str) -> StartTrace {
    let t = Instant::now();
    node.ok(&format!("systemctl {verb} --no-block {UNIT}"));
    let mut states: Vec<(f64, String)> = Vec::new();
    let probe = format!(
        "systemctl show -p ActiveState,SubState,MainPID,StatusText {UNIT}; \
         echo CTD=$(systemctl show -p MainPID --value containerd) \
         $(journalctl -u containerd --no-pager -o cat | grep -c '^Started containerd')"
    );
    let done = poll_every(SETTLE, Duration::from_millis(40), || {
        let out = node.ok(&probe);
        let get = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_default()
                .to_string()
        };
        let state = format!("{}/{}", get("ActiveState"), get("SubState"));
        if states.last().map(|(_, s)| s) != Some(&state) {
            states.push((t.elapsed().as_secs_f64(), state.clone()));
        }
        match get("ActiveState").as_str() {
            "failed" => panic!(
                "{UNIT} failed to start: {states:?}\n{}",
                tail(&node.journal(UNIT), 40)
            ),
            "active" if get("SubState") == "running" => {
                let ctd = get("CTD");
                let c: Vec<&str> = ctd.split_whitespace().collect();
                Some(StartTrace {
                    states: states.clone(),
                    active_after: t.elapsed().as_secs_f64(),
                    status: get("StatusText"),
                    main_pid: get("MainPID").parse().unwrap_or(0),
                    ctd: Ctd {
                        pid: c.first().and_then(|p| p.parse().ok()).unwrap_or(0),
                        starts: c.get(1).and_then(|p| p.parse().ok()).unwrap_or(0),
                    },
                })
            }
            _ => None,
        }
    });
    done.unwrap_or_else(|| {
        panic!(
            "{UNIT} not active after {SETTLE:?}: {states:?}\n{}",
            tail(&node.journal(UNIT), 40)
        )
    })
}

/// Waits until the unit's StatusText satisfies `pred`; returns it.
fn wait_status(node: &Node, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    poll_every(SETTLE, Duration::from_millis(100), || {
        last = node.prop(UNIT, "StatusText");
        pred(&last).then(|| last.clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "{what}: StatusText still {last:?} after {SETTLE:?}\n{}",
            tail(&node.journal(UNIT), 40)
        )
    })
}

/// Waits [`QUIET`] and asserts containerd stayed `expect` meanwhile (no further restart).
fn assert_quiet(node: &Node, expect: Ctd, why: &str) {
    std::thread::sleep(QUIET);
    let now = containerd(node);
    assert_eq!(
        now,
        expect,
        "{why}: containerd changed within {QUIET:?} afterwards\n{}",
        story(&node.journal(UNIT))
    );
}

fn metrics(port: u16) -> String {
    http_get(port, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default()
}

fn metric_of(port: u16, series: &str) -> f64 {
    let m = metrics(port);
    metric(&m, series).unwrap_or_else(|| panic!("no {series} in /metrics:\n{m}"))
}

/// The agent's journal lines that tell the story (without systemd's own).
fn story(journal: &str) -> String {
    journal
        .lines()
        .filter(|l| {
            [
                "wrote spec",
                "restarted",
                "healthy",
                "rolling back",
                "rolled back",
                "WARN",
                "ERROR",
                "starting",
                "stopped",
                "Watchdog",
                "watchdog",
                "Started",
                "Stopped",
                "Scheduled",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A node with the package installed, `secret` in place and the agent started and settled
/// (first apply done, containerd restarted once and healthy, nothing moving any more).
struct Edge {
    node: Node,
    port: u16,
    trace: StartTrace,
}

fn edge(
    case: &str,
    secret: &Secret,
    extra_default: &[&str],
    before_start: impl FnOnce(&Node),
) -> Edge {
    let node = boot(case);
    install(&node);
    write_secret(&node, secret);
    let port = configure(&node, extra_default);
    before_start(&node);
    let trace = start_with_one_restart(&node, "start", "after the first apply");
    Edge { node, port, trace }
}

/// `systemctl VERB` of the agent (see [`start_and_trace`]): READY=1 must come with an `applied
/// spec` StatusText, containerd restarted exactly once, and then nothing more within [`QUIET`]
/// (`why`, see [`assert_quiet`]).
fn start_with_one_restart(node: &Node, verb: &str, why: &str) -> StartTrace {
    let before = containerd(node);
    let trace = start_and_trace(node, verb);
    eprintln!(
        "{UNIT} {verb}: active after {:.2} s (states {:?}); StatusText {:?}; containerd \
         {before:?} → {:?}",
        trace.active_after, trace.states, trace.status, trace.ctd
    );
    assert!(
        trace.status.starts_with("applied spec"),
        "READY=1 came with {:?}",
        trace.status
    );
    assert_eq!(
        trace.ctd.starts,
        before.starts + 1,
        "containerd must have been restarted once when READY=1 arrived: {before:?} → {:?}",
        trace.ctd
    );
    assert_quiet(node, trace.ctd, why);
    trace
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// Case 1: the edge host. dpkg -i, Secret (TLS + htpasswd mirror, with PASSWORD), start: the
/// Type=notify unit is active only after READY=1, which comes after the first apply and the
/// containerd restart; the mirror is in config.toml and really used; no PASSWORD in the journal.
#[test]
fn edge_host_deb_applies_mirrors_through_systemd() {
    node_test!("edge_host_deb_applies_mirrors_through_systemd");
    let reg = mirror(Kind::TlsAuth, &["1"]);
    let (user, password) = reg.creds().unwrap();
    let mut secret = Secret::new(
        &reg.host(),
        &format!("docker.io::{}/airgap-images/docker.io", reg.host()),
    );
    secret.username = user.into();
    secret.password = password.into();
    secret.ca_cert = reg.tls.as_ref().unwrap().ca_pem();

    let node = boot("edge");
    install(&node);
    assert_eq!(
        node.ok("stat -c %a /etc/regmirror").trim(),
        "700",
        "the Secret's directory"
    );
    write_secret(&node, &secret);
    let port = configure(&node, &[]);
    let before = containerd(&node);

    let trace = start_and_trace(&node, "start");
    eprintln!(
        "{UNIT}: activating → active in {:.2} s, states {:?}\n  StatusText at READY: {:?}\n  \
         containerd MainPID {} → {} (starts {} → {})",
        trace.active_after,
        trace.states,
        trace.status,
        before.pid,
        trace.ctd.pid,
        before.starts,
        trace.ctd.starts
    );
    // Type=notify: systemd kept the unit in activating/start until READY=1, and READY=1 came
    // after the first reconcile (the 2 s debounce, the write, the containerd restart and its
    // health check), with that reconcile's status.
    assert_eq!(
        trace.states.first().map(|(_, s)| s.as_str()),
        Some("activating/start"),
        "{:?}",
        trace.states
    );
    assert!(
        trace.active_after >= 1.5,
        "active after {:.2} s: before the 2 s debounce ended, so not on READY=1",
        trace.active_after
    );
    assert!(
        trace.status.starts_with("applied spec")
            && trace.status.contains("containerd restarted and healthy"),
        "StatusText at READY=1: {:?}",
        trace.status
    );
    let p = node.props(
        UNIT,
        &[
            "Type",
            "NotifyAccess",
            "WatchdogUSec",
            "NRestarts",
            "Result",
        ],
    );
    eprintln!("  unit properties: {p:?}");
    assert_eq!(p[0].1, "notify");
    assert_eq!(p[2].1, UNIT_WATCHDOG);
    assert_eq!(p[3].1, "0");
    assert_eq!(p[4].1, "success");

    // containerd: restarted exactly once, by regmirror, through systemd.
    assert_ne!(
        trace.ctd.pid, before.pid,
        "containerd's MainPID did not change"
    );
    assert_eq!(
        trace.ctd.starts,
        before.starts + 1,
        "{before:?} {:?}",
        trace.ctd
    );
    assert_quiet(&node, trace.ctd, "after the first apply");
    let journal = node.journal(UNIT);
    assert!(
        journal.contains("restarted containerd.service; containerd 1.6.20"),
        "{journal}"
    );
    assert_eq!(metric_of(port, "regmirror_containerd_restarts_total"), 1.0);
    assert_eq!(
        metric_of(port, "regmirror_applies_total{result=\"changed\"}"),
        1.0
    );
    assert_eq!(http_get(port, "/readyz").map(|r| r.0), Some(200));

    // The files: mirrors, credentials and CA in config.toml (0600: it holds the password).
    let config = read_node(&node, "/etc/containerd/config.toml");
    let endpoint = format!("https://{}/v2/airgap-images/docker.io", reg.host());
    assert!(
        config.contains(&format!("endpoint = [\"{endpoint}\"]")),
        "{config}"
    );
    assert!(
        config.contains(&format!("username = \"{user}\"")),
        "{config}"
    );
    assert!(config.contains("ca_file = "), "{config}");
    assert!(
        config.contains("restrict_oom_score_adj = true"),
        "the node's own setting must stay:\n{config}"
    );
    assert_eq!(
        node.ok("stat -c %a /etc/containerd/config.toml").trim(),
        "600"
    );
    assert_eq!(
        effective_docker_endpoints(&node),
        serde_json::json!([endpoint]),
        "what the node's containerd loaded"
    );

    // A pull by the node's containerd goes through the mirror (401 challenge, then 200).
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", &docker_path("1"));

    // The journal: readable lines, no PASSWORD anywhere in the node's journal (all fields).
    let lines: Vec<&str> = journal
        .lines()
        .filter(|l| l.contains("regmirror::"))
        .collect();
    assert!(lines.len() >= 3, "{journal}");
    for l in &lines {
        assert!(
            !l.contains('\u{1b}') && !l.starts_with('{') && l.len() < 600,
            "not a readable line: {l:?}"
        );
    }
    let export = node.exec("journalctl --no-pager -o export");
    let all = String::from_utf8_lossy(&export.stdout);
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    for needle in [password, "w0rd", b64.as_str()] {
        assert!(
            !all.contains(needle),
            "the node's journal holds {needle:?}:\n{}",
            all.lines()
                .filter(|l| l.contains(needle))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(!trace.status.contains("w0rd"));
    eprintln!("  regmirror journal:\n{}", story(&journal));
}

/// Case 2: the watchdog. The agent is SIGSTOPped: systemd kills it after WatchdogSec and starts
/// it again after RestartSec (Restart=on-failure); the new agent finds everything up to date and
/// does not touch containerd.
///
/// WatchdogSec is lowered from the unit's 30 s to 5 s by a drop-in, written before the first
/// start (the agent pulses at half the WATCHDOG_USEC it was started with). Not 3 s: the agent
/// pulses every WatchdogSec/2 but not while it waits out the 2 s debounce, so a Secret event
/// just before a pulse was due would leave up to 1.5 + 2 s without one.
#[test]
fn watchdog_kills_a_stopped_agent_and_restart_does_not_touch_containerd() {
    node_test!("watchdog_kills_a_stopped_agent_and_restart_does_not_touch_containerd");
    let reg = mirror(Kind::Plain, &["1"]);
    let e = edge("wdog", &plain_secret(&reg), &[], |node| {
        node.ok(&format!(
            "mkdir -p /etc/systemd/system/regmirror.service.d && printf '[Service]\\nWatchdogSec={TEST_WATCHDOG_SECS}s\\n' \
             > /etc/systemd/system/regmirror.service.d/test.conf && systemctl daemon-reload"
        ));
    });
    let node = &e.node;
    let p = node.props(UNIT, &["WatchdogUSec", "RestartUSec", "Restart", "MainPID"]);
    eprintln!("unit: {p:?}");
    assert_eq!(p[0].1, format!("{TEST_WATCHDOG_SECS}s"));
    assert_eq!(p[1].1, "10s", "RestartSec of the unit");
    assert_eq!(p[2].1, "on-failure");
    let pid: u32 = p[3].1.parse().unwrap();
    assert_eq!(pid, e.trace.main_pid);
    let ctd = containerd(node);

    let t = Instant::now();
    node.ok(&format!("kill -STOP {pid}"));
    let (new_pid, status) = poll_every(Duration::from_secs(60), Duration::from_millis(200), || {
        let p = node.props(UNIT, &["MainPID", "ActiveState", "SubState", "StatusText"]);
        let m: u32 = p[0].1.parse().unwrap_or(0);
        (m != 0 && m != pid && p[1].1 == "active" && p[2].1 == "running")
            .then(|| (m, p[3].1.clone()))
    })
    .unwrap_or_else(|| panic!("not restarted:\n{}", story(&node.journal(UNIT))));
    let took = t.elapsed();
    let journal = node.journal(UNIT);
    eprintln!(
        "SIGSTOP pid {pid} → new MainPID {new_pid} active in {took:.2?}; StatusText {status:?}\n{}",
        story(&journal)
    );
    assert!(
        journal.contains(&format!("Watchdog timeout (limit {TEST_WATCHDOG_SECS}s)")),
        "{journal}"
    );
    assert!(
        journal.contains("Failed with result 'watchdog'"),
        "{journal}"
    );
    assert!(
        journal.contains("Scheduled restart job, restart counter is at 1"),
        "{journal}"
    );
    assert_eq!(node.prop(UNIT, "NRestarts"), "1");
    // watchdog + RestartSec, not sooner.
    assert!(
        took >= Duration::from_secs(TEST_WATCHDOG_SECS + 10 - 1),
        "restarted after only {took:?}"
    );
    assert!(status.starts_with("up to date"), "{status:?}");
    // The new agent did not touch containerd.
    assert_quiet(node, ctd, "after the watchdog restart");
    assert_eq!(
        metric_of(e.port, "regmirror_containerd_restarts_total"),
        0.0
    );
    assert_eq!(
        metric_of(e.port, "regmirror_applies_total{result=\"unchanged\"}"),
        1.0
    );
    assert_pull_via(node, &reg, "docker.io/library/tiny:1", &docker_path("1"));
}

/// Case 3: Secret edits. Legacy mode: exactly one containerd restart, then pulls go to the new
/// mirror. Switching to hosts mode (REGMIRROR_MODE=hosts): one restart to turn config_path on.
/// A Secret edit in hosts mode: no restart at all, and pulls go to the new mirror.
#[test]
fn secret_edits_restart_once_in_legacy_and_never_in_hosts_mode() {
    node_test!("secret_edits_restart_once_in_legacy_and_never_in_hosts_mode");
    let a = mirror(Kind::Plain, &["1"]);
    let b = mirror(Kind::Plain, &["1", "2"]);
    let e = edge("secret", &plain_secret(&a), &[], |_| {});
    let node = &e.node;
    assert_pull_via(node, &a, "docker.io/library/tiny:1", &docker_path("1"));
    let status_a = e.trace.status.clone();

    // Legacy: A → B.
    let before = containerd(node);
    let t = Instant::now();
    write_secret(node, &plain_secret(&b));
    let status_b = wait_status(node, "the edit to B", |s| {
        s.starts_with("applied spec") && s != status_a
    });
    let applied = t.elapsed();
    let after = containerd(node);
    eprintln!(
        "legacy edit A → B applied in {applied:.2?}: {status_b:?}; containerd {before:?} → {after:?}"
    );
    assert_eq!(after.starts, before.starts + 1, "exactly one restart");
    assert_ne!(after.pid, before.pid);
    assert_quiet(node, after, "after the legacy edit");
    assert_eq!(
        effective_docker_endpoints(node),
        serde_json::json!([format!("http://{}/v2/airgap-images/docker.io", b.host())])
    );
    assert_untouched(&a, || {
        assert_pull_via(node, &b, "docker.io/library/tiny:2", &docker_path("2"));
        assert_pull_via(node, &b, "docker.io/library/tiny:1", &docker_path("1"));
    });
    assert_eq!(
        metric_of(e.port, "regmirror_containerd_restarts_total"),
        2.0
    );

    // Hosts mode: config_path on (legacy mirrors removed): one restart.
    append_default(node, "REGMIRROR_MODE=hosts");
    let trace = start_with_one_restart(node, "restart", "after switching to hosts mode");
    let config = read_node(node, "/etc/containerd/config.toml");
    assert!(
        config.contains("config_path = \"/etc/containerd/certs.d\""),
        "{config}"
    );
    assert!(
        !config.contains("endpoint"),
        "legacy mirrors left:\n{config}"
    );
    let hosts = read_node(node, "/etc/containerd/certs.d/docker.io/hosts.toml");
    assert!(hosts.contains(&b.host()), "{hosts}");
    assert_pull_via(node, &b, "docker.io/library/tiny:2", &docker_path("2"));

    // Hosts mode: B → A is a hosts.toml edit, no restart.
    let ctd = containerd(node);
    let t = Instant::now();
    write_secret(node, &plain_secret(&a));
    let status = wait_status(node, "the hosts-mode edit to A", |s| {
        s.starts_with("applied spec") && s != trace.status
    });
    eprintln!(
        "hosts-mode edit B → A applied in {:.2?}: {status:?}",
        t.elapsed()
    );
    assert!(!status.contains("containerd restarted"), "{status}");
    assert_eq!(
        containerd(node),
        ctd,
        "a hosts.toml edit must not restart containerd"
    );
    assert_quiet(node, ctd, "after the hosts-mode edit");
    let hosts = read_node(node, "/etc/containerd/certs.d/docker.io/hosts.toml");
    assert!(
        hosts.contains(&a.host()) && !hosts.contains(&b.host()),
        "{hosts}"
    );
    assert_untouched(&b, || {
        assert_pull_via(node, &a, "docker.io/library/tiny:1", &docker_path("1"))
    });
    eprintln!("regmirror journal:\n{}", story(&node.journal(UNIT)));
}

/// Case 4: a change that stops containerd's CRI plugin from loading is rolled back: regmirror's
/// health check sees UNIMPLEMENTED, it restores the last good files, restarts containerd, which
/// is healthy on the previous mirror; the journal and /metrics say so; the unit stays active.
#[test]
fn bad_config_is_rolled_back_and_reported() {
    node_test!("bad_config_is_rolled_back_and_reported");
    let a = mirror(Kind::Plain, &["1"]);
    let b = mirror(Kind::Plain, &["1"]);
    let e = edge("rollback", &plain_secret(&a), &[], |node| {
        node.install_config_path_injector();
    });
    let node = &e.node;
    let good = read_node(node, "/etc/containerd/config.toml");
    assert!(good.contains(&a.host()));
    let before = containerd(node);
    let status_a = e.trace.status.clone();

    // Arm the racing edit, then change the Secret (mirror B).
    node.arm_config_path_injector();
    let t = Instant::now();
    write_secret(node, &plain_secret(&b));
    poll_every(SETTLE, Duration::from_millis(200), || {
        (metric(&metrics(e.port), "regmirror_rollbacks_total") == Some(1.0)).then_some(())
    })
    .unwrap_or_else(|| panic!("no rollback:\n{}", story(&node.journal(UNIT))));
    let status = wait_status(node, "the rollback", |s| s.contains("rolled back"));
    let took = t.elapsed();
    let after = containerd(node);
    let journal = node.journal(UNIT);
    let ctd_journal = node.journal("containerd");
    eprintln!(
        "Secret edit → rolled back in {took:.2?}: {status:?}\ncontainerd {before:?} → {after:?}\n{}",
        story(&journal)
    );
    assert_ne!(status, status_a);
    // The injected start and the rollback's start.
    assert_eq!(after.starts, before.starts + 2, "{before:?} → {after:?}");
    assert_quiet(node, after, "after the rollback");
    assert!(
        ctd_journal.contains("regmirror-test: injected config_path"),
        "the racing edit did not happen:\n{}",
        tail(&ctd_journal, 20)
    );
    assert!(
        ctd_journal.contains("cannot be set when `config_path` is provided"),
        "containerd's journal does not show the CRI plugin failing:\n{}",
        tail(&ctd_journal, 30)
    );
    assert!(journal.contains("UNIMPLEMENTED"), "{journal}");
    assert!(journal.contains("rolling back spec"), "{journal}");
    assert!(
        journal.contains("healthy again on the previous configuration"),
        "{journal}"
    );
    assert!(!node.path(node_support::INJECT_MARKER).exists());

    // The outcome: good files back, containerd healthy on A, the agent still running.
    assert_eq!(read_node(node, "/etc/containerd/config.toml"), good);
    let st = cri_status(node).expect("CRI Status after the rollback");
    assert!(st.runtime_ready, "{st:?}");
    assert_eq!(
        effective_docker_endpoints(node),
        serde_json::json!([format!("http://{}/v2/airgap-images/docker.io", a.host())])
    );
    let m = metrics(e.port);
    eprintln!(
        "/metrics: {}",
        m.lines()
            .filter(|l| l.starts_with("regmirror_") && !l.starts_with("regmirror_last"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    assert_eq!(metric(&m, "regmirror_rollbacks_total"), Some(1.0));
    assert_eq!(
        metric(&m, "regmirror_applies_total{result=\"rolled_back\"}"),
        Some(1.0)
    );
    assert_eq!(metric(&m, "regmirror_containerd_restarts_total"), Some(3.0));
    assert_eq!(http_get(e.port, "/readyz").map(|r| r.0), Some(503));
    let p = node.props(UNIT, &["ActiveState", "SubState", "NRestarts"]);
    assert_eq!(p[0].1, "active", "{p:?}");
    assert_eq!(p[2].1, "0", "{p:?}");
    assert_untouched(&b, || {
        assert_pull_via(node, &a, "docker.io/library/tiny:1", &docker_path("1"))
    });
}

/// Case 5: the DaemonSet's reload path, from outside the node. `regmirror run` runs in the
/// node's PID namespace but the host's other namespaces (as a hostPID pod does) and edits the
/// node's files through `/proc/<leader>/root`; `--host-pid
/// <leader> --reload systemd` makes it enter the node's PID 1 namespaces (setns) to run the
/// node's own `systemctl restart containerd`, and it health-checks through the node's socket.
#[test]
fn daemonset_style_agent_on_the_host_restarts_the_nodes_containerd() {
    node_test!("daemonset_style_agent_on_the_host_restarts_the_nodes_containerd");
    let a = mirror(Kind::Plain, &["1"]);
    let node = boot("ds");
    let dir = support::temp_dir("ds");
    let secret = dir.path().join("secret/registry-info.yaml");
    std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
    std::fs::write(&secret, plain_secret(&a).manifest()).unwrap();
    let before = containerd(&node);
    let original = read_node(&node, "/etc/containerd/config.toml");
    let leader = node.leader.to_string();
    let root = node.root();
    // The agent's paths: the node's, through its root.
    let node_paths = [
        ("--config", "etc/containerd/config.toml"),
        ("--certs-dir", "etc/containerd/certs.d"),
        ("--state-dir", "var/lib/regmirror"),
    ]
    .map(|(flag, path)| [OsString::from(flag), root.join(path).into_os_string()])
    .concat();

    let port = support::free_port();
    // A hostPID pod shares the PID namespace of the systemd it restarts through; the node's
    // systemd refuses clients on its private socket whose PID it cannot see ("Incoming private
    // connection from unprivileged client, refusing"). So the agent runs in the node's PID
    // namespace (nsenter --pid forks it there), and in the HOST's mount, network, IPC and UTS
    // namespaces: it reaches the node's files through /proc/<leader>/root, the way the pod
    // reaches the host's through hostPath mounts, and restarts containerd by setns into the
    // namespaces of --host-pid. (The agent cannot setns(CLONE_NEWPID) itself: a process whose
    // children would be born in another PID namespace cannot start threads.)
    let mut cmd = Command::new("nsenter");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("REGMIRROR_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg(format!("--pid=/proc/{leader}/ns/pid"))
        .arg("--")
        .arg(support::cli::BIN)
        .arg("run")
        .arg("--secret-file")
        .arg(&secret)
        .args(&node_paths)
        .args(["--reload", "systemd", "--host-pid", &leader])
        .arg("--containerd-socket")
        .arg(node.cri_socket())
        .args(["--restart-jitter", "0", "--listen"])
        .arg(format!("127.0.0.1:{port}"));
    eprintln!("host agent: {cmd:?}");
    let t = Instant::now();
    let mut agent = ChildGuard::spawn(
        "regmirror run (host)",
        cmd,
        dir.path().join("agent.out"),
        dir.path().join("agent.log"),
    );
    // nsenter waits for the agent and exits with its status, but does not forward signals:
    // signals go to the agent itself (host PID, the child of nsenter). If the test fails, this
    // guard stops it first; the node's power-off would kill it anyway (its PID namespace dies).
    let nsenter = agent.pid();
    let inner = poll_every(Duration::from_secs(5), Duration::from_millis(20), || {
        std::fs::read_to_string(format!("/proc/{nsenter}/task/{nsenter}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse::<i32>()
            .ok()
    })
    .expect("nsenter did not start the agent");
    let inner_guard = SigtermOnDrop(inner);
    let in_node_ns = std::fs::read_link(format!("/proc/{inner}/ns/pid")).unwrap();
    assert_eq!(
        in_node_ns,
        std::fs::read_link(format!("/proc/{leader}/ns/pid")).unwrap(),
        "the agent is not in the node's PID namespace"
    );
    let log = |agent: &ChildGuard| std::fs::read_to_string(&agent.stderr).unwrap_or_default();
    poll_every(SETTLE, Duration::from_millis(100), || {
        let m = metrics(port);
        (metric(&m, "regmirror_applies_total{result=\"changed\"}") == Some(1.0)
            && http_get(port, "/readyz").map(|r| r.0) == Some(200))
        .then_some(())
    })
    .unwrap_or_else(|| panic!("the host agent did not apply:\n{}", log(&agent)));
    let took = t.elapsed();
    let after = containerd(&node);
    eprintln!(
        "host agent: applied, restarted the node's containerd and healthy in {took:.2?}\n  \
         node containerd {before:?} → {after:?}\n{}",
        story(&log(&agent))
    );
    // The restart happened INSIDE the node, through its systemd.
    assert_ne!(
        after.pid, before.pid,
        "the node's containerd was not restarted"
    );
    assert_eq!(after.starts, before.starts + 1);
    assert!(
        log(&agent).contains("restarted containerd.service; containerd 1.6.20"),
        "{}",
        log(&agent)
    );
    assert_eq!(metric_of(port, "regmirror_containerd_restarts_total"), 1.0);
    let config = read_node(&node, "/etc/containerd/config.toml");
    assert!(config.contains(&a.host()), "{config}");
    assert!(node.path("/var/lib/regmirror/state.json").exists());
    assert_eq!(
        effective_docker_endpoints(&node),
        serde_json::json!([format!("http://{}/v2/airgap-images/docker.io", a.host())])
    );
    assert_quiet(&node, after, "after the host agent's apply");
    assert_pull_via(&node, &a, "docker.io/library/tiny:1", &docker_path("1"));

    // SIGTERM to the agent: a clean stop (nsenter then exits with the agent's status).
    drop(inner_guard);
    let st = poll_every(Duration::from_secs(10), Duration::from_millis(50), || {
        agent.exited()
    })
    .or_else(|| agent.stop(Duration::from_secs(1)));
    assert!(st.is_some_and(|s| s.success()), "host agent exit: {st:?}");
    // Leave the node as found (and prove revert works through the node's root too).
    let out = support::run(
        Command::new(support::cli::BIN)
            .arg("revert")
            .args(&node_paths)
            .args(["--reload", "none"]),
    );
    eprintln!("revert: {}", out.trim());
    assert_eq!(read_node(&node, "/etc/containerd/config.toml"), original);
}

/// Sends SIGTERM to a PID when dropped (a process the test did not spawn itself).
struct SigtermOnDrop(i32);

impl Drop for SigtermOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

/// Case 6: the package again over an installed one (what an upgrade does), then `dpkg -r` and
/// `dpkg -i`: the agent's state (/var/lib/regmirror/state.json) is kept, and containerd is not
/// restarted when nothing changed.
#[test]
fn reinstall_keeps_state_and_does_not_restart_containerd() {
    node_test!("reinstall_keeps_state_and_does_not_restart_containerd");
    let a = mirror(Kind::Plain, &["1"]);
    let e = edge("reinst", &plain_secret(&a), &[], |_| {});
    let node = &e.node;
    let sums = || node.ok("sha256sum /var/lib/regmirror/state.json /etc/containerd/config.toml");
    let files = sums();
    let ctd = containerd(node);
    let pid = e.trace.main_pid;

    // dpkg -i over the installed package: try-restart of the running agent, nothing else.
    let out = node.exec("dpkg -i /pkg/regmirror.deb 2>&1");
    assert!(out.status.success(), "{}", support::stdout(&out));
    let status = wait_status(node, "the agent after the upgrade-style install", |s| {
        s.starts_with("up to date")
    });
    let new_pid: u32 = node.prop(UNIT, "MainPID").parse().unwrap();
    eprintln!("dpkg -i over the installed package: agent pid {pid} → {new_pid}, {status:?}");
    assert_ne!(
        new_pid, pid,
        "the running agent is restarted by the upgrade"
    );
    assert_quiet(node, ctd, "after dpkg -i over the installed package");
    assert_eq!(sums(), files);

    // dpkg -r: the agent stops, the configuration and the state stay.
    let out = node.exec("dpkg -r regmirror 2>&1");
    let text = support::stdout(&out);
    assert!(out.status.success(), "dpkg -r:\n{text}");
    assert!(text.contains("stays in place"), "{text}");
    assert_eq!(
        support::stdout(&node.exec("systemctl is-active regmirror")).trim(),
        "inactive"
    );
    assert_eq!(sums(), files, "dpkg -r changed the state or config.toml");
    assert_eq!(containerd(node), ctd);

    // dpkg -i again: the Secret is there, so the agent runs again; it finds its state and has
    // nothing to do.
    let out = node.exec("dpkg -i /pkg/regmirror.deb 2>&1");
    let text = support::stdout(&out);
    assert!(out.status.success(), "dpkg -i:\n{text}");
    eprintln!("dpkg -i after dpkg -r:\n{}", text.trim());
    assert_eq!(node.ok("systemctl is-enabled regmirror").trim(), "enabled");
    let active = poll_every(Duration::from_secs(10), Duration::from_millis(200), || {
        (node.prop(UNIT, "ActiveState") == "active").then_some(())
    });
    assert!(
        active.is_some(),
        "dpkg -i after dpkg -r left the agent {:?} although its Secret source exists:\n{text}",
        node.prop(UNIT, "ActiveState")
    );
    let status = wait_status(node, "the agent after reinstall", |s| {
        s.starts_with("up to date")
    });
    eprintln!("after dpkg -r + dpkg -i: {status:?}");
    assert_quiet(node, ctd, "after dpkg -r + dpkg -i");
    assert_eq!(sums(), files, "state.json or config.toml changed");
    assert_eq!(
        metric_of(e.port, "regmirror_containerd_restarts_total"),
        0.0
    );
    assert_pull_via(node, &a, "docker.io/library/tiny:1", &docker_path("1"));
}
