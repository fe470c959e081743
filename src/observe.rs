//! Telling people what happened: tracing setup, sd-notify, `/healthz` `/readyz` `/metrics`, and
//! Kubernetes Events + a spec-hash annotation on the Node. Nothing here ever sees PASSWORD: the
//! messages it is given are built from errors and hashes that do not hold it.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event (journald adds the time).
    Plain,
    /// One JSON object per line (for pods).
    Json,
}

/// Set up tracing: `RUST_LOG`/`REGMIRROR_LOG` filter (default info), plain or JSON to stderr.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REGMIRROR_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match (format, under_journald) {
        (LogFormat::Json, _) => builder.json().flatten_event(true).try_init(),
        (LogFormat::Plain, true) => builder.without_time().with_ansi(false).try_init(),
        (LogFormat::Plain, false) => builder.with_ansi(false).try_init(),
    };
}

/// sd-notify messages (no-ops when NOTIFY_SOCKET is unset). A datagram to a socket nobody
/// drains blocks once its queue is full, so messages go through one thread with a bounded
/// queue: the loop never waits on the notify socket (a full queue drops the message).
pub mod notify {
    use std::sync::OnceLock;
    use std::sync::mpsc::{SyncSender, sync_channel};
    use std::time::Duration;

    use sd_notify::NotifyState;

    enum Msg {
        Ready(String),
        Status(String),
        Watchdog,
        Stopping(SyncSender<()>),
    }

    fn sender() -> Option<&'static SyncSender<Msg>> {
        static TX: OnceLock<Option<SyncSender<Msg>>> = OnceLock::new();
        TX.get_or_init(|| {
            std::env::var_os("NOTIFY_SOCKET")?;
            let (tx, rx) = sync_channel::<Msg>(16);
            std::thread::Builder::new()
                .name("sd-notify".into())
                .spawn(move || {
                    for m in rx {
                        let _ = match &m {
                            Msg::Ready(s) => {
                                sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(s)])
                            }
                            Msg::Status(s) => sd_notify::notify(&[NotifyState::Status(s)]),
                            Msg::Watchdog => sd_notify::notify(&[NotifyState::Watchdog]),
                            Msg::Stopping(_) => sd_notify::notify(&[NotifyState::Stopping]),
                        };
                        if let Msg::Stopping(ack) = m {
                            let _ = ack.try_send(());
                        }
                    }
                })
                .ok()?;
            Some(tx)
        })
        .as_ref()
    }

    fn send(m: Msg) {
        if let Some(tx) = sender() {
            let _ = tx.try_send(m);
        }
    }

    pub fn ready(status: &str) {
        send(Msg::Ready(status.to_string()));
    }
    pub fn status(status: &str) {
        send(Msg::Status(status.to_string()));
    }
    pub fn watchdog() {
        send(Msg::Watchdog);
    }
    /// WATCHDOG=1 when systemd asked for a watchdog (`asked`).
    pub fn watchdog_if(asked: bool) {
        if asked {
            watchdog();
        }
    }
    /// STOPPING=1, waiting at most 1 s for it to be sent.
    pub fn stopping() {
        let (ack, done) = sync_channel(1);
        send(Msg::Stopping(ack));
        let _ = done.recv_timeout(Duration::from_secs(1));
    }
    /// Half the watchdog interval systemd set (`WATCHDOG_USEC`), if any.
    pub fn watchdog_interval() -> Option<std::time::Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID")
            && pid.parse::<u32>().ok() != Some(std::process::id())
        {
            return None;
        }
        Some(std::time::Duration::from_micros(usec / 2))
    }
}

/// What this binary is: the package version, and the commit when the build set
/// `REGMIRROR_GIT_SHA` (e.g. `REGMIRROR_GIT_SHA=$(git rev-parse --short HEAD) cargo build`).
pub mod build {
    use std::sync::OnceLock;

    /// The package version (Cargo.toml).
    pub const VERSION: &str = env!("CARGO_PKG_VERSION");

    /// The commit the binary was built from, when the build said so (empty counts as unset).
    pub fn git_sha() -> Option<&'static str> {
        option_env!("REGMIRROR_GIT_SHA").filter(|s| !s.trim().is_empty())
    }

    /// `0.1.0`, or `0.1.0 (git abc1234)`: what `--version` prints after the name.
    pub fn version() -> &'static str {
        static V: OnceLock<String> = OnceLock::new();
        V.get_or_init(|| match git_sha() {
            Some(sha) => format!("{VERSION} (git {sha})"),
            None => VERSION.to_string(),
        })
    }
}

/// Buckets (seconds) of `regmirror_reconcile_duration_seconds`: a no-op reconcile takes
/// milliseconds, one with a restart (and jitter) tens of seconds.
pub const RECONCILE_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Buckets (seconds) of `regmirror_containerd_restart_duration_seconds`.
pub const RESTART_BUCKETS: [f64; 11] =
    [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0];
/// Buckets (seconds) of `regmirror_health_check_duration_seconds` (bounded by `--health-timeout`).
pub const HEALTH_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HashLabel {
    pub hash: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    pub host: String,
    pub url: String,
}

/// One mirror endpoint's probe (`regmirror check`'s, after an apply).
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorProbe {
    pub host: String,
    pub url: String,
    pub up: bool,
    pub latency: Option<f64>,
}

/// The agent's metrics and health, shared between the loop and the HTTP server.
pub struct Telemetry {
    registry: Registry,
    pub applies: Family<ResultLabel, Counter>,
    pub restarts: Counter,
    pub rollbacks: Counter,
    pub drift_repairs: Counter,
    pub last_success: Gauge<f64, AtomicU64>,
    pub spec_info: Family<HashLabel, Gauge>,
    /// `regmirror_build_info{version, git_sha?}` 1.
    pub build_info: Family<Vec<(String, String)>, Gauge>,
    /// One reconcile, from trigger to outcome (see [`Telemetry::observe_reconcile`]).
    pub reconcile_duration: Histogram,
    /// The restart command alone (`systemctl restart` or `--reload command:`).
    pub restart_duration: Histogram,
    /// Waiting for containerd to be healthy over CRI after a restart.
    pub health_check_duration: Histogram,
    /// `regmirror_mirror_up{host,url}`: 1 when the endpoint answered `/v2/` as containerd would
    /// be answered (reachable, TLS, auth), after the last apply.
    pub mirror_up: Family<EndpointLabel, Gauge>,
    /// `regmirror_mirror_latency_seconds{host,url}`: time to its first answer.
    pub mirror_latency: Family<EndpointLabel, Gauge<f64, AtomicU64>>,
    current_hash: Mutex<Option<String>>,
    ready: AtomicBool,
    not_ready_reason: Mutex<String>,
    /// Unix seconds of the loop's last sign of life.
    heartbeat: AtomicI64,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Telemetry")
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

/// `regmirror_build_info{version, git_sha?}`, set to 1.
fn build_info_family() -> Family<Vec<(String, String)>, Gauge> {
    let build_info = Family::<Vec<(String, String)>, Gauge>::default();
    let mut labels = vec![("version".to_string(), build::VERSION.to_string())];
    if let Some(sha) = build::git_sha() {
        labels.push(("git_sha".to_string(), sha.to_string()));
    }
    build_info.get_or_create(&labels).set(1);
    build_info
}

impl Telemetry {
    /// Every metric, registered under the `regmirror_` prefix; not ready yet.
    pub fn new() -> Telemetry {
        let mut t = Telemetry {
            registry: Registry::with_prefix("regmirror"),
            applies: Family::default(),
            restarts: Counter::default(),
            rollbacks: Counter::default(),
            drift_repairs: Counter::default(),
            last_success: Gauge::default(),
            spec_info: Family::default(),
            build_info: build_info_family(),
            reconcile_duration: Histogram::new(RECONCILE_BUCKETS),
            restart_duration: Histogram::new(RESTART_BUCKETS),
            health_check_duration: Histogram::new(HEALTH_BUCKETS),
            mirror_up: Family::default(),
            mirror_latency: Family::default(),
            current_hash: Mutex::new(None),
            ready: AtomicBool::new(false),
            not_ready_reason: Mutex::new("no reconcile yet".into()),
            heartbeat: AtomicI64::new(now_secs()),
        };
        t.register_reconcile_metrics();
        t.register_duration_metrics();
        t.register_mirror_metrics();
        t
    }

    /// Register the reconcile counters, the last success, the spec and the build info.
    fn register_reconcile_metrics(&mut self) {
        let r = &mut self.registry;
        r.register(
            "applies",
            "Reconciles by result (changed, unchanged, rejected, failed, rolled_back, reverted)",
            self.applies.clone(),
        );
        r.register(
            "containerd_restarts",
            "containerd restarts done by regmirror",
            self.restarts.clone(),
        );
        r.register(
            "rollbacks",
            "Changes rolled back after a failed containerd health check",
            self.rollbacks.clone(),
        );
        r.register(
            "drift_repairs",
            "Managed entries restored after someone else changed them",
            self.drift_repairs.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "Unix time of the last successful reconcile",
            self.last_success.clone(),
        );
        r.register(
            "spec_info",
            "The applied spec's hash (PASSWORD excluded), value 1",
            self.spec_info.clone(),
        );
        r.register(
            "build_info",
            "The running regmirror's version (and commit, when built with one), value 1",
            self.build_info.clone(),
        );
    }

    /// Register the duration histograms: reconcile, restart command, health check.
    fn register_duration_metrics(&mut self) {
        let r = &mut self.registry;
        r.register(
            "reconcile_duration_seconds",
            "Time of one reconcile, from its trigger (after debounce) to its outcome, restart jitter and health check included",
            self.reconcile_duration.clone(),
        );
        r.register(
            "containerd_restart_duration_seconds",
            "Time of the containerd restart command (systemctl restart or --reload command:)",
            self.restart_duration.clone(),
        );
        r.register(
            "health_check_duration_seconds",
            "Time until containerd answered CRI Version and Status ready after a restart",
            self.health_check_duration.clone(),
        );
    }

    /// Register the mirror probe gauges: up and latency per endpoint.
    fn register_mirror_metrics(&mut self) {
        let r = &mut self.registry;
        r.register(
            "mirror_up",
            "1 when the mirror endpoint answered GET /v2/ with the TLS settings and credentials containerd uses (probed after each apply)",
            self.mirror_up.clone(),
        );
        r.register(
            "mirror_latency_seconds",
            "Time to the mirror endpoint's first answer to GET /v2/ (probed after each apply)",
            self.mirror_latency.clone(),
        );
    }

    /// One reconcile took `elapsed` (every outcome, no-ops included).
    pub fn observe_reconcile(&self, elapsed: Duration) {
        self.reconcile_duration.observe(elapsed.as_secs_f64());
    }

    /// One containerd restart command took `elapsed` (whether it succeeded or not).
    pub fn observe_containerd_restart(&self, elapsed: Duration) {
        self.restart_duration.observe(elapsed.as_secs_f64());
    }

    /// One post-restart health check took `elapsed` (healthy or timed out).
    pub fn observe_health_check(&self, elapsed: Duration) {
        self.health_check_duration.observe(elapsed.as_secs_f64());
    }

    pub fn count(&self, result: &str) {
        self.applies
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    pub fn succeeded(&self, hash: Option<&str>) {
        self.ready.store(true, Ordering::SeqCst);
        self.last_success.set(now_secs() as f64);
        let mut cur = self.current_hash.lock().expect("lock");
        if cur.as_deref() != hash {
            if let Some(old) = cur.take() {
                self.spec_info.remove(&HashLabel { hash: old });
            }
            if let Some(h) = hash {
                self.spec_info
                    .get_or_create(&HashLabel { hash: h.into() })
                    .set(1);
            }
            *cur = hash.map(str::to_string);
        }
    }

    pub fn not_ready(&self, reason: &str) {
        self.ready.store(false, Ordering::SeqCst);
        *self.not_ready_reason.lock().expect("lock") = reason.to_string();
    }

    /// The loop started working on a trigger.
    pub fn busy(&self) {
        self.heartbeat.store(now_secs(), Ordering::SeqCst);
    }

    /// The loop is waiting for a trigger (it cannot be stalled while it waits).
    pub fn idle(&self) {
        self.heartbeat.store(0, Ordering::SeqCst);
    }

    /// Seconds the loop has been working on one trigger (0 while it waits): computed on request,
    /// no heartbeat timer needed.
    pub fn since_beat(&self) -> i64 {
        match self.heartbeat.load(Ordering::SeqCst) {
            0 => 0,
            since => now_secs() - since,
        }
    }

    /// Replace the mirror gauges with the probes of the spec applied now.
    pub fn set_mirror_probes(&self, probes: &[MirrorProbe]) {
        self.mirror_up.clear();
        self.mirror_latency.clear();
        for p in probes {
            let l = EndpointLabel {
                host: p.host.clone(),
                url: p.url.clone(),
            };
            self.mirror_up.get_or_create(&l).set(i64::from(p.up));
            if let Some(s) = p.latency {
                self.mirror_latency.get_or_create(&l).set(s);
            }
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn readiness(&self) -> (bool, String) {
        (
            self.ready.load(Ordering::SeqCst),
            self.not_ready_reason.lock().expect("lock").clone(),
        )
    }
}

/// How long the loop may work on one trigger before /healthz fails.
pub const STALL_SECS: i64 = 300;

/// Serve `/healthz`, `/readyz`, `/metrics` on `listener` until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, t: Arc<Telemetry>) -> std::io::Result<()> {
    let (t1, t2, t3) = (t.clone(), t.clone(), t);
    let app = Router::new()
        .route(
            "/healthz",
            get(move || async move {
                let idle = t1.since_beat();
                if idle > STALL_SECS {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("loop stalled for {idle} s\n"),
                    )
                } else {
                    (StatusCode::OK, "ok\n".to_string())
                }
            }),
        )
        .route(
            "/readyz",
            get(move || async move {
                match t2.readiness() {
                    (true, _) => (StatusCode::OK, "ready\n".to_string()),
                    (false, why) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n"),
                    ),
                }
            }),
        )
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    t3.encode(),
                )
            }),
        );
    axum::serve(listener, app).await
}

/// Events on the Node and the spec-hash annotation (only with `NODE_NAME` and a kube client).
pub struct NodeReporter {
    recorder: kube::runtime::events::Recorder,
    client: kube::Client,
    node: String,
}

/// The annotation carrying the applied spec hash.
pub const ANNOTATION: &str = "regmirror.io/spec-hash";

impl NodeReporter {
    pub fn new(client: kube::Client, node: String) -> NodeReporter {
        let reporter = kube::runtime::events::Reporter {
            controller: "regmirror".into(),
            instance: Some(node.clone()),
        };
        NodeReporter {
            recorder: kube::runtime::events::Recorder::new(client.clone(), reporter),
            client,
            node,
        }
    }

    /// Publish an Event on the Node (`warning` for rejections and rollbacks). Failures are logged.
    pub async fn event(&self, warning: bool, reason: &str, note: &str) {
        use kube::runtime::events::{Event, EventType};
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(self.node.clone()),
            uid: Some(self.node.clone()),
            ..Default::default()
        };
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = tokio::time::timeout(
            Duration::from_secs(10),
            self.recorder.publish(&ev, &reference),
        )
        .await
        .map_err(|_| "timed out".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        {
            tracing::warn!(error = %e, "could not publish Event {reason} on Node {}", self.node);
        }
    }

    /// Set the spec-hash annotation on the Node.
    pub async fn annotate(&self, hash: Option<&str>) {
        use kube::api::{Api, Patch, PatchParams};
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION: hash}}});
        if let Err(e) = tokio::time::timeout(
            Duration::from_secs(10),
            nodes.patch(&self.node, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        .map_err(|_| "timed out".to_string())
        .and_then(|r| r.map(|_| ()).map_err(|e| e.to_string()))
        {
            tracing::warn!(error = %e, "could not annotate Node {}", self.node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_expose_build_info_and_duration_histograms() {
        let t = Telemetry::new();
        let before = t.encode();
        let version = format!("version=\"{}\"", build::VERSION);
        let info = before
            .lines()
            .find(|l| l.starts_with("regmirror_build_info{"))
            .unwrap_or_else(|| panic!("no build_info:\n{before}"));
        assert!(info.contains(&version) && info.ends_with(" 1"), "{info}");
        assert_eq!(
            info.contains("git_sha="),
            build::git_sha().is_some(),
            "{info}"
        );
        for family in [
            "regmirror_reconcile_duration_seconds",
            "regmirror_containerd_restart_duration_seconds",
            "regmirror_health_check_duration_seconds",
        ] {
            assert!(
                before.contains(&format!("# TYPE {family} histogram")),
                "{family}:\n{before}"
            );
            assert!(before.contains(&format!("{family}_count 0")), "{before}");
        }

        t.observe_reconcile(Duration::from_millis(30));
        t.observe_reconcile(Duration::from_secs(40));
        t.observe_containerd_restart(Duration::from_millis(1500));
        t.observe_health_check(Duration::from_millis(70));
        let after = t.encode();
        let sample = |series: &str| -> f64 {
            after
                .lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("no {series}:\n{after}"))
        };
        assert_eq!(sample("regmirror_reconcile_duration_seconds_count"), 2.0);
        assert_eq!(
            sample("regmirror_reconcile_duration_seconds_bucket{le=\"0.05\"}"),
            1.0
        );
        assert_eq!(
            sample("regmirror_reconcile_duration_seconds_bucket{le=\"60.0\"}"),
            2.0
        );
        assert_eq!(
            sample("regmirror_containerd_restart_duration_seconds_bucket{le=\"1.0\"}"),
            0.0
        );
        assert_eq!(
            sample("regmirror_containerd_restart_duration_seconds_bucket{le=\"2.0\"}"),
            1.0
        );
        assert!((sample("regmirror_health_check_duration_seconds_sum") - 0.07).abs() < 1e-9);
    }

    #[test]
    fn version_names_the_package_version() {
        assert!(build::version().starts_with(env!("CARGO_PKG_VERSION")));
    }
}
