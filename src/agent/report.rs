//! The only place that tells anyone what a reconcile did: log lines, metrics, readiness
//! (`/readyz`), Node Events and the spec-hash annotation. Returns the one-line status that
//! goes to sd-notify.

use super::Ctx;
use super::outcome::{Applied, Outcome, RolledBack};
use super::recover::rolled_back_message;

async fn event(ctx: &Ctx, warning: bool, reason: &str, note: &str) {
    if let Some(n) = &ctx.node {
        n.event(warning, reason, note).await;
    }
}

/// Tell about `outcome`; the status line. The Node condition follows it.
pub async fn report(ctx: &Ctx, outcome: &Outcome) -> String {
    let status = tell(ctx, outcome).await;
    if let (Some(c), Some((ready, reason))) = (&ctx.condition, super::condition::of(outcome)) {
        c.set(ready, reason, &status).await;
    }
    status
}

async fn tell(ctx: &Ctx, outcome: &Outcome) -> String {
    let t = &ctx.telemetry;
    match outcome {
        Outcome::Waiting => "waiting for the Secret".into(),
        Outcome::Rejected { why } => {
            tracing::error!("Secret rejected, nothing changed on disk: {why}");
            t.count("rejected");
            t.not_ready(&format!("Secret rejected: {why}"));
            event(ctx, true, "RegistryConfigRejected", why).await;
            format!("rejected: {why}")
        }
        Outcome::Held { label, why } => {
            let why = if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            };
            let msg = format!(
                "spec {label} failed the containerd health check before{why}; waiting for a changed Secret"
            );
            tracing::warn!("{msg}");
            t.not_ready(&msg);
            msg
        }
        Outcome::UpToDate { label, hash } => {
            t.count("unchanged");
            // The public spec hash (the keyed one differs per node).
            t.succeeded(hash.as_ref().map(|_| label.as_str()));
            format!("up to date (spec {label})")
        }
        Outcome::Kept => {
            tracing::warn!("Secret is gone; --on-delete keep: leaving the applied configuration");
            t.succeeded(None);
            "Secret deleted; configuration kept".into()
        }
        Outcome::Stopping => "stopping".into(),
        Outcome::WriteFailed { error } => {
            t.count("failed");
            let msg = format!("apply failed: {error}");
            tracing::error!("{msg}");
            t.not_ready(&msg);
            event(ctx, true, "RegistryConfigFailed", &msg).await;
            msg
        }
        Outcome::Applied(a) => applied(ctx, a).await,
        Outcome::RolledBack(r) => rolled_back(ctx, r).await,
        Outcome::Halted { label, by, reason } => {
            let msg = format!(
                "the fleet's rollout of spec {label} is halted: node {by} rolled it back ({reason}); nothing written here, waiting for a changed Secret"
            );
            tracing::warn!("{msg}");
            t.count("halted");
            t.not_ready(&msg);
            event(ctx, true, "RegistryRolloutHalted", &msg).await;
            msg
        }
    }
}

async fn applied(ctx: &Ctx, a: &Applied) -> String {
    let t = &ctx.telemetry;
    if a.drift {
        t.drift_repairs.inc();
        tracing::warn!("managed entries had been changed on disk; restored them (drift repair)");
    }
    if a.restarted {
        t.restarts.inc();
    }
    match &a.done {
        Some(d) => tracing::info!("{d}"),
        None if a.restart_pending => tracing::warn!(
            "containerd needs a restart to load the change (--reload {})",
            ctx.restarter.describe()
        ),
        None => {}
    }
    t.count(if a.reverted { "reverted" } else { "changed" });
    let public = (!a.reverted).then_some(a.label.as_str());
    t.succeeded(public);
    let note = format!(
        "{} spec {} for containerd {}: {} file(s) changed{}",
        if a.reverted { "reverted" } else { "applied" },
        a.label,
        a.containerd
            .map_or_else(|| "(version unknown)".to_string(), |v| v.to_string()),
        a.files.len(),
        match (&a.done, a.restarted) {
            (Some(d), true) => format!("; containerd restarted and healthy ({d})"),
            _ => String::new(),
        }
    );
    let reason = if a.reverted {
        "RegistryConfigReverted"
    } else {
        "RegistryConfigApplied"
    };
    event(ctx, false, reason, &note).await;
    if let Some(n) = &ctx.node {
        n.annotate(public).await;
    }
    note
}

async fn rolled_back(ctx: &Ctx, r: &RolledBack) -> String {
    let t = &ctx.telemetry;
    if r.restarted {
        t.restarts.inc();
    }
    if r.restarted_again {
        t.restarts.inc();
    }
    t.rollbacks.inc();
    t.count("rolled_back");
    let msg = rolled_back_message(&r.label, &r.error, &r.back);
    tracing::error!("{msg}");
    t.not_ready(&msg);
    event(ctx, true, "RegistryConfigRolledBack", &msg).await;
    msg
}
