//! `regmirror run`: the agent as a controller. Sources publish the desired Secret;
//! [`triggers`] (file events, resync, signals) poke the loop and bursts coalesce (debounce) into
//! one single-flight [`reconcile::reconcile`] of the latest state, whose typed outcome
//! [`report::report`] tells about; a failed reload goes to [`recover`] (rollback, once, never a
//! loop). [`config`] is the plain configuration; [`restart`] the reloader seam.

pub mod budget;
pub mod condition;
pub mod config;
pub mod outcome;
mod own_writes;
pub mod reconcile;
pub mod recover;
pub mod report;
pub mod restart;
pub mod triggers;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};

use crate::apply::Paths;
use crate::observe::{self, NodeReporter, Telemetry, notify};
use crate::render::Mode;
use crate::runtime::ContainerdVersion;
use crate::runtime::detect::Probe;
use crate::source::{self, Desired};
use config::{AgentConfig, OnDelete, SecretSource};
use restart::Restarter;
use triggers::Trigger;

/// Everything the loop needs.
pub struct Ctx {
    pub paths: Paths,
    pub mode: Mode,
    pub hosts: crate::render::HostsOptions,
    /// `--runtime podman`: the containers-registries.conf files to keep (no containerd at all).
    pub podman: Option<crate::podman::PodmanPaths>,
    /// `--runtime crio`: CRI-O's reload after those files changed.
    pub crio: Option<crate::podman::crio::CrioReload>,
    /// How to learn the node's containerd version (asked again at every reconcile: an upgrade
    /// from 1.x to 2.x under the agent changes what must be written).
    pub probe: Probe,
    /// The version the last reconcile decided for (to log a change once).
    pub containerd: Option<ContainerdVersion>,
    pub decided: bool,
    /// The last version came over the CRI socket or the flag (cheap to ask again).
    pub cheap_detect: bool,
    pub restarter: Box<dyn Restarter>,
    pub jitter: Duration,
    pub on_delete: OnDelete,
    pub telemetry: Arc<Telemetry>,
    pub node: Option<NodeReporter>,
    /// The Node condition `RegistryMirrorReady` (with NODE_NAME and a kube client).
    pub condition: Option<condition::NodeCondition>,
    /// The fleet's restart budget (with `--restart-budget` > 0, NODE_NAME and a kube client).
    pub budget: Option<budget::Budget>,
    /// The desired Secret (to see a newer one while waiting for a restart slot).
    pub secret_rx: watch::Receiver<Desired>,
    /// What the last write left (files, removals, directories): file events about them while
    /// they still hold that are the agent's own, not a reason to plan again.
    pub own_writes: own_writes::OwnWrites,
    /// The spec whose mirrors were probed last (probed once per spec).
    pub probed: Option<String>,
    pub shutdown: watch::Receiver<bool>,
    /// How often to tell systemd's watchdog the loop is alive; `None`: systemd asked for none.
    pub pulse: Option<Duration>,
    /// The last rollback: the spec hash and what happened (said while that spec is held).
    pub rolled_back: Option<(String, String)>,
}

/// Run the agent until SIGTERM/SIGINT.
pub fn run(config: AgentConfig) -> anyhow::Result<()> {
    crate::memory::note_startup_files();
    observe::init_tracing(config.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Blocking work (an apply, a DNS lookup) is rare: its threads leave 1 s after it, not
        // 10 s (tokio's default), so an idle agent keeps no thread (nor its stack) it does not use.
        .thread_keep_alive(Duration::from_secs(1))
        .enable_all()
        .build()?;
    let result = rt.block_on(run_async(config));
    // Do not wait on stragglers (a watch reconnect, an HTTP connection) after the loop is done.
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}

/// Start the HTTP endpoints on the one bound listener.
async fn serve_http(config: &AgentConfig, telemetry: &Arc<Telemetry>) -> anyhow::Result<()> {
    let Some(addr) = config.listen else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let t = telemetry.clone();
    tokio::spawn(async move {
        if let Err(e) = observe::serve(listener, t).await {
            tracing::error!(error = %e, "HTTP server on {addr} stopped");
        }
    });
    Ok(())
}

/// Start the Secret source; the Node reporter when NODE_NAME is set and a client is at hand.
/// What the agent tells the cluster through, with NODE_NAME and a kube client.
struct ClusterLink {
    reporter: NodeReporter,
    condition: condition::NodeCondition,
    budget: Option<budget::Budget>,
}

fn cluster_link(config: &AgentConfig, client: kube::Client, node: &str) -> ClusterLink {
    let budget = (config.restart_budget > 0).then(|| {
        tracing::info!(
            "restart budget: {} slot(s) in namespace {}, lease {:?}",
            config.restart_budget,
            config.lease_namespace,
            config.restart_lease
        );
        budget::Budget::new(
            client.clone(),
            &config.lease_namespace,
            node,
            config.restart_budget,
            config.restart_lease,
        )
    });
    ClusterLink {
        reporter: NodeReporter::new(client.clone(), node.to_string()),
        condition: condition::NodeCondition::new(client, node),
        budget,
    }
}

async fn start_source(config: &AgentConfig, tx: watch::Sender<Desired>) -> Option<ClusterLink> {
    match &config.secret {
        SecretSource::File(fs) => {
            tracing::info!("watching Secret file {}", fs.path().display());
            tokio::spawn(source::file::run(fs.clone(), tx));
        }
        SecretSource::Api { namespace, name } => {
            tracing::info!("watching Secret {namespace}/{name} through the Kubernetes API");
            tokio::spawn(source::kube::run(
                config.kubeconfig.clone(),
                namespace.clone(),
                name.clone(),
                tx,
            ));
        }
    }
    let node = config.node_name.as_ref()?;
    match source::kube::client(config.kubeconfig.as_ref()).await {
        Ok(c) => Some(cluster_link(config, c, node)),
        Err(_) => {
            tracing::warn!(
                "NODE_NAME={node} but no Kubernetes client: no Events, condition, annotation or restart budget"
            );
            None
        }
    }
}

async fn run_async(config: AgentConfig) -> anyhow::Result<()> {
    let telemetry = Arc::new(Telemetry::new());
    tracing::info!(
        config = %config.paths.config.display(),
        certs_dir = %config.paths.certs_dir.display(),
        mode = ?config.mode,
        reload = ?config.reloader.strategy,
        "regmirror {} starting",
        env!("CARGO_PKG_VERSION")
    );
    serve_http(&config, &telemetry).await?;
    let (tx, rx) = watch::channel(Desired::Unknown);
    let link = start_source(&config, tx).await;
    let (node, condition, budget) = match link {
        Some(l) => (Some(l.reporter), Some(l.condition), l.budget),
        None => (None, None, None),
    };
    let (poke_tx, poke_rx) = mpsc::unbounded_channel();
    let _watchers = triggers::watch_files(&config.paths, &config.probe.socket, poke_tx);
    // Timers only where something asked for one: the watchdog ping only when systemd set one.
    let pulse = notify::watchdog_interval().map(|w| w.min(Duration::from_secs(10)));
    let ctx = Ctx {
        paths: config.paths.clone(),
        mode: config.mode,
        hosts: config.hosts,
        podman: config.podman.clone(),
        crio: config.crio.clone(),
        probe: config.probe.clone(),
        containerd: None,
        decided: false,
        cheap_detect: false,
        restarter: Box::new(crate::reload::Reloader {
            telemetry: Some(telemetry.clone()),
            ..config.reloader.clone()
        }),
        jitter: config.restart_jitter,
        on_delete: config.on_delete,
        telemetry,
        node,
        condition,
        budget,
        secret_rx: rx.clone(),
        own_writes: Default::default(),
        probed: None,
        shutdown: triggers::shutdown_on_signals(),
        pulse,
        rolled_back: None,
    };
    main_loop(ctx, rx, poke_rx, config.debounce, config.resync).await;
    notify::stopping();
    tracing::info!("regmirror stopped");
    Ok(())
}

/// The next tick of `timer`, or never when there is none.
async fn maybe_tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Sleep for `d`, or forever when there is nothing to wait for.
async fn maybe_sleep(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Await `fut` while keeping systemd's watchdog fed (when it asked for that).
pub async fn alive<F: std::future::Future>(ctx: &Ctx, fut: F) -> F::Output {
    let Some(every) = ctx.pulse else {
        return fut.await;
    };
    tokio::pin!(fut);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => notify::watchdog(),
        }
    }
}

/// READY=1 once: after the first reconcile, or after 20 s without a Secret.
struct Readiness {
    sent: bool,
    since: tokio::time::Instant,
}

impl Readiness {
    fn status(&mut self, status: &str) {
        if self.sent {
            notify::status(status);
        } else {
            notify::ready(status);
            self.sent = true;
        }
    }

    /// How long until READY=1 is sent without a Secret (`None`: it was sent).
    fn deadline(&self) -> Option<Duration> {
        (!self.sent).then(|| Duration::from_secs(20).saturating_sub(self.since.elapsed()))
    }

    fn waited(&mut self, ctx: &Ctx) {
        if !self.sent && self.since.elapsed() > Duration::from_secs(20) {
            notify::ready("waiting for the Secret source");
            ctx.telemetry.not_ready("waiting for the Secret source");
            self.sent = true;
        }
    }
}

async fn main_loop(
    mut ctx: Ctx,
    mut rx: watch::Receiver<Desired>,
    mut pokes: mpsc::UnboundedReceiver<Vec<std::path::PathBuf>>,
    debounce: Duration,
    resync: Duration,
) {
    let mut ready = Readiness {
        sent: false,
        since: tokio::time::Instant::now(),
    };
    // `--resync 0s`: no periodic reconcile (and no timer at all while idle).
    let mut resync_timer = (!resync.is_zero())
        .then(|| tokio::time::interval_at(tokio::time::Instant::now() + resync, resync));
    let mut shutdown = ctx.shutdown.clone();
    loop {
        notify::watchdog_if(ctx.pulse.is_some());
        ctx.telemetry.idle();
        let trigger = tokio::select! {
            r = rx.changed() => match r { Ok(()) => Trigger::Source, Err(_) => break },
            Some(paths) = pokes.recv() => {
                if paths.iter().all(|p| triggers::is_noise(p, &ctx.paths, &ctx.probe.socket) || ctx.own_writes.is_own(p)) { continue; }
                Trigger::Files
            }
            _ = maybe_tick(&mut resync_timer) => Trigger::Resync,
            _ = maybe_sleep(ctx.pulse) => continue,
            _ = maybe_sleep(ready.deadline()) => { ready.waited(&ctx); continue; }
            _ = shutdown.changed() => break,
        };
        ctx.telemetry.busy();
        let trigger =
            triggers::debounce(trigger, debounce, &mut rx, &mut pokes, &mut shutdown).await;
        if *ctx.shutdown.borrow() {
            break;
        }
        let desired = rx.borrow_and_update().clone();
        if desired == Desired::Unknown {
            continue;
        }
        let t0 = std::time::Instant::now();
        let outcome = reconcile::reconcile(&mut ctx, desired, trigger).await;
        if !matches!(
            outcome,
            outcome::Outcome::Waiting | outcome::Outcome::Stopping
        ) {
            ctx.telemetry.observe_reconcile(t0.elapsed());
        }
        let status = report::report(&ctx, &outcome).await;
        ready.status(&status);
        crate::memory::give_back();
    }
}
