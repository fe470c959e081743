//! `regmirror run`: the agent loop. Sources publish the desired Secret; file events and a slow
//! resync poke the loop; bursts coalesce (debounce) into one single-flight reconcile of the latest
//! state; a change that needs a containerd restart waits a random jitter, restarts, health-checks,
//! and rolls back (once, never a loop) when containerd does not come back healthy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use rand::Rng;
use tokio::sync::{mpsc, watch};

use crate::apply::{self, Paths};
use crate::cli::{PathArgs, SecretName};
use crate::observe::{self, LogFormat, NodeReporter, Telemetry, notify};
use crate::reload::{ReloadArgs, ReloadStrategy, Reloader, RuntimeArgs, parse_duration};
use crate::render::{Choice, Mode};
use crate::runtime::ContainerdVersion;
use crate::source::file::{FileSecret, FileSourceError};
use crate::source::watch::{DirWatcher, dir_of};
use crate::source::{self, Desired};
use crate::spec::{self, RegistrySpec};

/// What to do when the Secret is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnDelete {
    /// Remove what regmirror owns and restore what was there.
    Revert,
    /// Leave the last applied configuration in place.
    Keep,
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
    #[arg(long, env = "REGMIRROR_MODE", value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,
    #[command(flatten)]
    pub reload: ReloadArgs,
    /// Random wait before a containerd restart, 0 to this (spreads restarts over a fleet).
    #[arg(long, env = "REGMIRROR_RESTART_JITTER", default_value = "30s", value_parser = parse_duration)]
    pub restart_jitter: Duration,
    /// Quiet time that ends a burst of changes before reconciling.
    #[arg(long, env = "REGMIRROR_DEBOUNCE", default_value = "2s", value_parser = parse_duration)]
    pub debounce: Duration,
    /// Periodic safety reconcile (reads local files only; writes nothing when unchanged).
    #[arg(long, env = "REGMIRROR_RESYNC", default_value = "15m", value_parser = parse_duration)]
    pub resync: Duration,
    #[arg(long, env = "REGMIRROR_ON_DELETE", value_enum, default_value_t = OnDelete::Revert)]
    pub on_delete: OnDelete,
    /// Address for /healthz, /readyz and /metrics ("off" to disable).
    #[arg(long, env = "REGMIRROR_LISTEN", default_value = "127.0.0.1:9464")]
    pub listen: String,
    #[arg(long, env = "REGMIRROR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    /// The Node to publish Events and the spec-hash annotation on (downward API).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
}

/// Everything the loop needs.
struct Ctx {
    paths: Paths,
    mode: Mode,
    /// How to learn the node's containerd version (asked again at every reconcile: an upgrade
    /// from 1.x to 2.x under the agent changes what must be written).
    runtime: RuntimeArgs,
    /// The version the last reconcile decided for (to log a change once).
    containerd: Option<ContainerdVersion>,
    decided: bool,
    reloader: Reloader,
    jitter: Duration,
    on_delete: OnDelete,
    telemetry: Arc<Telemetry>,
    node: Option<NodeReporter>,
    shutdown: watch::Receiver<bool>,
    pulse: Duration,
    /// The last rollback: the spec hash and what happened (kept for /readyz while it is held).
    rolled_back: Option<(String, String)>,
    /// The bad spec already reported as held (logged once, not on every file event).
    held_logged: Option<String>,
}

/// Why the loop looked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Source,
    Files,
    Resync,
}

/// Run the agent until SIGTERM/SIGINT.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    observe::init_tracing(args.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(run_async(args));
    // Do not wait on stragglers (a watch reconnect, an HTTP connection) after the loop is done.
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}

fn file_secret(args: &RunArgs) -> Option<FileSecret> {
    match (&args.secret_file, &args.secret_dir) {
        (Some(f), _) => Some(FileSecret::Manifest {
            path: f.clone(),
            name: args.name.secret_name.clone(),
            namespace: Some(args.name.secret_namespace.clone()),
        }),
        (None, Some(d)) => Some(FileSecret::Dir(d.clone())),
        _ => None,
    }
}

fn read_desired(secret: &FileSecret) -> Desired {
    match secret.read() {
        Ok(d) => Desired::Present(Ok(d)),
        Err(FileSourceError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Desired::Deleted
        }
        Err(e) => Desired::Present(Err(e.to_string())),
    }
}

/// Watch a Secret file or volume; publish each new reading.
async fn file_source(secret: FileSecret, tx: watch::Sender<Desired>) {
    let (ptx, mut prx) = mpsc::unbounded_channel();
    let dir = dir_of(secret.path());
    let mut watched_exists = dir.exists();
    let mut watcher = DirWatcher::new(std::slice::from_ref(&dir), false, ptx.clone()).ok();
    loop {
        let d = read_desired(&secret);
        let changed = tx.send_if_modified(|cur| {
            if *cur != d {
                *cur = d;
                true
            } else {
                false
            }
        });
        if changed {
            tracing::debug!("Secret source {} changed", secret.path().display());
        }
        if tx.is_closed() {
            return;
        }
        tokio::select! {
            _ = prx.recv() => {
                // let a burst of events (rename-over, ..data swap) settle
                tokio::time::sleep(Duration::from_millis(100)).await;
                while prx.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        if dir.exists() != watched_exists {
            watched_exists = dir.exists();
            watcher = DirWatcher::new(std::slice::from_ref(&dir), false, ptx.clone()).ok();
        }
        let _ = &watcher;
    }
}

/// True for file events that cannot matter: temp files and backups, and anything that is
/// neither config.toml nor under the certs dir (its parent is watched while it does not exist).
/// The containerd socket counts: it is made anew when containerd (re)starts, for example after
/// a package upgrade, and the next reconcile must then decide for the new version.
fn is_noise(p: &std::path::Path, paths: &Paths, socket: &std::path::Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if (name.starts_with('.') && name.ends_with(".tmp")) || name.ends_with(".regmirror.bak") {
        return true;
    }
    if p.components()
        .any(|c| c.as_os_str() == crate::reload::verify::CANARY_HOST)
    {
        return true;
    }
    !(p == paths.config || p.starts_with(&paths.certs_dir) || p == socket)
}

async fn run_async(args: RunArgs) -> anyhow::Result<()> {
    let telemetry = Arc::new(Telemetry::new());
    let reloader = Reloader::with_default(&args.reload, ReloadStrategy::Auto);
    let paths = args.paths.paths();
    tracing::info!(
        config = %paths.config.display(),
        certs_dir = %paths.certs_dir.display(),
        mode = ?args.mode,
        reload = ?reloader.strategy,
        "regmirror {} starting",
        env!("CARGO_PKG_VERSION")
    );

    if args.listen != "off" {
        let addr: SocketAddr = args
            .listen
            .parse()
            .with_context(|| format!("--listen {:?} is not an address:port", args.listen))?;
        let t = telemetry.clone();
        let listener_ok = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        drop(listener_ok);
        tokio::spawn(async move {
            if let Err(e) = observe::serve(addr, t).await {
                tracing::error!(error = %e, "HTTP server on {addr} stopped");
            }
        });
    }

    // Sources.
    let (tx, rx) = watch::channel(Desired::Unknown);
    let mut kube_client = None;
    match file_secret(&args) {
        Some(fs) => {
            tracing::info!("watching Secret file {}", fs.path().display());
            tokio::spawn(file_source(fs, tx));
            if args.node_name.is_some() {
                kube_client = source::kube::client(args.kubeconfig.as_ref()).await.ok();
            }
        }
        None => {
            tracing::info!(
                "watching Secret {}/{} through the Kubernetes API",
                args.name.secret_namespace,
                args.name.secret_name
            );
            if args.node_name.is_some() {
                kube_client = source::kube::client(args.kubeconfig.as_ref()).await.ok();
            }
            tokio::spawn(source::kube::run(
                args.kubeconfig.clone(),
                args.name.secret_namespace.clone(),
                args.name.secret_name.clone(),
                tx,
            ));
        }
    }
    let node = match (&args.node_name, kube_client) {
        (Some(n), Some(c)) => Some(NodeReporter::new(c, n.clone())),
        (Some(n), None) => {
            tracing::warn!("NODE_NAME={n} but no Kubernetes client: no Events or annotation");
            None
        }
        _ => None,
    };

    // Drift: watch config.toml's directory and the certs dir.
    let (poke_tx, poke_rx) = mpsc::unbounded_channel();
    let _drift_cfg = DirWatcher::new(&[dir_of(&paths.config)], false, poke_tx.clone())
        .map_err(
            |e| tracing::warn!(error = %e, "cannot watch {} for drift", paths.config.display()),
        )
        .ok();
    let socket_dir = dir_of(&args.reload.runtime.containerd_socket);
    let _socket_watch = DirWatcher::new(std::slice::from_ref(&socket_dir), false, poke_tx.clone())
        .map_err(|e| tracing::warn!(error = %e, "cannot watch {} for containerd restarts", socket_dir.display()))
        .ok();
    let _drift_certs = DirWatcher::new(std::slice::from_ref(&paths.certs_dir), true, poke_tx)
        .map_err(
            |e| tracing::warn!(error = %e, "cannot watch {} for drift", paths.certs_dir.display()),
        )
        .ok();

    // Signals.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = stop_tx.send(true);
    });

    let pulse = notify::watchdog_interval()
        .map(|w| w.min(Duration::from_secs(10)))
        .unwrap_or(Duration::from_secs(10));
    let ctx = Ctx {
        paths,
        mode: args.mode,
        runtime: args.reload.runtime.clone(),
        containerd: None,
        decided: false,
        reloader,
        jitter: args.restart_jitter,
        on_delete: args.on_delete,
        telemetry,
        node,
        shutdown: stop_rx,
        pulse,
        rolled_back: None,
        held_logged: None,
    };
    main_loop(ctx, rx, poke_rx, args.debounce, args.resync).await;
    notify::stopping();
    tracing::info!("regmirror stopped");
    Ok(())
}

/// One sign of life: the heartbeat /healthz reads, and WATCHDOG=1 for systemd.
fn pulse(ctx: &Ctx) {
    ctx.telemetry.beat();
    notify::watchdog();
}

/// Await `fut` while keeping the heartbeat and the watchdog fed.
async fn alive<F: std::future::Future>(ctx: &Ctx, fut: F) -> F::Output {
    tokio::pin!(fut);
    let mut tick = tokio::time::interval(ctx.pulse);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => pulse(ctx),
        }
    }
}

async fn main_loop(
    mut ctx: Ctx,
    mut rx: watch::Receiver<Desired>,
    mut pokes: mpsc::UnboundedReceiver<Vec<PathBuf>>,
    debounce: Duration,
    resync: Duration,
) {
    let mut ready_sent = false;
    let mut resync_timer = tokio::time::interval_at(tokio::time::Instant::now() + resync, resync);
    let waiting_since = tokio::time::Instant::now();
    let mut shutdown = ctx.shutdown.clone();
    loop {
        pulse(&ctx);
        let trigger = tokio::select! {
            r = rx.changed() => match r { Ok(()) => Trigger::Source, Err(_) => break },
            Some(paths) = pokes.recv() => {
                if paths.iter().all(|p| is_noise(p, &ctx.paths, &ctx.runtime.containerd_socket)) { continue; }
                Trigger::Files
            }
            _ = resync_timer.tick() => Trigger::Resync,
            _ = tokio::time::sleep(ctx.pulse) => {
                if !ready_sent && waiting_since.elapsed() > Duration::from_secs(20) {
                    notify::ready("waiting for the Secret source");
                    ctx.telemetry.not_ready("waiting for the Secret source");
                    ready_sent = true;
                }
                continue;
            }
            _ = shutdown.changed() => break,
        };
        // Debounce: wait until the burst is quiet, at most 5× the debounce.
        let deadline = tokio::time::Instant::now() + debounce * 5;
        let mut trigger = trigger;
        loop {
            let quiet = tokio::time::sleep(debounce);
            tokio::select! {
                r = rx.changed() => { if r.is_err() { break; } trigger = Trigger::Source; }
                Some(_) = pokes.recv() => {}
                _ = quiet => break,
                _ = shutdown.changed() => break,
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        if *ctx.shutdown.borrow() {
            break;
        }
        let desired = rx.borrow_and_update().clone();
        if desired == Desired::Unknown {
            continue;
        }
        let status = reconcile(&mut ctx, desired, trigger).await;
        if ready_sent {
            notify::status(&status);
        } else {
            notify::ready(&status);
            ready_sent = true;
        }
    }
}

async fn event(ctx: &Ctx, warning: bool, reason: &str, note: &str) {
    if let Some(n) = &ctx.node {
        n.event(warning, reason, note).await;
    }
}

async fn reject(ctx: &Ctx, why: &str) -> String {
    tracing::error!("Secret rejected, nothing changed on disk: {why}");
    ctx.telemetry.count("rejected");
    ctx.telemetry.not_ready(&format!("Secret rejected: {why}"));
    event(ctx, true, "RegistryConfigRejected", why).await;
    format!("rejected: {why}")
}

/// Reconcile the desired state once. Returns a one-line status.
async fn reconcile(ctx: &mut Ctx, desired: Desired, trigger: Trigger) -> String {
    match desired {
        Desired::Unknown => "waiting for the Secret".into(),
        Desired::Present(Err(why)) => reject(ctx, &why).await,
        Desired::Present(Ok(data)) => match spec::parse_spec(&data) {
            Err(e) => reject(ctx, &e.to_string()).await,
            Ok(spec) => {
                for w in &spec.warnings {
                    tracing::warn!("{w}");
                }
                converge(ctx, Some(spec), trigger).await
            }
        },
        Desired::Deleted => match ctx.on_delete {
            OnDelete::Keep => {
                tracing::warn!(
                    "Secret is gone; --on-delete keep: leaving the applied configuration"
                );
                ctx.telemetry.succeeded(None);
                "Secret deleted; configuration kept".into()
            }
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
async fn decide_for(ctx: &mut Ctx) -> Choice {
    let node = crate::runtime::detect::detect(&ctx.runtime.probe()).await;
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
    }
}

/// Bring the files to `spec` (None: revert), reload, health-check, roll back on failure.
async fn converge(ctx: &mut Ctx, spec: Option<RegistrySpec>, trigger: Trigger) -> String {
    let hash = spec.as_ref().map(RegistrySpec::hash);
    let label = hash.clone().unwrap_or_else(|| "revert".into());
    let mode = decide_for(ctx).await;
    let paths = ctx.paths.clone();
    let spec = Arc::new(spec);

    let s = spec.clone();
    let planned = blocking(move || apply::plan(&paths, s.as_ref().as_ref(), mode)).await;
    let plan = match planned {
        Ok(p) => p,
        Err(e) => return reject(ctx, &e.to_string()).await,
    };
    if hash.is_some() && plan.state_before.bad_spec_hash == hash && !plan.is_noop() {
        let why = ctx
            .rolled_back
            .as_ref()
            .filter(|(h, _)| Some(h) == hash.as_ref())
            .map(|(_, m)| format!(" ({m})"))
            .unwrap_or_default();
        let msg = format!(
            "spec {label} failed the containerd health check before{why}; waiting for a changed Secret"
        );
        tracing::warn!("{msg}");
        ctx.telemetry.not_ready(&msg);
        return msg;
    }
    if plan.is_noop() {
        ctx.telemetry.count("unchanged");
        ctx.telemetry.succeeded(hash.as_deref());
        return format!("up to date (spec {label})");
    }
    for w in &plan.warnings {
        tracing::warn!("{w}");
    }
    let drift = trigger != Trigger::Source && plan.state_before.spec_hash == hash && hash.is_some();
    let restarting = ctx.reloader.will_restart(plan.restart_needed);
    if restarting && !ctx.jitter.is_zero() {
        let wait = rand::rng().random_range(Duration::ZERO..=ctx.jitter);
        tracing::info!("containerd restart needed; waiting {wait:?} of jitter first");
        let mut stop = ctx.shutdown.clone();
        let interrupted = alive(ctx, async {
            tokio::select! {
                _ = tokio::time::sleep(wait) => false,
                _ = stop.changed() => true,
            }
        })
        .await;
        if interrupted {
            return "stopping".into();
        }
    }

    let (paths, s) = (ctx.paths.clone(), spec.clone());
    let applied = blocking(move || apply::apply_planned(&paths, s.as_ref().as_ref(), mode)).await;
    let (plan, outcome) = match applied {
        Ok(x) => x,
        Err(e) => {
            ctx.telemetry.count("failed");
            let msg = format!("apply failed: {e}");
            tracing::error!("{msg}");
            ctx.telemetry.not_ready(&msg);
            event(ctx, true, "RegistryConfigFailed", &msg).await;
            return msg;
        }
    };
    let files: Vec<String> = outcome
        .changed
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    tracing::info!(files = ?files, restart_needed = outcome.restart_needed, "wrote spec {label}");
    if drift {
        ctx.telemetry.drift_repairs.inc();
        tracing::warn!("managed entries had been changed on disk; restored them (drift repair)");
    }
    let reverted = spec.is_none();
    let restarted = ctx.reloader.will_restart(outcome.restart_needed);
    match alive(
        ctx,
        ctx.reloader
            .reload(outcome.restart_needed, outcome.expect.as_ref()),
    )
    .await
    {
        Ok(done) => {
            if restarted {
                ctx.telemetry.restarts.inc();
            }
            if let Some(d) = &done {
                tracing::info!("{d}");
            } else if outcome.restart_needed {
                tracing::warn!(
                    "containerd needs a restart to load the change (--reload {:?})",
                    ctx.reloader.strategy
                );
            }
            ctx.telemetry
                .count(if reverted { "reverted" } else { "changed" });
            ctx.telemetry.succeeded(hash.as_deref());
            let note = format!(
                "{} spec {label} for containerd {}: {} file(s) changed{}",
                if reverted { "reverted" } else { "applied" },
                ctx.containerd
                    .map_or_else(|| "(version unknown)".to_string(), |v| v.to_string()),
                files.len(),
                match (&done, restarted) {
                    (Some(d), true) => format!("; containerd restarted and healthy ({d})"),
                    _ => String::new(),
                }
            );
            event(
                ctx,
                false,
                if reverted {
                    "RegistryConfigReverted"
                } else {
                    "RegistryConfigApplied"
                },
                &note,
            )
            .await;
            if let Some(n) = &ctx.node {
                n.annotate(hash.as_deref()).await;
            }
            note
        }
        Err(e) => {
            if restarted {
                ctx.telemetry.restarts.inc();
            }
            tracing::error!("{e}; rolling back spec {label}");
            let paths = ctx.paths.clone();
            let rolled = blocking(move || apply::rollback(&paths, &plan, true)).await;
            let back = match &rolled {
                Ok(()) => alive(ctx, async {
                    ctx.reloader.restart_only().await?;
                    crate::reload::cri::wait_healthy(
                        &ctx.reloader.socket,
                        ctx.reloader.health_timeout,
                    )
                    .await
                    .map_err(crate::reload::ReloadError::from)
                })
                .await
                .map(|v| format!("containerd {v} healthy again on the previous configuration")),
                Err(err) => Err(crate::reload::ReloadError::Command {
                    what: "rollback".into(),
                    detail: err.to_string(),
                }),
            };
            if rolled.is_ok() && !matches!(ctx.reloader.strategy, ReloadStrategy::None) {
                ctx.telemetry.restarts.inc();
            }
            ctx.telemetry.rollbacks.inc();
            ctx.telemetry.count("rolled_back");
            let msg = match back {
                Ok(m) => format!("spec {label} rolled back ({e}); {m}"),
                Err(e2) => {
                    format!("spec {label} rolled back ({e}); containerd still unhealthy: {e2}")
                }
            };
            tracing::error!("{msg}");
            ctx.telemetry.not_ready(&msg);
            if let Some(h) = &hash {
                ctx.rolled_back = Some((h.clone(), msg.clone()));
                ctx.held_logged = Some(h.clone());
            }
            event(ctx, true, "RegistryConfigRolledBack", &msg).await;
            msg
        }
    }
}
