//! `regmirror run --runtime podman`: the agent keeps the containers-registries.conf files of a
//! Podman host (a registries.conf.d drop-in, the certs dir, the auth file) in step with the
//! Secret file: it writes byte for byte what a one-shot `apply --runtime podman` writes (which
//! `tests/podman.rs` proves with real Podman pulls through a mirror), follows an edit, and
//! reverts when the Secret goes away. No containerd, no reload.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::agent::AgentProcess;

fn secret_pairs(domain: &str) -> Vec<(String, String)> {
    let mut p = common::base_pairs(&format!("docker.io::{domain}/airgap-images/docker.io"));
    common::set(&mut p, "DOMAIN", domain);
    common::set(&mut p, "USERNAME", "robot");
    common::set(&mut p, "PASSWORD", "podman-agent-pw-1");
    p
}

fn podman_args(dir: &Path) -> Vec<String> {
    [
        ("--runtime", "podman".to_string()),
        (
            "--registries-conf-d",
            dir.join("containers/registries.conf.d")
                .display()
                .to_string(),
        ),
        (
            "--containers-certs-dir",
            dir.join("containers/certs.d").display().to_string(),
        ),
        (
            "--auth-file",
            dir.join("containers/auth.json").display().to_string(),
        ),
        ("--state-dir", dir.join("state").display().to_string()),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_string(), v])
    .collect()
}

/// `regmirror run` on the Secret file with these runtime arguments and `extra`, quick to react
/// (100 ms debounce), no restart budget, nothing from the caller's REGMIRROR_* environment.
fn agent_command(secret: &Path, runtime: Vec<String>, extra: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(common::BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("REGMIRROR_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("run")
        .args(["--secret-file", secret.to_str().unwrap()])
        .args(runtime)
        .args(extra)
        .args([
            "--debounce",
            "100ms",
            "--restart-jitter",
            "0",
            "--restart-budget",
            "0",
        ]);
    cmd
}

fn drop_in(dir: &Path) -> PathBuf {
    dir.join("containers/registries.conf.d/50-regmirror.conf")
}

/// What a one-shot `apply --runtime podman` writes for `pairs`, in a fresh tree.
fn one_shot(pairs: &[(String, String)]) -> (String, String) {
    let t = tempfile::tempdir().unwrap();
    let secret = t.path().join("secret.yaml");
    std::fs::write(&secret, common::manifest(pairs)).unwrap();
    let mut a = vec![
        "apply".to_string(),
        "--secret-file".into(),
        secret.display().to_string(),
    ];
    a.extend(podman_args(t.path()));
    let o = common::run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", common::show(&o));
    (
        std::fs::read_to_string(drop_in(t.path())).unwrap(),
        std::fs::read_to_string(t.path().join("containers/auth.json")).unwrap(),
    )
}

fn until(what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !ok() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    t0.elapsed()
}

#[test]
fn run_runtime_podman_follows_the_secret_and_reverts() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let secret = dir.join("secret.yaml");
    let a = secret_pairs("harbor.example.org");
    std::fs::write(&secret, common::manifest(&a)).unwrap();
    let make = || agent_command(&secret, podman_args(dir), &["--reload", "none"]);
    let mut agent = AgentProcess::spawn(make, &dir.join("agent.log"), true);

    let took = until("the drop-in", || drop_in(dir).exists());
    let want = one_shot(&a);
    until("the auth file", || {
        dir.join("containers/auth.json").exists()
    });
    assert_eq!(
        std::fs::read_to_string(drop_in(dir)).unwrap(),
        want.0,
        "drop-in"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("containers/auth.json")).unwrap(),
        want.1,
        "auth file"
    );
    eprintln!("first Secret → drop-in written {took:.2?} after start, identical to `apply`");

    let b = secret_pairs("mirror.example.net");
    std::fs::write(&secret, common::manifest(&b)).unwrap();
    let took = until("the edit", || {
        std::fs::read_to_string(drop_in(dir)).is_ok_and(|s| s.contains("mirror.example.net"))
    });
    let want = one_shot(&b);
    assert_eq!(std::fs::read_to_string(drop_in(dir)).unwrap(), want.0);
    eprintln!("Secret edit → drop-in rewritten in {took:.2?}");

    std::fs::remove_file(&secret).unwrap();
    let took = until("the revert", || {
        !drop_in(dir).exists() && !dir.join("containers/auth.json").exists()
    });
    eprintln!("Secret deleted → reverted in {took:.2?}");
    let log = agent.log();
    assert!(!log.contains("podman-agent-pw-1"), "PASSWORD in the log");
    assert!(!log.contains("containerd restart"), "{log}");
    agent.stop();
}

/// `run --runtime crio`: the same files, and CRI-O's documented reload after each change.
/// CRI-O is not packaged here: a stand-in process with a SIGHUP trap (its PID in
/// `--crio-pid-file`) records every reload. One SIGHUP per change, none for a resync or an
/// unchanged Secret.
#[test]
fn run_runtime_crio_sends_one_sighup_per_change() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let (pid_file, hups) = (dir.join("crio.pid"), dir.join("hups"));
    let script = format!(
        "trap 'echo hup >> {}' HUP; echo $$ > {}; while :; do sleep 0.05; done",
        hups.display(),
        pid_file.display()
    );
    let mut standin = std::process::Command::new("sh")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    until("the stand-in's pid file", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| p.ends_with('\n'))
    });
    let hup_count = || {
        std::fs::read_to_string(&hups)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let secret = dir.join("secret.yaml");
    std::fs::write(
        &secret,
        common::manifest(&secret_pairs("harbor.example.org")),
    )
    .unwrap();
    let make = || {
        let mut args = podman_args(dir);
        args[1] = "crio".into();
        let pid = pid_file.to_str().unwrap();
        agent_command(&secret, args, &["--crio-pid-file", pid, "--reload", "auto"])
    };
    let mut agent = AgentProcess::spawn(make, &dir.join("agent.log"), true);
    until("the first reload", || hup_count() == 1);
    std::fs::write(
        &secret,
        common::manifest(&secret_pairs("mirror.example.net")),
    )
    .unwrap();
    until("the reload for the edit", || hup_count() == 2);
    // The same Secret written again: no change, no reload.
    std::fs::write(
        &secret,
        common::manifest(&secret_pairs("mirror.example.net")),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        hup_count(),
        2,
        "a reload without a change:\n{}",
        agent.log()
    );
    assert!(
        agent.log().contains("SIGHUP") || agent.log().contains("reloaded CRI-O"),
        "{}",
        agent.log()
    );
    agent.stop();
    let _ = standin.kill();
    let _ = standin.wait();
}
