//! One reconcile of the desired state: parse → decide for the node's containerd → plan → held?
//! → jitter → write → reload + verify, each step a small function; a failed reload goes to
//! [`super::recover`]. Returns a typed [`Outcome`]; [`super::report`] is the only place that
//! tells anyone about it.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::Ctx;
use super::budget;
use super::config::OnDelete;
use super::outcome::{Applied, Outcome};
use super::triggers::Trigger;
use crate::apply::{self, Plan};
use crate::render::Choice;
use crate::source::Desired;
use crate::spec::{self, RegistrySpec};

/// Reconcile `desired` once.
pub async fn reconcile(ctx: &mut Ctx, desired: Desired, trigger: Trigger) -> Outcome {
    match desired {
        Desired::Unknown => Outcome::Waiting,
        Desired::Present(Err(why)) => Outcome::Rejected { why },
        Desired::Present(Ok(data)) => match spec::parse_spec(&data) {
            Err(e) => Outcome::Rejected { why: e.to_string() },
            Ok(spec) => {
                for w in &spec.warnings {
                    tracing::warn!("{w}");
                }
                converge(ctx, Some(spec), trigger).await
            }
        },
        Desired::Deleted => match ctx.on_delete {
            OnDelete::Keep => Outcome::Kept,
            OnDelete::Revert => converge(ctx, None, trigger).await,
        },
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking task panicked")
}

/// The renderer's choice for this reconcile: `--mode` and the node's containerd, asked now.
///
/// A version that came over the CRI socket is asked again every time (one RPC). One that needed
/// the `containerd --version` fallback (a process) is reused for Secret changes and asked again
/// on file events (the socket made anew by a restart or an upgrade) and resyncs.
async fn decide_for(ctx: &mut Ctx, trigger: Trigger) -> Choice {
    if ctx.decided && !ctx.cheap_detect && trigger == Trigger::Source {
        return Choice {
            mode: ctx.mode,
            containerd: ctx.containerd,
            hosts: ctx.hosts,
        };
    }
    let node = crate::runtime::detect::detect(&ctx.probe).await;
    ctx.cheap_detect = matches!(
        node.source,
        Some(crate::runtime::VersionSource::Cri(_) | crate::runtime::VersionSource::Flag)
    );
    if !ctx.decided || node.version != ctx.containerd {
        ctx.decided = true;
        if node.version.is_some() {
            tracing::info!("deciding for {node}");
        } else {
            tracing::warn!("{node}");
        }
        ctx.containerd = node.version;
    }
    Choice {
        mode: ctx.mode,
        containerd: node.version,
        hosts: ctx.hosts,
    }
}

/// `--runtime podman`: bring the containers-registries.conf files to `spec` (None: revert).
/// Podman reads them at every pull: nothing to reload, nothing to roll back.
async fn converge_podman(
    paths: crate::podman::PodmanPaths,
    crio: Option<crate::podman::crio::CrioReload>,
    spec: Option<RegistrySpec>,
) -> Outcome {
    let label = spec
        .as_ref()
        .map(RegistrySpec::hash)
        .unwrap_or_else(|| "revert".into());
    let hash = spec.as_ref().map(|_| label.clone());
    let reverted = spec.is_none();
    let spec = Arc::new(spec);
    let (p, s) = (paths.clone(), spec.clone());
    match blocking(move || crate::podman::plan(&p, s.as_ref().as_ref())).await {
        Err(e) => return Outcome::Rejected { why: e.to_string() },
        Ok(plan) if plan.is_noop() => return Outcome::UpToDate { label, hash },
        Ok(_) => {}
    }
    let written = blocking(move || {
        let plan =
            crate::podman::apply(&paths, spec.as_ref().as_ref()).map_err(|e| e.to_string())?;
        // CRI-O caches the files: its documented reload (SIGHUP) after a change.
        let reloaded = match &crio {
            Some(how) => crate::podman::crio::reload(how, !plan.changes.is_empty())
                .map_err(|e| format!("files written, but {e}"))?,
            None => None,
        };
        Ok::<_, String>((plan, reloaded))
    })
    .await;
    match written {
        Err(error) => Outcome::WriteFailed { error },
        Ok((plan, reloaded)) => Outcome::Applied(Applied {
            files: plan
                .changes
                .iter()
                .map(|c| c.path.display().to_string())
                .collect(),
            reverted,
            label,
            hash,
            drift: false,
            restarted: false,
            done: Some(reloaded.unwrap_or_else(|| {
                "containers-registries.conf written; Podman reads it at every pull".into()
            })),
            restart_pending: false,
            containerd: None,
        }),
    }
}

/// Bring the files to `spec` (None: revert), reload, health-check, roll back on failure.
async fn converge(ctx: &mut Ctx, spec: Option<RegistrySpec>, trigger: Trigger) -> Outcome {
    if let Some(paths) = ctx.podman.clone() {
        return converge_podman(paths, ctx.crio.clone(), spec).await;
    }
    let label = spec
        .as_ref()
        .map(RegistrySpec::hash)
        .unwrap_or_else(|| "revert".into());
    let choice = decide_for(ctx, trigger).await;
    let spec = Arc::new(spec);
    let (paths, s) = (ctx.paths.clone(), spec.clone());
    let plan = match blocking(move || apply::plan(&paths, s.as_ref().as_ref(), choice)).await {
        Ok(p) => p,
        Err(e) => return Outcome::Rejected { why: e.to_string() },
    };
    // The state's keyed fingerprint (PASSWORD included): holding and drift compare with it.
    let hash = plan.state_after.spec_hash.clone();
    if let Some(held) = held(ctx, &plan, &hash, &label) {
        return held;
    }
    if plan.is_noop() {
        if ctx.probed.as_deref() != Some(label.as_str()) {
            probe_mirrors(ctx, &spec, &label);
        }
        return Outcome::UpToDate { label, hash };
    }
    for w in &plan.warnings {
        tracing::warn!("{w}");
    }
    let drift = trigger != Trigger::Source && plan.state_before.spec_hash == hash && hash.is_some();
    let mut slot = None;
    if ctx.restarter.will_restart(plan.restart_needed) {
        if wait_jitter(ctx).await {
            return Outcome::Stopping;
        }
        match take_slot(ctx, &label).await {
            Ok(s) => slot = s,
            Err(o) => return o,
        }
    }
    let out = write_and_reload(ctx, plan, spec.clone(), choice, label.clone(), hash, drift).await;
    if matches!(&out, Outcome::Applied(a) if !a.reverted) {
        probe_mirrors(ctx, &spec, &label);
    }
    if let Some(slot) = slot {
        if let (Outcome::RolledBack(r), Some(b)) = (&out, &ctx.budget) {
            b.halt(&label, &r.error).await;
        }
        slot.release().await;
    }
    out
}

/// One of the fleet's restart slots for `label` (none needed without a budget). Waits while
/// all are taken; a halted spec, a newer Secret or shutdown end the wait with an outcome.
async fn take_slot(ctx: &Ctx, label: &str) -> Result<Option<budget::Slot>, Outcome> {
    let Some(b) = &ctx.budget else {
        return Ok(None);
    };
    let mut newer = ctx.secret_rx.clone();
    newer.borrow_and_update();
    let stop = ctx.shutdown.clone();
    let interrupted = || newer.has_changed().unwrap_or(true) || *stop.borrow();
    match super::alive(ctx, b.acquire(label, interrupted)).await {
        Ok(slot) => Ok(Some(slot)),
        Err(budget::NoSlot::Halted { by, reason }) => Err(Outcome::Halted {
            label: label.to_string(),
            by,
            reason,
        }),
        Err(budget::NoSlot::Interrupted) if *ctx.shutdown.borrow() => Err(Outcome::Stopping),
        Err(budget::NoSlot::Interrupted) => Err(Outcome::Waiting),
    }
}

/// Write the plan under the lock (made again only if its inputs changed meanwhile), reload,
/// and roll back when the reload fails.
async fn write_and_reload(
    ctx: &mut Ctx,
    plan: Plan,
    spec: Arc<Option<RegistrySpec>>,
    choice: Choice,
    label: String,
    hash: Option<String>,
    drift: bool,
) -> Outcome {
    let (paths, s) = (ctx.paths.clone(), spec.clone());
    let written =
        blocking(move || apply::write_plan(&paths, plan, s.as_ref().as_ref(), choice)).await;
    let (plan, outcome) = match written {
        Ok(x) => x,
        Err(e) => {
            return Outcome::WriteFailed {
                error: e.to_string(),
            };
        }
    };
    let files: Vec<String> = outcome
        .changed
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    ctx.own_writes.remember(&plan.changes);
    tracing::info!(files = ?files, restart_needed = outcome.restart_needed, "wrote spec {label}");
    let restarted = ctx.restarter.will_restart(outcome.restart_needed);
    let expect = outcome.expect.as_ref();
    let reloaded = super::alive(ctx, ctx.restarter.reload(outcome.restart_needed, expect)).await;
    match reloaded {
        Ok(done) => Outcome::Applied(Applied {
            reverted: spec.is_none(),
            restart_pending: outcome.restart_needed && !restarted,
            containerd: ctx.containerd,
            label,
            hash,
            files,
            drift,
            restarted,
            done,
        }),
        Err(e) => super::recover::roll_back(ctx, &plan, label, hash, restarted, e).await,
    }
}

/// Probe every mirror endpoint of `spec` in the background, as `regmirror check` does (bounded
/// by 10 s), into `regmirror_mirror_up` / `_latency_seconds`; an endpoint that fails is logged
/// with why ("the mirror is configured but pulls don't use it" starts here). Once per spec: no
/// timer runs while idle.
fn probe_mirrors(ctx: &mut Ctx, spec: &Arc<Option<RegistrySpec>>, label: &str) {
    let Some(s) = spec.as_ref().clone() else {
        return;
    };
    ctx.probed = Some(label.to_string());
    let telemetry = ctx.telemetry.clone();
    tokio::spawn(async move {
        let reports = match crate::check::probe_spec(&s, Duration::from_secs(10)).await {
            Ok(r) => r,
            Err(e) => return tracing::warn!("mirror probe: {e}"),
        };
        let probes: Vec<crate::observe::MirrorProbe> = reports
            .iter()
            .map(|r| {
                if !r.ok() {
                    tracing::warn!(
                        "mirror endpoint {} does not answer as containerd needs it: {}",
                        r.url,
                        r.error.as_deref().unwrap_or("not a registry answer")
                    );
                }
                crate::observe::MirrorProbe {
                    host: r.host.clone(),
                    url: r.url.clone(),
                    up: r.ok(),
                    latency: r.latency_ms.map(|ms| ms as f64 / 1000.0),
                }
            })
            .collect();
        telemetry.set_mirror_probes(&probes);
        // The probe ran the HTTP/TLS client's code after the reconcile gave its pages back.
        crate::memory::give_back();
    });
}

/// The spec failed before and the Secret has not changed: hold it (say why, once known).
fn held(ctx: &Ctx, plan: &Plan, hash: &Option<String>, label: &str) -> Option<Outcome> {
    if hash.is_none() || plan.state_before.bad_spec_hash != *hash || plan.is_noop() {
        return None;
    }
    let why = ctx
        .rolled_back
        .as_ref()
        .filter(|(h, _)| Some(h) == hash.as_ref())
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    Some(Outcome::Held {
        label: label.to_string(),
        why,
    })
}

/// Wait a random 0..=jitter before a restart; `true` when shutdown came first.
async fn wait_jitter(ctx: &Ctx) -> bool {
    if ctx.jitter.is_zero() {
        return false;
    }
    let wait = rand::rng().random_range(Duration::ZERO..=ctx.jitter);
    tracing::info!("containerd restart needed; waiting {wait:?} of jitter first");
    let mut stop = ctx.shutdown.clone();
    super::alive(ctx, async {
        tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = stop.changed() => true,
        }
    })
    .await
}
