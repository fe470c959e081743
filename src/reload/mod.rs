//! Reloading containerd: `none | auto | systemd | command:<cmd>`, then a health check over the
//! CRI socket (Version + Status RuntimeReady). containerd has no reload signal (SIGHUP kills it,
//! see CONTAINERD.md), so a reload is a restart through systemd.
//!
//! In a DaemonSet pod (hostPID), `systemctl` must run in the host's mount namespace: the child
//! process enters the namespaces of `--host-pid` (default 1) with `setns` before it execs, so the
//! host's own `systemctl` talks to the host's systemd. When regmirror already runs in that
//! namespace (systemd unit on an edge host), no `setns` happens.

pub mod verify;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

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

use crate::hostexec::run_host;

/// Why a reload failed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("containerd is not healthy after the restart: {0}")]
    Unhealthy(#[from] crate::cri::CriError),
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
    /// Where restart and health-check durations go (the agent's metrics; `None` one-shot).
    pub telemetry: Option<std::sync::Arc<crate::observe::Telemetry>>,
}

impl Reloader {
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
        let t0 = std::time::Instant::now();
        let what = match &self.strategy {
            ReloadStrategy::Command(c) => run_host(self.host_pid, "sh", &["-c", c])
                .await
                .map(|_| format!("ran {c:?}")),
            _ => run_host(self.host_pid, "systemctl", &["restart", &self.unit])
                .await
                .map(|_| format!("restarted {}", self.unit)),
        };
        if let Some(t) = &self.telemetry {
            t.observe_containerd_restart(t0.elapsed());
        }
        let what = what?;
        let version = self.timed_health().await?;
        let loaded = match expect {
            Some(e) => format!("; {}", verify::verify_loaded(&self.socket, e).await?),
            None => String::new(),
        };
        Ok(Some(format!(
            "{what}; containerd {version} healthy{loaded}"
        )))
    }

    /// Restart without judging the result (used to come back after a rollback).
    /// Wait for a healthy containerd, timing it into the metrics.
    pub async fn timed_health(&self) -> Result<String, crate::cri::CriError> {
        let t0 = std::time::Instant::now();
        let r = crate::cri::wait_healthy(&self.socket, self.health_timeout).await;
        if let Some(t) = &self.telemetry {
            t.observe_health_check(t0.elapsed());
        }
        r
    }

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
    }
}
