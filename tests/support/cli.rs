//! The regmirror binary under test, and the registry-info Secret manifests it reads.
//!
//! CLI contract used here:
//! `regmirror apply --secret-file F --config P --certs-dir D --state-dir D --mode M --reload none`
//! (exit 0, stdout has `restart needed: yes|no`; 2 on error), `regmirror revert` (same paths),
//! `regmirror diff` (0 no change, 1 changes, 2 error).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::containerd::Containerd;

pub const BIN: &str = env!("CARGO_BIN_EXE_regmirror");

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Auto,
    Legacy,
    Hosts,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Legacy => "legacy",
            Mode::Hosts => "hosts",
        }
    }
}

/// The keys of a registry-info Secret.
#[derive(Debug, Clone, Default)]
pub struct Secret {
    pub domain: String,
    pub base_path: String,
    pub username: String,
    pub password: String,
    pub insecure: bool,
    pub ca_cert: String,
    pub mirror_registries: String,
}

impl Secret {
    /// A Secret for a mirror host (`127.0.0.1:PORT`) under `airgap-images`, with
    /// MIRROR_REGISTRIES = `mirrors`.
    pub fn new(domain: &str, mirrors: &str) -> Secret {
        Secret {
            domain: domain.to_string(),
            base_path: "airgap-images".to_string(),
            mirror_registries: mirrors.to_string(),
            ..Secret::default()
        }
    }

    /// The manifest, as `kubectl create -f` would take it. Values are JSON-quoted (valid YAML
    /// double-quoted scalars), so PEM line breaks and password characters survive.
    pub fn manifest(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap();
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: registry-info\n  \
             namespace: jet-system\ntype: Opaque\nstringData:\n  DOMAIN: {}\n  BASE_PATH: {}\n  \
             USERNAME: {}\n  PASSWORD: {}\n  INSECURE: {}\n  CA_CERT: {}\n  \
             MIRROR_REGISTRIES: {}\n",
            q(&self.domain),
            q(&self.base_path),
            q(&self.username),
            q(&self.password),
            q(if self.insecure { "true" } else { "false" }),
            q(&self.ca_cert),
            q(&self.mirror_registries),
        )
    }

    /// Writes the manifest to `<node dir>/<name>.yaml`.
    pub fn write(&self, node: &Containerd, name: &str) -> PathBuf {
        let p = node.dir().join(format!("{name}.yaml"));
        std::fs::write(&p, self.manifest()).unwrap();
        p
    }
}

/// What a regmirror run printed.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The `restart needed: yes|no` line, if printed.
    pub fn restart_needed(&self) -> Option<bool> {
        self.stdout.lines().find_map(|l| {
            let v = l.trim().strip_prefix("restart needed:")?.trim();
            match v {
                "yes" => Some(true),
                "no" => Some(false),
                _ => None,
            }
        })
    }
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

/// Runs `regmirror <args>` with the node's `--config`, `--certs-dir`, `--state-dir` and its
/// CRI socket (`--containerd-socket`, `--host-pid 0`), with the node's release first on `PATH`:
/// regmirror learns the version itself (CRI Version, else `containerd --version`), as on a node.
pub fn regmirror(node: &Containerd, subcommand: &str, extra: &[&str]) -> Run {
    let mut cmd = Command::new(BIN);
    // Only the flags given here count: no REGMIRROR_* setting from the caller's environment.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("REGMIRROR_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .arg(subcommand)
        .arg("--config")
        .arg(&node.config)
        .arg("--certs-dir")
        .arg(&node.certs_dir)
        .arg("--state-dir")
        .arg(&node.state_dir)
        .arg("--containerd-socket")
        .arg(&node.socket)
        .args(["--host-pid", "0"])
        .args(extra)
        .env("PATH", node.release.path_env())
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
    Run::from(out)
}

fn secret_args(secret: &Path, mode: Mode) -> [&str; 4] {
    [
        "--secret-file",
        secret.to_str().unwrap(),
        "--mode",
        mode.as_str(),
    ]
}

/// `regmirror apply … --reload none`; panics (with its output and the config) unless exit 0
/// and a `restart needed:` line. Returns whether a restart is needed.
pub fn apply(node: &Containerd, secret: &Path, mode: Mode) -> (bool, Run) {
    let mut args = secret_args(secret, mode).to_vec();
    args.extend(["--reload", "none"]);
    let r = regmirror(node, "apply", &args);
    if r.code != 0 {
        panic!(
            "regmirror apply failed: {r}\nSecret:\n{}\nconfig.toml:\n{}",
            std::fs::read_to_string(secret).unwrap_or_default(),
            node.config_text()
        );
    }
    let restart = r
        .restart_needed()
        .unwrap_or_else(|| panic!("regmirror apply printed no `restart needed: yes|no` line: {r}"));
    (restart, r)
}

/// `regmirror diff`: 0 no change, 1 changes, 2 error.
pub fn diff(node: &Containerd, secret: &Path, mode: Mode) -> Run {
    regmirror(node, "diff", &secret_args(secret, mode))
}

/// `regmirror revert`; panics unless exit 0.
pub fn revert(node: &Containerd) -> Run {
    let r = regmirror(node, "revert", &[]);
    assert_eq!(r.code, 0, "regmirror revert failed: {r}");
    r
}

/// Everything regmirror wrote, for failure messages: config.toml and each hosts.toml.
pub fn written_files(node: &Containerd) -> String {
    let mut out = format!("=== {}\n{}", node.config.display(), node.config_text());
    let mut stack = vec![node.certs_dir.clone()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "toml") {
                out.push_str(&format!(
                    "=== {}\n{}",
                    p.display(),
                    std::fs::read_to_string(&p).unwrap_or_default()
                ));
            } else {
                out.push_str(&format!("=== {} (not shown)\n", p.display()));
            }
        }
    }
    out
}
