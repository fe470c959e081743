//! The error policy: a reload or load verification that failed puts the previous files back
//! (holding the spec until the Secret changes), restarts containerd on them, and says what
//! state the node is in. Never a loop: one rollback, one restart.

use super::Ctx;
use super::outcome::{Outcome, RolledBack};
use crate::apply::{self, Plan};
use crate::reload::ReloadError;

/// Roll `plan` back after `error`.
pub async fn roll_back(
    ctx: &mut Ctx,
    plan: &Plan,
    label: String,
    hash: Option<String>,
    restarted: bool,
    error: ReloadError,
) -> Outcome {
    tracing::error!("{error}; rolling back spec {label}");
    let (paths, p) = (ctx.paths.clone(), plan.clone());
    let rolled = tokio::task::spawn_blocking(move || apply::rollback(&paths, &p, true))
        .await
        .expect("rollback task panicked");
    let (back, restarted_again) = match rolled {
        Ok(()) => {
            let r = super::alive(ctx, ctx.restarter.recover()).await;
            (
                r.map_err(|e| e.to_string()),
                ctx.restarter.will_restart(true),
            )
        }
        Err(e) => (Err(format!("rollback failed: {e}")), false),
    };
    let error = error.to_string();
    if let Some(h) = &hash {
        ctx.rolled_back = Some((h.clone(), rolled_back_message(&label, &error, &back)));
    }
    Outcome::RolledBack(RolledBack {
        label,
        hash,
        restarted,
        error,
        back,
        restarted_again,
    })
}

/// The one line that says what happened and where the node stands.
pub fn rolled_back_message(label: &str, error: &str, back: &Result<String, String>) -> String {
    match back {
        Ok(v) => format!(
            "spec {label} rolled back ({error}); containerd {v} healthy again on the previous configuration"
        ),
        Err(e2) => format!("spec {label} rolled back ({error}); containerd still unhealthy: {e2}"),
    }
}
