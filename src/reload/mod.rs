//! Reloading containerd: `none | auto | systemd | command:<cmd>`, then a health check over the
//! CRI socket (Version + Status RuntimeReady). containerd has no reload signal (SIGHUP kills it,
//! see CONTAINERD.md), so a reload is a restart through systemd.
//!
//! In a DaemonSet pod (hostPID), `systemctl` must run in the host's mount namespace: the child
//! process enters the namespaces of `--host-pid` (default 1) with `setns` before it execs, so the
//! host's own `systemctl` talks to the host's systemd. When regmirror already runs in that
//! namespace (systemd unit on an edge host), no `setns` happens.

pub mod cri;
pub mod verify;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;

/// How containerd is reloaded after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadStrategy {
    /// Never restart; report whether a restart is needed.
    None,
    /// Restart through systemd only when config.toml changed (hosts.toml edits need none).
    Auto,
    /// Restart through systemd after every change.
    Systemd,
    /// Run this shell command where `auto` would restart (config.toml changed), then
    /// health-check: the node's own restart command (`systemctl restart k3s`, a script).
    Command(String),
}

impl FromStr for ReloadStrategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(ReloadStrategy::None),
            "auto" => Ok(ReloadStrategy::Auto),
            "systemd" => Ok(ReloadStrategy::Systemd),
            _ => match s.strip_prefix("command:") {
                Some(c) if !c.trim().is_empty() => Ok(ReloadStrategy::Command(c.to_string())),
                _ => Err(format!(
                    "--reload {s:?}: expected none, auto, systemd or command:<shell command>"
                )),
            },
        }
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

/// Which containerd, and how to reach it: shared by every command that decides or reloads.
#[derive(Args, Debug, Clone)]
pub struct RuntimeArgs {
    /// containerd's version (e.g. 2.1.9): decide for it without asking the node (offline
    /// `diff`); `unknown` decides from config.toml alone. Unset: CRI Version over
    /// --containerd-socket, then `containerd --version`.
    #[arg(long, env = "REGMIRROR_CONTAINERD_VERSION", value_name = "VERSION")]
    pub containerd_version: Option<crate::runtime::VersionArg>,
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
    /// Ask the node (or take the flag).
    pub fn detect(&self) -> crate::runtime::Runtime {
        crate::runtime::detect::detect_blocking(&self.probe())
    }

    pub fn probe(&self) -> crate::runtime::detect::Probe<'_> {
        crate::runtime::detect::Probe {
            explicit: self.containerd_version,
            socket: &self.containerd_socket,
            host_pid: self.host_pid,
        }
    }
}

use crate::hostexec::run_host;

/// Why a reload failed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("containerd is not healthy after the restart: {0}")]
    Unhealthy(#[from] cri::CriError),
    #[error(transparent)]
    NotLoaded(#[from] verify::VerifyError),
}

impl From<crate::hostexec::ExecError> for ReloadError {
    fn from(e: crate::hostexec::ExecError) -> Self {
        ReloadError::Command {
            what: e.what,
            detail: e.detail,
        }
    }
}

/// Carries out a [`ReloadStrategy`].
#[derive(Debug, Clone)]
pub struct Reloader {
    pub strategy: ReloadStrategy,
    pub unit: String,
    pub host_pid: i32,
    pub socket: PathBuf,
    pub health_timeout: Duration,
}

impl Reloader {
    /// From flags; `reload` unset means `none` here (the daemon picks its own default).
    pub fn from_args(a: &ReloadArgs) -> Result<Reloader, String> {
        Ok(Self::with_default(a, ReloadStrategy::None))
    }

    pub fn with_default(a: &ReloadArgs, default: ReloadStrategy) -> Reloader {
        Reloader {
            strategy: a.reload.clone().unwrap_or(default),
            unit: a.containerd_unit.clone(),
            host_pid: a.runtime.host_pid,
            socket: a.runtime.containerd_socket.clone(),
            health_timeout: a.health_timeout,
        }
    }

    /// True when the strategy acts on every change, not only on a needed restart.
    pub fn always(&self) -> bool {
        matches!(self.strategy, ReloadStrategy::Systemd)
    }

    /// Whether this change leads to a restart.
    pub fn will_restart(&self, restart_needed: bool) -> bool {
        match self.strategy {
            ReloadStrategy::None => false,
            ReloadStrategy::Auto | ReloadStrategy::Command(_) => restart_needed,
            ReloadStrategy::Systemd => true,
        }
    }

    /// Restart (if the strategy says so), wait for containerd to be healthy, and check that it
    /// loaded `expect` (see [`verify`]). Returns a line saying what happened, or `None` when
    /// nothing was done.
    pub async fn reload(
        &self,
        restart_needed: bool,
        expect: Option<&crate::render::Expectation>,
    ) -> Result<Option<String>, ReloadError> {
        if !self.will_restart(restart_needed) {
            return Ok(None);
        }
        let what = match &self.strategy {
            ReloadStrategy::Command(c) => {
                run_host(self.host_pid, "sh", &["-c", c]).await?;
                format!("ran {c:?}")
            }
            _ => {
                run_host(self.host_pid, "systemctl", &["restart", &self.unit]).await?;
                format!("restarted {}", self.unit)
            }
        };
        let version = cri::wait_healthy(&self.socket, self.health_timeout).await?;
        let loaded = match expect {
            Some(e) => format!("; {}", verify::verify_loaded(&self.socket, e).await?),
            None => String::new(),
        };
        Ok(Some(format!(
            "{what}; containerd {version} healthy{loaded}"
        )))
    }

    /// Restart without judging the result (used to come back after a rollback).
    pub async fn restart_only(&self) -> Result<(), ReloadError> {
        match &self.strategy {
            ReloadStrategy::Command(c) => run_host(self.host_pid, "sh", &["-c", c]).await?,
            ReloadStrategy::None => return Ok(()),
            _ => run_host(self.host_pid, "systemctl", &["restart", &self.unit]).await?,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_and_durations() {
        assert_eq!("auto".parse(), Ok(ReloadStrategy::Auto));
        assert_eq!(
            "command:systemctl restart containerd".parse(),
            Ok(ReloadStrategy::Command(
                "systemctl restart containerd".into()
            ))
        );
        assert!("restart".parse::<ReloadStrategy>().is_err());
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("5 parsecs").is_err());
    }
}
