//! `regmirror run` with the file sources, as a real child process on real files: Secret edits,
//! drift repair, kubelet's `..data` swap, invalid updates, deletion, sd-notify, and no PASSWORD in
//! any output. Reload is `none` here (the real-containerd restarts are in daemon_containerd.rs).

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::agent::AgentProcess;

const PASSWORD: &str = "S3cr3t-Passw0rd-Never-Shown";

const CONFIG: &str = "# admin comment\nversion = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    sandbox_image = \"registry.k8s.io/pause:3.9\"\n";

/// The Secret manifest: harbor.example.org mirrors, INSECURE as given, credentials or not.
fn secret(mirrors: &str, insecure: &str, with_password: bool) -> String {
    let mut pairs = common::base_pairs(mirrors);
    common::set(&mut pairs, "INSECURE", insecure);
    if with_password {
        common::set(&mut pairs, "USERNAME", "robot");
        common::set(&mut pairs, "PASSWORD", PASSWORD);
    }
    common::manifest(&pairs)
}

const TWO: &str = "docker.io::harbor.example.org/airgap-images/docker.io,quay.io::harbor.example.org/airgap-images/quay.io";
const ONE: &str = "docker.io::harbor.example.org/airgap-images/docker.io";

/// A test node: a temp dir with config.toml, certs.d, state, and the agent as a child process.
struct Node {
    dir: tempfile::TempDir,
    agent: Option<AgentProcess>,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), CONFIG).unwrap();
        Node { dir, agent: None }
    }
    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn config(&self) -> String {
        std::fs::read_to_string(self.p("config.toml")).unwrap_or_default()
    }
    fn start(&mut self, source: &[&str], env: &[(&str, String)]) {
        let make = || {
            let mut cmd = common::agent_command(self.dir.path());
            cmd.args(source)
                .env_remove("NOTIFY_SOCKET")
                .env_remove("WATCHDOG_USEC")
                .env_remove("NODE_NAME");
            for (k, v) in env {
                cmd.env(k, v);
            }
            cmd
        };
        self.agent = Some(AgentProcess::spawn(make, &self.p("agent.log"), true));
    }
    /// SIGTERM, wait (bounded), return exit code and all stderr.
    fn stop(&mut self) -> (Option<i32>, String) {
        let mut agent = self.agent.take().unwrap();
        let status = agent.stop();
        (status.and_then(|s| s.code()), agent.log())
    }
    fn http(&self, path: &str) -> (u16, String) {
        self.agent
            .as_ref()
            .and_then(|a| a.get(path))
            .unwrap_or((0, String::new()))
    }
    fn metric(&self, line_prefix: &str) -> Option<f64> {
        common::agent::metric(&self.http("/metrics").1, line_prefix)
    }
}

/// Poll `cond` every 20 ms for at most `limit`; the time it took, or a panic naming `what`.
fn within(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if cond() {
            return t0.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("not within {limit:?}: {what}");
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn secret_edit_is_applied_and_hand_removal_is_repaired_within_3s() {
    let mut n = Node::new();
    std::fs::write(n.p("secret.yaml"), secret(TWO, "false", false)).unwrap();
    let s = n.p("secret.yaml");
    // No periodic resync: the edit and the drift below are seen through file events alone.
    n.start(
        &["--secret-file", s.to_str().unwrap(), "--resync", "0s"],
        &[],
    );
    within(Duration::from_secs(5), "first apply", || {
        n.config().contains("mirrors.\"quay.io\"")
    });
    let before_edit = n.config();
    assert!(
        before_edit.starts_with(CONFIG),
        "admin bytes kept:\n{before_edit}"
    );

    // An editor's rename-over of the Secret file.
    write_atomically(&s, &secret(ONE, "false", false));
    let took = within(Duration::from_secs(3), "Secret edit applied", || {
        let c = n.config();
        c.contains("mirrors.\"docker.io\"") && !c.contains("quay.io")
    });
    eprintln!("Secret edit → config.toml: {took:?}");

    // Someone deletes the managed table by hand (cloud-init, an image builder…).
    let c = n.config();
    std::fs::write(n.p("config.toml"), CONFIG).unwrap();
    assert_ne!(c, CONFIG);
    let took = within(Duration::from_secs(3), "drift repaired", || n.config() == c);
    eprintln!("hand removal → repaired: {took:?}");
    within(Duration::from_secs(3), "drift metric", || {
        n.metric("regmirror_drift_repairs_total") == Some(1.0)
    });

    // Own writes never loop: the config stays byte-identical and the applies counter settles.
    let applies = |n: &Node| n.metric("regmirror_applies_total{result=\"changed\"}");
    let settled = applies(&n);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(applies(&n), settled, "no further writes after settling");

    let (code, _) = n.stop();
    assert_eq!(code, Some(0), "SIGTERM exits 0");
}

#[test]
fn kubelet_secret_volume_data_swap_is_seen() {
    let mut n = Node::new();
    let vol = n.p("volume");
    let write_version = |name: &str, mirrors: &str| {
        let d = vol.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for (k, v) in [
            ("DOMAIN", "harbor.example.org"),
            ("BASE_PATH", "airgap-images"),
            ("INSECURE", "false"),
            ("MIRROR_REGISTRIES", mirrors),
        ] {
            std::fs::write(d.join(k), v).unwrap();
        }
    };
    write_version("..2026_11_23_01", TWO);
    std::os::unix::fs::symlink("..2026_11_23_01", vol.join("..data")).unwrap();
    for k in ["DOMAIN", "BASE_PATH", "INSECURE", "MIRROR_REGISTRIES"] {
        std::os::unix::fs::symlink(format!("..data/{k}"), vol.join(k)).unwrap();
    }
    n.start(&["--secret-dir", vol.to_str().unwrap()], &[]);
    within(Duration::from_secs(5), "first apply", || {
        n.config().contains("quay.io")
    });

    // kubelet's atomic writer: new timestamped dir, ..data_tmp symlink, rename over ..data.
    write_version("..2026_11_23_02", ONE);
    std::os::unix::fs::symlink("..2026_11_23_02", vol.join("..data_tmp")).unwrap();
    std::fs::rename(vol.join("..data_tmp"), vol.join("..data")).unwrap();
    std::fs::remove_dir_all(vol.join("..2026_11_23_01")).unwrap();
    let took = within(Duration::from_secs(3), "..data swap applied", || {
        let c = n.config();
        c.contains("docker.io") && !c.contains("quay.io")
    });
    eprintln!("..data swap → config.toml: {took:?}");
    assert_eq!(n.stop().0, Some(0));
}

#[test]
fn invalid_update_changes_nothing_and_deletion_reverts() {
    let mut n = Node::new();
    let s = n.p("secret.yaml");
    std::fs::write(&s, secret(TWO, "false", false)).unwrap();
    n.start(&["--secret-file", s.to_str().unwrap()], &[]);
    within(Duration::from_secs(5), "first apply", || {
        n.config().contains("quay.io")
    });
    within(Duration::from_secs(3), "ready", || {
        n.http("/readyz").0 == 200
    });
    let applied = n.config();

    write_atomically(&s, &secret(TWO, "maybe", false));
    within(Duration::from_secs(3), "rejection reported", || {
        let (code, body) = n.http("/readyz");
        code == 503 && body.contains("INSECURE")
    });
    assert_eq!(
        n.metric("regmirror_applies_total{result=\"rejected\"}"),
        Some(1.0)
    );
    assert_eq!(n.config(), applied, "a rejected Secret changes no byte");

    // The Secret is deleted: --on-delete revert (default) restores the admin's file exactly.
    std::fs::remove_file(&s).unwrap();
    let took = within(Duration::from_secs(3), "revert on delete", || {
        n.config() == CONFIG && !n.p("state/state.json").exists()
    });
    eprintln!("Secret deleted → reverted: {took:?}");
    assert!(!n.p("state/state.json").exists(), "nothing owned any more");
    assert_eq!(n.stop().0, Some(0));
}

#[test]
fn sd_notify_ready_watchdog_and_stopping() {
    let mut n = Node::new();
    let s = n.p("secret.yaml");
    std::fs::write(&s, secret(TWO, "false", false)).unwrap();
    let sock_path = n.p("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // Drain the socket the whole time, as systemd does.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(Duration, String)>::new()));
    let stop_reading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let t0 = Instant::now();
    let reader = {
        let (seen, stop) = (seen.clone(), stop_reading.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(len) = sock.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..len]).to_string();
                    seen.lock().unwrap().push((t0.elapsed(), msg));
                }
            }
        })
    };
    n.start(
        &["--secret-file", s.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap().to_string()),
            ("WATCHDOG_USEC", "400000".to_string()),
        ],
    );
    let count = |needle: &str| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| m.contains(needle))
            .count()
    };
    within(
        Duration::from_secs(6),
        "READY=1 and 3 watchdog pings",
        || count("READY=1") == 1 && count("WATCHDOG=1") >= 3,
    );
    let ready_at = seen
        .lock()
        .unwrap()
        .iter()
        .find(|(_, m)| m.contains("READY=1"))
        .unwrap()
        .0;
    assert!(
        n.config().contains("quay.io"),
        "READY=1 comes after the first reconcile"
    );
    assert!(count("STATUS=") >= 1);
    eprintln!("READY=1 after {ready_at:?}");
    let (code, _) = n.stop();
    assert_eq!(code, Some(0));
    within(Duration::from_secs(2), "STOPPING=1 on SIGTERM", || {
        count("STOPPING=1") == 1
    });
    stop_reading.store(true, std::sync::atomic::Ordering::SeqCst);
    reader.join().unwrap();
}

#[test]
fn undrained_notify_socket_never_blocks_the_agent() {
    // A unix datagram queue holds ~10 messages; nobody reads this one. Pings every 50 ms fill it
    // in half a second; the agent must still reconcile and exit promptly on SIGTERM.
    let mut n = Node::new();
    let s = n.p("secret.yaml");
    std::fs::write(&s, secret(TWO, "false", false)).unwrap();
    let sock_path = n.p("notify.sock");
    let _sock = UnixDatagram::bind(&sock_path).unwrap();
    n.start(
        &["--secret-file", s.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap().to_string()),
            ("WATCHDOG_USEC", "100000".to_string()),
        ],
    );
    within(Duration::from_secs(5), "first apply", || {
        n.config().contains("quay.io")
    });
    std::thread::sleep(Duration::from_secs(2));
    write_atomically(&s, &secret(ONE, "false", false));
    within(Duration::from_secs(3), "an edit is still applied", || {
        !n.config().contains("quay.io")
    });
    let t0 = Instant::now();
    assert_eq!(n.stop().0, Some(0));
    eprintln!(
        "SIGTERM → exit with a full notify socket: {:?}",
        t0.elapsed()
    );
}

#[test]
fn password_never_appears_in_any_output() {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("robot:{PASSWORD}"));
    let mut n = Node::new();
    let s = n.p("secret.yaml");
    std::fs::write(&s, secret(TWO, "false", true)).unwrap();
    let sp = s.to_str().unwrap().to_string();
    let paths = [
        "--config".to_string(),
        n.p("config.toml").to_str().unwrap().to_string(),
        "--certs-dir".to_string(),
        n.p("certs.d").to_str().unwrap().to_string(),
        "--state-dir".to_string(),
        n.p("state").to_str().unwrap().to_string(),
    ];
    let mut outputs = Vec::new();
    let one_shot = |args: &[&str]| {
        let o = Command::new(common::BIN)
            .args(args)
            .env("REGMIRROR_LOG", "trace")
            .env("REGMIRROR_CONTAINERD_VERSION", "unknown")
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let p: Vec<&str> = paths.iter().map(String::as_str).collect();
    for cmd in ["diff", "show"] {
        let mut a = vec![cmd, "--secret-file", &sp];
        if cmd == "diff" {
            a.extend(&p);
        }
        outputs.push((cmd.to_string(), one_shot(&a)));
    }
    // Both modes: legacy writes config.toml auth, hosts writes a Basic header.
    n.start(
        &["--secret-file", &sp, "--mode", "hosts"],
        &[("REGMIRROR_LOG", "trace".into())],
    );
    within(Duration::from_secs(5), "applied", || {
        n.p("certs.d/docker.io/hosts.toml").exists()
    });
    // the credential really is in the hosts.toml (where containerd needs it), 0600
    let hosts = std::fs::read_to_string(n.p("certs.d/docker.io/hosts.toml")).unwrap();
    assert!(hosts.contains(&token));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(n.p("certs.d/docker.io/hosts.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    outputs.push(("metrics".into(), n.http("/metrics").1));
    outputs.push(("readyz".into(), n.http("/readyz").1));
    // an invalid update (USERNAME without PASSWORD would not show it; a bad INSECURE does not either)
    write_atomically(&s, &secret(TWO, "perhaps", true));
    within(Duration::from_secs(3), "rejected", || {
        n.http("/readyz").0 == 503
    });
    let (_, log) = n.stop();
    outputs.push(("run log (trace)".into(), log));
    let mut a = vec!["diff", "--secret-file", &sp];
    a.extend(&p);
    outputs.push(("diff after apply".into(), one_shot(&a)));
    let state = std::fs::read_to_string(n.p("state/state.json")).unwrap_or_default();
    outputs.push(("state.json".into(), state));
    for (what, out) in &outputs {
        assert!(!out.contains(PASSWORD), "PASSWORD in {what}:\n{out}");
        assert!(!out.contains(&token), "base64 credential in {what}:\n{out}");
    }
    assert!(
        outputs.iter().any(|(_, o)| o.contains("***")),
        "redaction marker shown"
    );
}
