//! What the agent needs from a reloader, as a trait: the real [`Reloader`] restarts containerd;
//! the decision tests use a fake that records calls and can fail.

use futures::future::BoxFuture;

use crate::reload::{ReloadError, Reloader};
use crate::render::Expectation;

pub trait Restarter: Send + Sync {
    /// Whether a change with this `restart_needed` leads to a restart.
    fn will_restart(&self, restart_needed: bool) -> bool;
    /// Restart if the strategy says so, health-check, verify `expect`.
    fn reload<'a>(
        &'a self,
        restart_needed: bool,
        expect: Option<&'a Expectation>,
    ) -> BoxFuture<'a, Result<Option<String>, ReloadError>>;
    /// Restart on the previous files after a rollback and wait for health (no verification).
    fn recover(&self) -> BoxFuture<'_, Result<String, ReloadError>>;
    /// For log lines.
    fn describe(&self) -> String;
}

impl Restarter for Reloader {
    fn will_restart(&self, restart_needed: bool) -> bool {
        Reloader::will_restart(self, restart_needed)
    }

    fn reload<'a>(
        &'a self,
        restart_needed: bool,
        expect: Option<&'a Expectation>,
    ) -> BoxFuture<'a, Result<Option<String>, ReloadError>> {
        Box::pin(Reloader::reload(self, restart_needed, expect))
    }

    fn recover(&self) -> BoxFuture<'_, Result<String, ReloadError>> {
        Box::pin(async move {
            self.restart_only().await?;
            Ok(self.timed_health().await?)
        })
    }

    fn describe(&self) -> String {
        format!("{:?}", self.strategy)
    }
}
