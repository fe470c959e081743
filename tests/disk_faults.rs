//! Disk faults on real mounts (as root): /etc/containerd on a full tmpfs, and on a read-only
//! one. `apply` must fail with a clear error and change 0 bytes; once space is back, the same
//! apply converges. Skips unless root (REGMIRROR_E2E=1 makes that a failure).

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_regmirror");
const CONFIG: &str = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.9\"\n";
const SECRET: &str = "kind: Secret\nmetadata: {name: registry-info, namespace: jet-system}\nstringData:\n  DOMAIN: harbor.example.org\n  BASE_PATH: airgap-images\n  INSECURE: \"false\"\n  USERNAME: robot\n  PASSWORD: disk-fault-pw\n  MIRROR_REGISTRIES: docker.io::harbor.example.org/airgap-images/docker.io,quay.io::harbor.example.org/airgap-images/quay.io\n";

fn can_mount() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("REGMIRROR_E2E").as_deref() != Ok("1"),
        "disk fault tests need root (mount -t tmpfs)"
    );
    eprintln!("skipped: disk fault tests need root");
    false
}

/// A tmpfs mounted at `dir`, unmounted on drop (also when the test fails).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
    fn remount(&self, opts: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Every path under `dir` with its size and a hash of its bytes (directories end in `/`).
fn snapshot(dir: &Path) -> Vec<(String, usize, u64)> {
    use std::hash::{Hash, Hasher};
    let mut out: Vec<(String, usize, u64)> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.push((format!("{}/", p.display()), 0, 0));
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                out.push((p.display().to_string(), bytes.len(), h.finish()));
            }
        }
    }
    out.sort();
    out
}

fn apply(root: &Path, mode: &str) -> std::process::Output {
    Command::new(BIN)
        .env("REGMIRROR_CONTAINERD_VERSION", "unknown")
        .args(["apply", "--secret-file"])
        .arg(root.join("secret.yaml"))
        .args(["--mode", mode, "--config"])
        .arg(root.join("etc/config.toml"))
        .arg("--certs-dir")
        .arg(root.join("etc/certs.d"))
        .arg("--state-dir")
        .arg(root.join("state"))
        .output()
        .unwrap()
}

#[test]
fn full_disk_fails_cleanly_and_changes_nothing() {
    if !can_mount() {
        return;
    }
    for mode in ["legacy", "hosts"] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("secret.yaml"), SECRET).unwrap();
        let etc = root.join("etc");
        let fs = Tmpfs::mount(&etc, "32k");
        std::fs::write(etc.join("config.toml"), CONFIG).unwrap();
        // Fill the file system to the last byte.
        let filler = etc.join("filler");
        let mut size = 32 * 1024;
        while size > 0 {
            let buf = vec![b'x'; size];
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&filler)
                .unwrap();
            if f.write_all(&buf).is_err() {
                size /= 2;
            }
        }
        let before = snapshot(&etc);
        let out = apply(root, mode);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{mode}: {err}");
        assert!(err.contains("No space left on device"), "{mode}: {err}");
        assert!(!err.contains("disk-fault-pw"));
        assert_eq!(
            snapshot(&etc),
            before,
            "{mode}: a full disk changes no byte (no temp file left)"
        );
        assert!(
            !root.join("state/state.json").exists(),
            "{mode}: no in-flight state left"
        );
        // Space back: the same apply converges.
        std::fs::remove_file(&filler).unwrap();
        let out = apply(root, mode);
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(std::fs::read_to_string(etc.join("config.toml")).unwrap() != CONFIG);
        drop(fs);
    }
}

#[test]
fn read_only_directory_fails_cleanly_and_changes_nothing() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::write(root.join("secret.yaml"), SECRET).unwrap();
    let etc = root.join("etc");
    let fs = Tmpfs::mount(&etc, "1m");
    std::fs::write(etc.join("config.toml"), CONFIG).unwrap();
    fs.remount("ro");
    let before = snapshot(&etc);
    let out = apply(root, "legacy");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(
        err.contains("config.toml"),
        "the error names the file: {err}"
    );
    assert_eq!(snapshot(&etc), before);
    fs.remount("rw");
    assert!(apply(root, "legacy").status.success());
}
