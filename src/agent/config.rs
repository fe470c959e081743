//! The agent's configuration as plain data (the command line builds it; nothing here knows
//! about flags).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::apply::Paths;
use crate::observe::LogFormat;
use crate::reload::Reloader;
use crate::render::Mode;
use crate::runtime::detect::Probe;
use crate::source::file::FileSecret;

/// What to do when the Secret is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDelete {
    /// Remove what regmirror owns and restore what was there.
    Revert,
    /// Leave the last applied configuration in place.
    Keep,
}

/// Where the Secret comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// A manifest file or a mounted Secret volume, watched with notify.
    File(FileSecret),
    /// The Kubernetes API: a watch on this one Secret.
    Api { namespace: String, name: String },
}

/// Everything `regmirror run` was told.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub secret: SecretSource,
    /// kubeconfig for the API (default: in-cluster, then $KUBECONFIG / ~/.kube/config).
    pub kubeconfig: Option<PathBuf>,
    /// The Node that gets Events and the spec-hash annotation.
    pub node_name: Option<String>,
    pub paths: Paths,
    pub mode: Mode,
    /// Strict air-gap and dial timeout for hosts.toml.
    pub hosts: crate::render::HostsOptions,
    /// `--runtime podman`: write containers-registries.conf files there instead of containerd's.
    pub podman: Option<crate::podman::PodmanPaths>,
    /// `--runtime crio`: how CRI-O is reloaded after a change of those files.
    pub crio: Option<crate::podman::crio::CrioReload>,
    pub reloader: Reloader,
    /// How to learn the containerd version (asked at every reconcile).
    pub probe: Probe,
    /// Random wait before a restart, 0 to this.
    pub restart_jitter: Duration,
    /// Restart slots across the fleet (0: no budget); see [`super::budget`].
    pub restart_budget: u32,
    /// How long a slot's Lease lives without renewal.
    pub restart_lease: Duration,
    /// Where the slot Leases live.
    pub lease_namespace: String,
    /// Quiet time that ends a burst of changes.
    pub debounce: Duration,
    /// Periodic safety reconcile.
    pub resync: Duration,
    pub on_delete: OnDelete,
    /// /healthz, /readyz, /metrics (`None`: off).
    pub listen: Option<SocketAddr>,
    pub log_format: LogFormat,
}
