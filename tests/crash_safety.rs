//! Crash safety: `regmirror apply` is killed with SIGKILL at random moments (bounded: 1,000 kills
//! or 150 s) on a real file system, alternating between two Secrets in hosts mode with
//! credentials (several files + config.toml per apply). After each kill, every file is exactly
//! the bytes of one of the known states and parses, the lock is free, and the next complete
//! apply converges to exactly the reference tree. At the end, revert gives the original back.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;

const BIN: &str = env!("CARGO_BIN_EXE_regmirror");
const KILLS: usize = 1000;
const TIME_LIMIT: Duration = Duration::from_secs(150);

const CONFIG: &str = "# node config\nversion = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.9\"\n  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n    config_path = \"\"\n";

fn secret(mirrors: &str, user: &str) -> String {
    format!(
        "kind: Secret\nmetadata: {{name: registry-info, namespace: jet-system}}\nstringData:\n  DOMAIN: harbor.example.org\n  BASE_PATH: airgap-images\n  INSECURE: \"false\"\n  USERNAME: {user}\n  PASSWORD: pw-{user}\n  MIRROR_REGISTRIES: \"{mirrors}\"\n"
    )
}

/// regmirror's temp files under `root` (a killed run may leave one; the next run removes it).
fn temp_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if name.contains(".regmirror-") && name.ends_with(".tmp") {
                out.push(p);
            }
        }
    }
    out
}

/// Every regular file under `root` (relative path → bytes), the lock and temp files excluded
/// (temp files are checked by [`temp_files`]).
fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                let name = rel.file_name().unwrap().to_string_lossy().to_string();
                if name == "lock" || name.ends_with(".tmp") {
                    continue;
                }
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn args(root: &Path, secret: &Path, cmd: &str) -> Vec<String> {
    let mut a = vec![cmd.to_string()];
    if cmd != "revert" {
        a.extend([
            "--secret-file".into(),
            secret.display().to_string(),
            "--mode".into(),
            "hosts".into(),
        ]);
    }
    for (flag, sub) in [
        ("--config", "etc/config.toml"),
        ("--certs-dir", "etc/certs.d"),
        ("--state-dir", "state"),
    ] {
        a.push(flag.into());
        a.push(root.join(sub).display().to_string());
    }
    a
}

fn run_ok(root: &Path, secret: &Path, cmd: &str) {
    let out = Command::new(BIN)
        .args(args(root, secret, cmd))
        .env("REGMIRROR_CONTAINERD_VERSION", "unknown")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fresh(root: &Path) {
    let _ = fs::remove_dir_all(root);
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/config.toml"), CONFIG).unwrap();
}

/// The managed part of a tree: config.toml and certs.d (state and backup vary with history).
fn managed(t: &BTreeMap<PathBuf, Vec<u8>>) -> BTreeMap<PathBuf, Vec<u8>> {
    t.iter()
        .filter(|(p, _)| p.starts_with("etc/certs.d") || p == &Path::new("etc/config.toml"))
        .map(|(p, b)| (p.clone(), b.clone()))
        .collect()
}

#[test]
fn sigkill_at_random_moments_leaves_whole_files_and_converges() {
    let work = tempfile::tempdir().unwrap();
    let secrets = [
        (
            work.path().join("a.yaml"),
            secret(
                "docker.io::harbor.example.org/airgap-images/docker.io,quay.io::harbor.example.org/airgap-images/quay.io",
                "alice",
            ),
        ),
        (
            work.path().join("b.yaml"),
            secret(
                "docker.io::mirror.example.net/cache/docker.io,gcr.io::mirror.example.net/cache/gcr.io",
                "bob",
            ),
        ),
    ];
    for (p, s) in &secrets {
        fs::write(p, s).unwrap();
    }

    // Reference trees: the original, and each Secret applied from the original.
    let root = work.path().join("node");
    fresh(&root);
    let original = managed(&tree(&root));
    let mut reference = Vec::new();
    let mut durations = Vec::new();
    for (p, _) in &secrets {
        fresh(&root);
        let t0 = Instant::now();
        run_ok(&root, p, "apply");
        durations.push(t0.elapsed());
        reference.push(managed(&tree(&root)));
    }
    // Every byte string a file may legally hold at any moment.
    let mut allowed: BTreeMap<PathBuf, Vec<Option<Vec<u8>>>> = BTreeMap::new();
    for t in std::iter::once(&original).chain(reference.iter()) {
        for p in original
            .keys()
            .chain(reference[0].keys())
            .chain(reference[1].keys())
        {
            allowed
                .entry(p.clone())
                .or_default()
                .push(t.get(p).cloned());
        }
    }
    // Calibrate on warm, changing applies (A → B → A …): kill moments are drawn from 0..median.
    for i in 0..7 {
        let t0 = Instant::now();
        run_ok(&root, &secrets[i % 2].0, "apply");
        durations.push(t0.elapsed());
    }
    durations.sort();
    let apply_time = durations[durations.len() / 2];
    eprintln!(
        "a complete changing apply takes {apply_time:?} (median) here; kill moments drawn from 0..{apply_time:?}"
    );

    fresh(&root);
    let mut rng = rand::rng();
    let _ = &durations;
    let t0 = Instant::now();
    let (mut kills, mut finished_before_kill) = (0usize, 0usize);
    let mut temps_after_kills = 0usize;
    while kills < KILLS && t0.elapsed() < TIME_LIMIT {
        let which = rng.random_range(0..2);
        let mut child = Command::new(BIN)
            .args(args(&root, &secrets[which].0, "apply"))
            .env("REGMIRROR_CONTAINERD_VERSION", "unknown")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = rng.random_range(Duration::ZERO..apply_time);
        std::thread::sleep(delay);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let status = child.wait().unwrap();
        if status.code().is_some() {
            finished_before_kill += 1;
        }
        kills += 1;
        temps_after_kills += temp_files(&root).len();

        // Every file: whole, one of the known versions, and TOML that parses.
        let now = managed(&tree(&root));
        for (p, versions) in &allowed {
            let cur = now.get(p).cloned();
            assert!(
                versions.contains(&cur),
                "after kill {kills} ({delay:?}): {} holds bytes of no known state",
                p.display()
            );
            if let Some(bytes) = cur {
                let text = String::from_utf8(bytes).unwrap();
                if p.extension().is_some_and(|e| e == "toml") {
                    text.parse::<toml_edit::DocumentMut>()
                        .unwrap_or_else(|e| panic!("{} does not parse: {e}", p.display()));
                }
            }
        }
        for p in now.keys() {
            assert!(
                allowed.contains_key(p),
                "after kill {kills}: unexpected file {}",
                p.display()
            );
        }
        // The lock is free (the kernel releases a dead process's flock).
        let lock = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(root.join("state/lock"));
        if let Ok(f) = lock {
            nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
                .map_err(|(_, e)| e)
                .unwrap_or_else(|e| panic!("lock still held after kill {kills}: {e}"));
        }
        // Every 10th kill: the next complete apply converges to exactly the reference tree.
        if kills % 10 == 0 {
            let target = rng.random_range(0..2);
            run_ok(&root, &secrets[target].0, "apply");
            assert_eq!(
                managed(&tree(&root)),
                reference[target],
                "apply after kill {kills} did not converge"
            );
            let left = temp_files(&root);
            assert!(
                left.is_empty(),
                "temp files left after a complete apply: {left:?}"
            );
        }
    }
    eprintln!(
        "{kills} SIGKILLs in {:?} ({finished_before_kill} runs had already finished); every file whole after each; {temps_after_kills} temp files seen right after kills, none after a complete apply or revert",
        t0.elapsed()
    );
    assert!(kills >= 100, "too few kills in the time limit: {kills}");
    assert!(finished_before_kill < kills, "no kill landed mid-run");
    // Converge, then revert: the original bytes, no managed file left.
    run_ok(&root, &secrets[0].0, "apply");
    assert_eq!(managed(&tree(&root)), reference[0]);
    run_ok(&root, &secrets[0].0, "revert");
    assert_eq!(
        managed(&tree(&root)),
        original,
        "revert after the storm gives the original back"
    );
    let left = temp_files(&root);
    assert!(left.is_empty(), "temp files left after revert: {left:?}");
}
