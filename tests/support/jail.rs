//! A throw-away root for commands that must see a node's absolute paths (`/etc/containerd`,
//! `/var/snap/microk8s/...`, `/etc/cri/conf.d`) without touching this machine's: each command
//! runs in a new mount namespace (`unshare --mount --propagation private`) chrooted into a temp
//! dir that has the machine's `/usr` (and `/dev`, `/proc`) bound in and its own `/etc`, `/var`,
//! `/run`. The mounts die with the command's namespace; the temp dir is only removed when
//! `/proc/self/mountinfo` shows none of them left (else it is kept, and says so).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The root and its temp dir.
pub struct Jail {
    pub root: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl Jail {
    pub fn new() -> Jail {
        let dir = super::temp_dir("jail");
        let root = dir.path().join("root");
        for d in [
            "usr",
            "dev",
            "proc",
            "tmp",
            "etc",
            "var",
            "run",
            "opt/bin",
            "opt/containerd",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for (link, to) in [
            ("bin", "usr/bin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
            ("sbin", "usr/sbin"),
        ] {
            std::os::unix::fs::symlink(to, root.join(link)).unwrap();
        }
        std::fs::write(root.join("opt/bin/regmirror"), "").unwrap();
        Jail {
            root,
            dir: Some(dir),
        }
    }

    /// Where the jail's absolute path `p` is on this machine.
    pub fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// Runs `argv` inside the jail, with regmirror at `/opt/bin/regmirror` and the directory
    /// `containerd_bin` (a release's `usr/bin`) at `/opt/containerd`.
    pub fn run(&self, containerd_bin: &Path, argv: &[&str]) -> Output {
        const SETUP: &str = r#"set -e
R=$1; BIN=$2; CTD=$3; shift 3
mount --rbind /usr "$R/usr"
mount --bind /dev "$R/dev"
mount -t proc proc "$R/proc"
mount --bind "$BIN" "$R/opt/bin/regmirror"
mount --bind "$CTD" "$R/opt/containerd"
exec chroot "$R" "$@""#;
        Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--fork",
                "--",
                "sh",
                "-c",
                SETUP,
                "sh",
            ])
            .arg(&self.root)
            .arg(super::cli::BIN)
            .arg(containerd_bin)
            .args(argv)
            .env("PATH", "/opt/containerd:/usr/bin:/usr/sbin")
            .env_remove("REGMIRROR_E2E")
            .output()
            .unwrap_or_else(|e| panic!("cannot run unshare: {e}"))
    }
}

impl Drop for Jail {
    fn drop(&mut self) {
        let root = self.root.to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if mounts.lines().any(|l| l.contains(&root)) {
            let kept = self.dir.take().map(|d| d.keep());
            eprintln!("jail: mounts under {root} are still there; kept {kept:?}");
        }
    }
}
