//! The DaemonSet's pod for real (`tests/daemonset_pod.rs`): the image built from
//! `packaging/Containerfile` ([`image`]), the manifest translated into kubelet's CRI calls
//! ([`translate`]), a CRI runtime client for them ([`cri`]), and what kubelet does around a pod:
//! a Secret volume in kubelet's atomic-writer layout ([`SecretVolume`]), a CNI network for the
//! node ([`cni_bin_dir`], [`CNI_CONFLIST`]), HTTP probes in the pod's network namespace
//! ([`probe`]).
//!
//! Built on `tests/support` and `tests/node_support`: a test crate declares `mod support;`,
//! `mod node_support;` and `mod pod_support;`.

#![allow(dead_code)]

pub mod cri;
pub mod image;
pub mod translate;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::node_support::{Node, tool};
use crate::support::{missing_binaries, stdout, which};

/// Host binaries the pod test needs (binary, Debian package); all are in
/// `scripts/install-deps.sh`.
pub const HOST_BINS: &[(&str, &str)] = &[
    ("systemd-nspawn", "systemd-container"),
    ("nsenter", "util-linux"),
    ("buildah", "buildah"),
    ("catatonit", "catatonit"),
    ("strip", "binutils"),
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
];

/// Where Debian's `containernetworking-plugins` puts the CNI plugins (`loopback` is taken from
/// there).
pub const HOST_CNI_BIN: &str = "/usr/lib/cni";

/// The pod network's stand-in CNI plugin (see [`cni_bin_dir`]).
const POD_NET_PLUGIN: &str = r#"#!/bin/sh
# Written by tests/pod_support: the pod network's stand-in. It configures nothing: it reports
# the pod's eth0 with a documentation address (RFC 5737, never contacted), which containerd's CRI
# requires of every non-host-network sandbox. containerd brings the pod's lo up itself (loopback).
case "$CNI_COMMAND" in
ADD) cat >/dev/null
     printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"address":"192.0.2.10/32","interface":0}]}' "$CNI_IFNAME" "$CNI_NETNS" ;;
VERSION) printf '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}' ;;
*) cat >/dev/null ;;
esac
"#;

/// The node's CNI network configuration (`/etc/cni/net.d`), for [`cni_bin_dir`]'s plugin.
pub const CNI_CONFLIST: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "regmirror-test-pod-net",
  "plugins": [{ "type": "regmirror-test-pod-net" }]
}
"#;

/// Fills `dir` (bound into the node at containerd's default `bin_dir`, `/opt/cni/bin`) with the
/// real `loopback` plugin (containerd runs it for every pod's `lo`) and the stand-in pod network
/// plugin. A real pod network plugin (bridge, ptp, veth) would create links in the HOST's
/// network namespace, which the nodes share; with this one the pod has its own network
/// namespace (`hostNetwork: false`) with only `lo`: the agent listens on `0.0.0.0:9464` there,
/// and the probes connect to it there ([`probe`]).
pub fn cni_bin_dir(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir).unwrap();
    fs::copy(
        Path::new(HOST_CNI_BIN).join("loopback"),
        dir.join("loopback"),
    )
    .unwrap();
    let plugin = dir.join("regmirror-test-pod-net");
    fs::write(&plugin, POD_NET_PLUGIN).unwrap();
    fs::set_permissions(&plugin, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Skips (false, with the reason printed) only when not root. As root a missing tool is a
/// failure naming the package to install (`scripts/install-deps.sh` installs them all).
pub fn prerequisites(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "skipped: {test}: must run as root (systemd-nspawn, buildah and containerd need it)"
        );
        return false;
    }
    let mut problems: Vec<String> = missing_binaries(HOST_BINS.iter().copied())
        .into_iter()
        .collect();
    if !tool().is_file() {
        problems.push(format!("{} is missing", tool().display()));
    }
    if !Path::new(HOST_CNI_BIN).join("loopback").exists() {
        problems.push(format!(
            "{HOST_CNI_BIN}/loopback is missing: apt-get install -y containernetworking-plugins"
        ));
    }
    if which("debootstrap").is_none() {
        problems.push("missing debootstrap: apt-get install -y debootstrap".into());
    }
    assert!(
        problems.is_empty(),
        "{test}: prerequisites missing (run scripts/install-deps.sh): {}",
        problems.join("; ")
    );
    true
}

/// A random-enough pod UID (kubelet's are UUIDs; only uniqueness matters here).
pub fn pod_uid() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{:08x}-{:04x}-4000-8000-{:012x}",
        t as u32,
        std::process::id() as u16,
        N.fetch_add(1, Ordering::SeqCst) as u64 + (t >> 32) as u64
    )
}

/// A Secret volume as kubelet's atomic writer lays it out, in a node directory seen from the
/// host: `KEY -> ..data/KEY`, `..data -> ..<generation>/`; an update writes a new generation
/// and renames a `..data_tmp` symlink over `..data` (one atomic switch).
pub struct SecretVolume {
    pub dir: PathBuf,
    generation: usize,
}

impl SecretVolume {
    pub fn new(dir: PathBuf) -> SecretVolume {
        fs::create_dir_all(&dir).unwrap();
        SecretVolume { dir, generation: 0 }
    }

    /// Writes `keys` as the volume's next generation and switches `..data` to it.
    pub fn write(&mut self, keys: &[(&str, String)]) {
        self.generation += 1;
        let gen_name = format!(
            "..2026_12_01_00_00_{:02}.{}",
            self.generation,
            std::process::id()
        );
        let gen_dir = self.dir.join(&gen_name);
        fs::create_dir_all(&gen_dir).unwrap();
        for (k, v) in keys {
            fs::write(gen_dir.join(k), v).unwrap();
        }
        let tmp = self.dir.join("..data_tmp");
        let _ = fs::remove_file(&tmp);
        symlink(&gen_name, &tmp).unwrap();
        let old = fs::read_link(self.dir.join("..data")).ok();
        fs::rename(&tmp, self.dir.join("..data")).unwrap();
        for (k, _) in keys {
            let link = self.dir.join(k);
            if fs::symlink_metadata(&link).is_err() {
                symlink(format!("..data/{k}"), &link).unwrap();
            }
        }
        if let Some(old) = old {
            let _ = fs::remove_dir_all(self.dir.join(old));
        }
    }
}

/// The Secret's keys as a mounted Secret volume holds them.
pub fn secret_keys(s: &crate::support::cli::Secret) -> Vec<(&'static str, String)> {
    vec![
        ("DOMAIN", s.domain.clone()),
        ("BASE_PATH", s.base_path.clone()),
        ("USERNAME", s.username.clone()),
        ("PASSWORD", s.password.clone()),
        ("INSECURE", if s.insecure { "true" } else { "false" }.into()),
        ("CA_CERT", s.ca_cert.clone()),
        ("MIRROR_REGISTRIES", s.mirror_registries.clone()),
    ]
}

/// An HTTP GET of `path` on 127.0.0.1:`port` inside the network namespace of the node's process
/// `pid` (a pod's), with bash's /dev/tcp (the pod has no IP reachable from the host). Returns
/// (status, body), or `None` if nothing answered within 5 s.
pub fn probe(node: &Node, pid: u32, port: u16, path: &str) -> Option<(u16, String)> {
    let script = format!(
        "timeout 5 nsenter -t {pid} -n bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port} && \
         printf \"GET {path} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n\" >&3 && cat <&3'"
    );
    let out = node.exec(&script);
    if !out.status.success() {
        return None;
    }
    let text = stdout(&out);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Some((status, body))
}
