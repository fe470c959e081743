//! Every flag of every command, in one place (each also from its `REGMIRROR_*` variable), and
//! their conversion into the plain configuration the layers below take: no clap type leaves
//! this module.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::agent::config::{AgentConfig, OnDelete, SecretSource};
use crate::apply::Paths;
use crate::observe::LogFormat;
use crate::reload::{ReloadStrategy, Reloader};
use crate::render::Mode;
use crate::runtime::VersionArg;
use crate::runtime::detect::Probe;
use crate::source::file::FileSecret;

#[derive(Parser, Debug)]
#[command(
    name = "regmirror",
    version = crate::observe::build::version(),
    about = "Point containerd at a private registry mirror, from the jet-system/registry-info Secret"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print a unified diff of every file apply would write (exit 0: no change, 1: changes, 2: error).
    Diff {
        #[command(flatten)]
        what: ApplyArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        runtime: RuntimeArgs,
        /// text (a unified diff), or json (schema regmirror.diff/v1, documented in the README).
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Write the configuration (exit 0: applied or unchanged, 2: error).
    Apply {
        #[command(flatten)]
        what: ApplyArgs,
        #[command(flatten)]
        reload: ReloadArgs,
    },
    /// Remove everything regmirror wrote and restore what it replaced.
    Revert {
        #[command(flatten)]
        paths: PathArgs,
        #[command(flatten)]
        reload: ReloadArgs,
        #[command(flatten)]
        podman: PodmanArgs,
    },
    /// Print the validated spec (PASSWORD as ***) and the containerd it would be rendered for.
    Show {
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        name: SecretName,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// The agent: watch the Secret and the files, reconcile, reload containerd.
    Run(Box<RunArgs>),
    /// Print the URLs containerd (or, with --runtime podman|crio, containers/image) will try
    /// for IMAGE, in order, from the files on disk now.
    Resolve {
        image: String,
        #[command(flatten)]
        files: ConfigFiles,
        #[command(flatten)]
        runtime: RuntimeArgs,
        #[command(flatten)]
        podman: PodmanArgs,
        /// --runtime podman|crio: the main registries.conf (read first; missing: skipped).
        #[arg(
            long,
            env = "REGMIRROR_REGISTRIES_CONF",
            value_name = "FILE",
            default_value = "/etc/containers/registries.conf"
        )]
        registries_conf: PathBuf,
        /// text, or json (schema regmirror.resolve/v1, or regmirror.resolve-podman/v1 with
        /// --runtime podman|crio; documented in the README).
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Probe every mirror endpoint (GET /v2/ with the CA and credentials containerd would use)
    /// and, with --image, which host would serve each image (exit 0: all fine, 1: something
    /// failed, 2: bad input).
    Check(Box<CheckArgs>),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) generated from these flags.
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) generated from these flags.
    #[command(hide = true)]
    Man,
}

/// What `diff` and `apply` render: the Secret, the files, the mode.
#[derive(Args, Debug, Clone)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub secret: SecretArgs,
    #[command(flatten)]
    pub name: SecretName,
    #[command(flatten)]
    pub paths: PathArgs,
    #[arg(long, env = "REGMIRROR_MODE", value_enum, default_value_t = ModeArg::Auto)]
    pub mode: ModeArg,
    #[command(flatten)]
    pub hosts: HostsArgs,
    #[command(flatten)]
    pub podman: PodmanArgs,
}

/// Which runtime's files `diff`, `apply`, `revert` and `resolve` use.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// containerd's config.toml / certs.d hosts.toml.
    Containerd,
    /// CRI-O: containers-registries.conf (as podman), then CRI-O's reload (SIGHUP).
    Crio,
    /// containers-registries.conf (Podman, CRI-O): a registries.conf.d drop-in, certs.d, auth file.
    Podman,
    /// containerd if its socket exists, else crio if its socket exists, else podman if on PATH.
    Auto,
}

/// `--runtime` and the containers-registries.conf paths (`--runtime podman`).
#[derive(Args, Debug, Clone)]
pub struct PodmanArgs {
    /// Which runtime's configuration to use (auto: detected, and said why on stderr).
    #[arg(long, env = "REGMIRROR_RUNTIME", value_enum, default_value_t = RuntimeKind::Containerd)]
    pub runtime: RuntimeKind,
    /// CRI-O's socket (--runtime auto picks crio when it exists and containerd's does not).
    #[arg(
        long,
        env = "REGMIRROR_CRIO_SOCKET",
        value_name = "PATH",
        default_value = "/var/run/crio/crio.sock"
    )]
    pub crio_socket: PathBuf,
    /// --runtime crio with --reload auto|systemd: send SIGHUP to the PID in this file instead
    /// of `systemctl reload <--crio-unit>`.
    #[arg(long, env = "REGMIRROR_CRIO_PID_FILE", value_name = "PATH")]
    pub crio_pid_file: Option<PathBuf>,
    /// --runtime crio: the systemd unit `systemctl reload` reloads.
    #[arg(long, env = "REGMIRROR_CRIO_UNIT", default_value = "crio.service")]
    pub crio_unit: String,
    /// --runtime podman: the drop-in directory (regmirror writes 50-regmirror.conf there).
    #[arg(
        long,
        env = "REGMIRROR_REGISTRIES_CONF_D",
        value_name = "DIR",
        default_value = "/etc/containers/registries.conf.d"
    )]
    pub registries_conf_d: PathBuf,
    /// --runtime podman: where CA_CERT goes (`<DIR>/<DOMAIN>/ca.crt`).
    #[arg(
        long,
        env = "REGMIRROR_CONTAINERS_CERTS_DIR",
        value_name = "DIR",
        default_value = "/etc/containers/certs.d"
    )]
    pub containers_certs_dir: PathBuf,
    /// --runtime podman: the containers-auth.json file regmirror merges its credentials into.
    #[arg(
        long,
        env = "REGMIRROR_AUTH_FILE",
        value_name = "FILE",
        default_value = "/etc/containers/auth.json"
    )]
    pub auth_file: PathBuf,
}

impl PodmanArgs {
    /// The runtime, `auto` decided from what exists (`containerd_socket`: --containerd-socket),
    /// and why when it was decided.
    pub fn decide(
        &self,
        containerd_socket: &std::path::Path,
    ) -> (crate::podman::auto::Runtime, Option<&'static str>) {
        use crate::podman::auto::{self, Runtime};
        match self.runtime {
            RuntimeKind::Containerd => (Runtime::Containerd, None),
            RuntimeKind::Crio => (Runtime::Crio, None),
            RuntimeKind::Podman => (Runtime::Podman, None),
            RuntimeKind::Auto => {
                let (r, why) = auto::decide(auto::probe(containerd_socket, &self.crio_socket));
                (r, Some(why))
            }
        }
    }
    /// How `apply|revert --runtime crio` reloads CRI-O for `--reload` (unset: none).
    pub fn crio_reload(
        &self,
        reload: Option<&ReloadStrategy>,
        host_pid: i32,
    ) -> crate::podman::crio::CrioReload {
        use crate::podman::crio::CrioReload;
        match reload {
            None | Some(ReloadStrategy::None) => CrioReload::None,
            Some(ReloadStrategy::Auto | ReloadStrategy::Systemd) => match &self.crio_pid_file {
                Some(p) => CrioReload::Signal {
                    pid_file: p.clone(),
                },
                None => CrioReload::Systemd {
                    unit: self.crio_unit.clone(),
                    host_pid,
                },
            },
            Some(ReloadStrategy::Command(c)) => CrioReload::Command {
                command: c.clone(),
                host_pid,
            },
        }
    }
    pub fn paths(&self, state_dir: &std::path::Path) -> crate::podman::PodmanPaths {
        crate::podman::PodmanPaths {
            conf_d: self.registries_conf_d.clone(),
            certs_dir: self.containers_certs_dir.clone(),
            auth_file: self.auth_file.clone(),
            state_dir: state_dir.to_path_buf(),
        }
    }
}

/// hosts.toml choices of the node, not of the Secret (its format stays as it is).
#[derive(Args, Debug, Clone)]
pub struct HostsArgs {
    /// Strict air-gap: no fallback to the upstream registry (hosts mode; the last mirror
    /// endpoint becomes hosts.toml's `server`). A pull the mirror cannot serve fails.
    #[arg(
        long,
        env = "REGMIRROR_STRICT_AIRGAP",
        value_parser = clap::builder::BoolishValueParser::new(),
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true"
    )]
    pub strict_airgap: bool,
    /// hosts.toml `dial_timeout` for every mirror host, so a dead mirror fails over fast
    /// (written for containerd ≥ 2.1, which reads it; "0s" writes none).
    #[arg(long, env = "REGMIRROR_DIAL_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub dial_timeout: Duration,
}

impl HostsArgs {
    pub fn options(&self) -> crate::render::HostsOptions {
        crate::render::HostsOptions {
            strict: self.strict_airgap,
            dial_timeout: Some(self.dial_timeout).filter(|d| !d.is_zero()),
        }
    }
}

/// Where the registry-info Secret is read from, for the one-shot commands.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct SecretArgs {
    /// A Secret manifest (YAML, one or more documents; stringData and/or base64 data).
    #[arg(long, env = "REGMIRROR_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// A directory of key files, as kubelet mounts a Secret volume.
    #[arg(long, env = "REGMIRROR_SECRET_DIR", value_name = "DIR")]
    pub secret_dir: Option<PathBuf>,
}

/// `diff --from-cluster`: the Secret from the Kubernetes API (one read-only GET), for an admin
/// off the node. Which Secret: `--secret-name` / `--secret-namespace`.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Read the Secret from the cluster (one GET, the admin's own kubeconfig) instead of a file.
    #[arg(long, group = "SecretArgs")]
    pub from_cluster: bool,
    /// kubeconfig for --from-cluster (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long, env = "REGMIRROR_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context for --from-cluster (default: its current context).
    #[arg(long, requires = "from_cluster")]
    pub context: Option<String>,
    /// How long the GET may take.
    #[arg(long, default_value = "30s", value_parser = parse_duration, requires = "from_cluster")]
    pub request_timeout: Duration,
}

/// Which Secret in a manifest (and, for `run`, in the cluster).
#[derive(Args, Debug, Clone)]
pub struct SecretName {
    /// The Secret's name (picks the document in a multi-document manifest).
    #[arg(long, env = "REGMIRROR_SECRET_NAME", default_value = "registry-info")]
    pub secret_name: String,
    /// The Secret's namespace (a manifest document naming another namespace is skipped).
    #[arg(long, env = "REGMIRROR_SECRET_NAMESPACE", default_value = "jet-system")]
    pub secret_namespace: String,
}

/// containerd's config.toml and the hosts directory (also what `resolve` reads).
#[derive(Args, Debug, Clone)]
pub struct ConfigFiles {
    /// containerd's config.toml.
    #[arg(
        long,
        env = "REGMIRROR_CONFIG",
        default_value = "/etc/containerd/config.toml"
    )]
    pub config: PathBuf,
    /// Where hosts.toml directories and CA files go (used as config_path in hosts mode; for
    /// `resolve`, containerd ≥ 2.2's default when config.toml sets no config_path).
    #[arg(
        long,
        env = "REGMIRROR_CERTS_DIR",
        default_value = "/etc/containerd/certs.d"
    )]
    pub certs_dir: PathBuf,
}

/// The files regmirror edits and its state.
#[derive(Args, Debug, Clone)]
pub struct PathArgs {
    #[command(flatten)]
    pub files: ConfigFiles,
    /// Where regmirror keeps its state file and lock.
    #[arg(
        long,
        env = "REGMIRROR_STATE_DIR",
        default_value = "/var/lib/regmirror"
    )]
    pub state_dir: PathBuf,
}

impl PathArgs {
    pub fn paths(&self) -> Paths {
        Paths {
            config: self.files.config.clone(),
            certs_dir: self.files.certs_dir.clone(),
            state_dir: self.state_dir.clone(),
        }
    }
}

/// Which containerd, and how to reach it: shared by every command that decides or reloads.
#[derive(Args, Debug, Clone)]
pub struct RuntimeArgs {
    /// containerd's version (e.g. 2.1.9): decide for it without asking the node (offline
    /// `diff`); `unknown` decides from config.toml alone. Unset: CRI Version over
    /// --containerd-socket, then `containerd --version`.
    #[arg(long, env = "REGMIRROR_CONTAINERD_VERSION", value_name = "VERSION")]
    pub containerd_version: Option<VersionArg>,
    /// containerd's CRI socket (version, health check, load verification).
    #[arg(
        long,
        env = "REGMIRROR_CONTAINERD_SOCKET",
        default_value = "/run/containerd/containerd.sock"
    )]
    pub containerd_socket: PathBuf,
    /// Run systemctl and `containerd --version` in the namespaces of this PID (1 = the host,
    /// from a hostPID pod; 0 = never enter other namespaces).
    #[arg(long, env = "REGMIRROR_HOST_PID", default_value_t = 1)]
    pub host_pid: i32,
}

impl RuntimeArgs {
    pub fn probe(&self) -> Probe {
        Probe {
            explicit: self.containerd_version,
            socket: self.containerd_socket.clone(),
            host_pid: self.host_pid,
        }
    }
}

/// Reload flags, shared by `apply`, `revert` and `run`.
#[derive(Args, Debug, Clone)]
pub struct ReloadArgs {
    /// none | auto | systemd | command:<cmd>. Default: none for apply/revert, auto for run.
    #[arg(long, env = "REGMIRROR_RELOAD")]
    pub reload: Option<ReloadStrategy>,
    /// The systemd unit to restart.
    #[arg(
        long,
        env = "REGMIRROR_CONTAINERD_UNIT",
        default_value = "containerd.service"
    )]
    pub containerd_unit: String,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// How long containerd may take to answer CRI Version and Status after a restart.
    #[arg(long, env = "REGMIRROR_HEALTH_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub health_timeout: Duration,
}

impl ReloadArgs {
    /// The reloader; `--reload` unset means `default`.
    pub fn reloader(&self, default: ReloadStrategy) -> Reloader {
        Reloader {
            strategy: self.reload.clone().unwrap_or(default),
            unit: self.containerd_unit.clone(),
            host_pid: self.runtime.host_pid,
            socket: self.runtime.containerd_socket.clone(),
            health_timeout: self.health_timeout,
            telemetry: None,
        }
    }
}

/// Flags of `regmirror run` (each also from its `REGMIRROR_*` variable).
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Watch a Secret manifest file instead of the Kubernetes API.
    #[arg(
        long,
        env = "REGMIRROR_SECRET_FILE",
        value_name = "FILE",
        conflicts_with = "secret_dir"
    )]
    pub secret_file: Option<PathBuf>,
    /// Watch a mounted Secret volume instead of the Kubernetes API.
    #[arg(long, env = "REGMIRROR_SECRET_DIR", value_name = "DIR")]
    pub secret_dir: Option<PathBuf>,
    #[command(flatten)]
    pub name: SecretName,
    /// kubeconfig for the API source (default: in-cluster, then $KUBECONFIG / ~/.kube/config).
    #[arg(long, env = "REGMIRROR_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    pub paths: PathArgs,
    #[arg(long, env = "REGMIRROR_MODE", value_enum, default_value_t = ModeArg::Auto)]
    pub mode: ModeArg,
    #[command(flatten)]
    pub hosts: HostsArgs,
    #[command(flatten)]
    pub podman: PodmanArgs,
    #[command(flatten)]
    pub reload: ReloadArgs,
    /// Random wait before a containerd restart, 0 to this (spreads restarts over a fleet).
    #[arg(long, env = "REGMIRROR_RESTART_JITTER", default_value = "30s", value_parser = parse_duration)]
    pub restart_jitter: Duration,
    /// Restart slots across the fleet: at most this many nodes restart containerd at once
    /// (coordination.k8s.io Leases in the Secret's namespace; needs NODE_NAME and the API; 0:
    /// no budget). A node whose restart is rolled back halts the rollout of that spec.
    #[arg(long, env = "REGMIRROR_RESTART_BUDGET", default_value_t = 1)]
    pub restart_budget: u32,
    /// A restart slot's Lease duration: a holder that dies frees its slot after this long.
    #[arg(long, env = "REGMIRROR_RESTART_LEASE", default_value = "60s", value_parser = parse_duration)]
    pub restart_lease: Duration,
    /// Quiet time that ends a burst of changes before reconciling.
    #[arg(long, env = "REGMIRROR_DEBOUNCE", default_value = "2s", value_parser = parse_duration)]
    pub debounce: Duration,
    /// Periodic safety reconcile (reads local files only; writes nothing when unchanged);
    /// 0s: none.
    #[arg(long, env = "REGMIRROR_RESYNC", default_value = "15m", value_parser = parse_duration)]
    pub resync: Duration,
    #[arg(long, env = "REGMIRROR_ON_DELETE", value_enum, default_value_t = OnDeleteArg::Revert)]
    pub on_delete: OnDeleteArg,
    /// Address for /healthz, /readyz and /metrics ("off" to disable).
    #[arg(long, env = "REGMIRROR_LISTEN", default_value = "127.0.0.1:9464")]
    pub listen: String,
    #[arg(long, env = "REGMIRROR_LOG_FORMAT", value_enum, default_value_t = LogFormatArg::Plain)]
    pub log_format: LogFormatArg,
    /// The Node to publish Events and the spec-hash annotation on (downward API).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
}

impl RunArgs {
    /// The agent's configuration; an unparsable `--listen` is an error naming it.
    pub fn config(&self) -> Result<AgentConfig, String> {
        let (runtime, why) = self.podman.decide(&self.reload.runtime.containerd_socket);
        if let Some(why) = why {
            eprintln!("runtime auto: {runtime} ({why})");
        }
        let listen = match self.listen.as_str() {
            "off" => None,
            l => Some(
                l.parse::<SocketAddr>()
                    .map_err(|_| format!("--listen {l:?} is not an address:port (or \"off\")"))?,
            ),
        };
        let secret = match (&self.secret_file, &self.secret_dir) {
            (Some(f), _) => SecretSource::File(FileSecret::Manifest {
                path: f.clone(),
                name: self.name.secret_name.clone(),
                namespace: Some(self.name.secret_namespace.clone()),
            }),
            (None, Some(d)) => SecretSource::File(FileSecret::Dir(d.clone())),
            (None, None) => SecretSource::Api {
                namespace: self.name.secret_namespace.clone(),
                name: self.name.secret_name.clone(),
            },
        };
        Ok(AgentConfig {
            secret,
            kubeconfig: self.kubeconfig.clone(),
            node_name: self.node_name.clone(),
            paths: self.paths.paths(),
            mode: self.mode.into(),
            hosts: self.hosts.options(),
            podman: runtime
                .is_containers()
                .then(|| self.podman.paths(&self.paths.state_dir)),
            // CRI-O caches registries.conf: reloaded (as --reload says, default auto) after a
            // change; Podman needs none.
            crio: (runtime == crate::podman::auto::Runtime::Crio).then(|| {
                let strategy = self.reload.reload.clone().unwrap_or(ReloadStrategy::Auto);
                self.podman
                    .crio_reload(Some(&strategy), self.reload.runtime.host_pid)
            }),
            reloader: self.reload.reloader(ReloadStrategy::Auto),
            probe: self.reload.runtime.probe(),
            restart_jitter: self.restart_jitter,
            restart_budget: self.restart_budget,
            restart_lease: self.restart_lease,
            lease_namespace: self.name.secret_namespace.clone(),
            debounce: self.debounce,
            resync: self.resync,
            on_delete: self.on_delete.into(),
            listen,
            log_format: self.log_format.into(),
        })
    }
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// hosts with containerd ≥ 2.0, or when config `version` ≥ 3 or `config_path` is set;
    /// legacy otherwise.
    Auto,
    /// `registry.mirrors` / `registry.configs` in config.toml (needs a containerd restart).
    Legacy,
    /// `config_path` + `certs.d/<host>/hosts.toml` (file edits need no restart).
    Hosts,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Auto => Mode::Auto,
            ModeArg::Legacy => Mode::Legacy,
            ModeArg::Hosts => Mode::Hosts,
        }
    }
}

/// `--on-delete`: what to do when the Secret is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnDeleteArg {
    /// Remove what regmirror owns and restore what was there.
    Revert,
    /// Leave the last applied configuration in place.
    Keep,
}

impl From<OnDeleteArg> for OnDelete {
    fn from(o: OnDeleteArg) -> OnDelete {
        match o {
            OnDeleteArg::Revert => OnDelete::Revert,
            OnDeleteArg::Keep => OnDelete::Keep,
        }
    }
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// One readable line per event (journald adds the time).
    Plain,
    /// One JSON object per line (for pods).
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(l: LogFormatArg) -> LogFormat {
        match l {
            LogFormatArg::Plain => LogFormat::Plain,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// Flags of `regmirror check`.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Check the files on disk (config.toml and the hosts directories, as `resolve` reads
    /// them) instead of a Secret.
    #[arg(long, group = "SecretArgs")]
    pub from_disk: bool,
    #[command(flatten)]
    pub name: SecretName,
    /// config.toml and the hosts directory (with --from-disk).
    #[command(flatten)]
    pub files: ConfigFiles,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// The node's hosts.toml options (--strict-airgap decides whether a pull falls back).
    #[command(flatten)]
    pub hosts: HostsArgs,
    /// An image to look up: HEAD its manifest at each host containerd would try, in order
    /// (repeatable).
    #[arg(long = "image", value_name = "REF")]
    pub images: Vec<String>,
    /// Total time one probe may take (one endpoint, or one host of an image); connecting
    /// takes at most 3 s of it.
    #[arg(long, env = "REGMIRROR_CHECK_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// text, or json (schema regmirror.check/v1, documented in the README).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// `-o` of `resolve` and `diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// The Secret source of the one-shot commands.
pub fn file_secret(secret: &SecretArgs, name: &SecretName) -> FileSecret {
    match (&secret.secret_file, &secret.secret_dir) {
        (Some(f), _) => FileSecret::Manifest {
            path: f.clone(),
            name: name.secret_name.clone(),
            namespace: Some(name.secret_namespace.clone()),
        },
        (None, Some(d)) => FileSecret::Dir(d.clone()),
        (None, None) => unreachable!(
            "clap requires a Secret source (--secret-file, --secret-dir or --from-cluster)"
        ),
    }
}

/// Parse `30s`, `2m`, `1h`, `500ms` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 30s, 2m, 500ms)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("5 parsecs").is_err());
    }
}
