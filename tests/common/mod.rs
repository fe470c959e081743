//! Helpers shared by `golden.rs`, `roundtrip.rs` and `bad_input.rs`: Secret builders, the pure
//! render call, a readable dump of a render, a file-tree snapshot and the CLI runner; and the
//! agent's command line for `daemon_file.rs` and `daemon_kube.rs`.

#![allow(dead_code)]

pub mod agent;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use regmirror::render::{self, ConfigOwnership, Mode, RenderInput, Rendered};
use regmirror::spec::{RegistrySpec, SecretData, parse_spec};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_regmirror");

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the repository, as text.
pub fn read_repo(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// The fixed test CA (tests/fixtures/ca.pem, self-signed, valid until 2126).
pub fn ca_pem() -> String {
    read_repo("tests/fixtures/ca.pem")
}

/// Secret data from key/value pairs.
pub fn data(pairs: &[(&str, &str)]) -> SecretData {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// A valid base Secret: harbor.example.org under `airgap-images`, no credentials, no CA.
pub fn base_pairs(mirrors: &str) -> Vec<(String, String)> {
    vec![
        ("DOMAIN".into(), "harbor.example.org".into()),
        ("BASE_PATH".into(), "airgap-images".into()),
        ("USERNAME".into(), String::new()),
        ("PASSWORD".into(), String::new()),
        ("INSECURE".into(), "false".into()),
        ("CA_CERT".into(), String::new()),
        ("MIRROR_REGISTRIES".into(), mirrors.into()),
    ]
}

/// Replace (or add) one key of a pair list.
pub fn set(pairs: &mut Vec<(String, String)>, key: &str, value: &str) {
    match pairs.iter_mut().find(|(k, _)| k == key) {
        Some(p) => p.1 = value.to_string(),
        None => pairs.push((key.to_string(), value.to_string())),
    }
}

/// Secret data from an owned pair list.
pub fn data_of(pairs: &[(String, String)]) -> SecretData {
    pairs
        .iter()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect()
}

/// Parse a Secret that must be valid.
pub fn spec_of(pairs: &[(String, String)]) -> RegistrySpec {
    parse_spec(&data_of(pairs)).unwrap_or_else(|e| panic!("spec refused: {e}"))
}

/// A Secret manifest (`stringData`) holding `pairs`, as `kubectl` would accept it.
pub fn manifest(pairs: &[(String, String)]) -> String {
    let mut string_data = serde_yaml_ng::Mapping::new();
    for (k, v) in pairs {
        string_data.insert(k.clone().into(), v.clone().into());
    }
    let mut meta = serde_yaml_ng::Mapping::new();
    meta.insert("name".into(), "registry-info".into());
    meta.insert("namespace".into(), "jet-system".into());
    let mut doc = serde_yaml_ng::Mapping::new();
    doc.insert("apiVersion".into(), "v1".into());
    doc.insert("kind".into(), "Secret".into());
    doc.insert("metadata".into(), meta.into());
    doc.insert("type".into(), "Opaque".into());
    doc.insert("stringData".into(), string_data.into());
    serde_yaml_ng::to_string(&doc).expect("yaml")
}

/// The certs dir the golden and property tests render against.
pub const CERTS: &str = "/etc/containerd/certs.d";

/// The pure render, with certs dir [`CERTS`].
pub fn render(
    config: &str,
    prior: &ConfigOwnership,
    spec: Option<&RegistrySpec>,
    mode: Mode,
) -> Result<Rendered, render::RenderError> {
    render_at(config, prior, spec, mode, Path::new(CERTS))
}

/// The pure render with another certs dir.
pub fn render_at(
    config: &str,
    prior: &ConfigOwnership,
    spec: Option<&RegistrySpec>,
    mode: Mode,
    certs_dir: &Path,
) -> Result<Rendered, render::RenderError> {
    render::render(&RenderInput {
        config,
        prior,
        spec,
        mode,
        certs_dir,
        containerd: None,
        hosts: Default::default(),
    })
}

/// A readable dump of a render: config.toml, then every managed file with its mode.
pub fn dump(r: &Rendered) -> String {
    let mut out = format!("## mode: {:?}, config version: {:?}\n", r.mode, r.version);
    for w in &r.warnings {
        out.push_str(&format!("## warning: {w}\n"));
    }
    out.push_str("## ---- config.toml ----\n");
    out.push_str(&r.config);
    if !r.config.ends_with('\n') {
        out.push_str("\n## (no newline at end of config.toml)\n");
    }
    for f in &r.files {
        out.push_str(&format!(
            "## ---- {} (mode {:04o}) ----\n",
            f.path.display(),
            f.mode
        ));
        out.push_str(&String::from_utf8_lossy(&f.contents));
    }
    out
}

/// One entry of a directory tree snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { mode: u32, contents: Vec<u8> },
    Symlink { target: PathBuf },
    Other { mode: u32 },
}

/// Every path under `dir` (relative), its type, mode and contents.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Node> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).expect("under base").to_path_buf();
            let meta = fs::symlink_metadata(&p).expect("lstat");
            let mode = meta.permissions().mode() & 0o7777;
            let ft = meta.file_type();
            if ft.is_symlink() {
                out.insert(
                    rel,
                    Node::Symlink {
                        target: fs::read_link(&p).expect("readlink"),
                    },
                );
            } else if ft.is_dir() {
                out.insert(rel, Node::Dir { mode });
                walk(base, &p, out);
            } else if ft.is_file() {
                out.insert(
                    rel,
                    Node::File {
                        mode,
                        contents: fs::read(&p).expect("read"),
                    },
                );
            } else {
                out.insert(rel, Node::Other { mode });
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The differences between two tree snapshots, one line each (empty: identical).
pub fn tree_diff(before: &BTreeMap<PathBuf, Node>, after: &BTreeMap<PathBuf, Node>) -> Vec<String> {
    let mut out = Vec::new();
    for (p, n) in before {
        match after.get(p) {
            None => out.push(format!("removed {}", p.display())),
            Some(m) if m != n => out.push(format!("changed {}", p.display())),
            _ => {}
        }
    }
    for p in after.keys() {
        if !before.contains_key(p) {
            out.push(format!("added {}", p.display()));
        }
    }
    out
}

/// Inode and modification time of a file (to prove a no-op wrote nothing).
pub fn stamp(path: &Path) -> (u64, i64, i64) {
    let m = fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.ino(), m.mtime(), m.mtime_nsec())
}

/// Run the binary with `args`, with no REGMIRROR_* variable leaking in from the environment.
/// These tests are about files, not runtimes: the containerd version is `unknown` (decided from
/// config.toml alone) unless `args` name one, whatever containerd this machine has installed.
pub fn run(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("REGMIRROR_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("NO_COLOR", "1")
        .env("REGMIRROR_CONTAINERD_VERSION", "unknown");
    cmd.output().expect("run regmirror")
}

/// `regmirror run` on the containerd files in `dir` (`config.toml`, `certs.d`, `state`) as the
/// daemon tests run it: no reload, a 200 ms debounce, no restart jitter. The caller adds the
/// source, `--listen` and the environment. The containerd version is `unknown`, as in [`run`].
pub fn agent_command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("REGMIRROR_CONTAINERD_VERSION", "unknown");
    cmd.arg("run")
        .args(["--config", dir.join("config.toml").to_str().unwrap()])
        .args(["--certs-dir", dir.join("certs.d").to_str().unwrap()])
        .args(["--state-dir", dir.join("state").to_str().unwrap()])
        .args([
            "--reload",
            "none",
            "--debounce",
            "200ms",
            "--restart-jitter",
            "0",
        ]);
    cmd
}

/// stdout + stderr of a run, for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
