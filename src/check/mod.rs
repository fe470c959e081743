//! `regmirror check`: does each mirror endpoint answer, with the CA / skip-verify and the
//! credentials containerd would use, and which host would serve an image?
//!
//! - [`plan`] (pure but for the files it reads): the hosts containerd would use, from the
//!   files on disk or from the spec rendered in memory, through the [`crate::resolve`] model.
//! - [`challenge`] (pure): `WWW-Authenticate` parsing, the token URL, the token.
//! - [`probe`]: the bounded probes and the pure classification of what they saw.
//! - [`net`]: the I/O shell (TCP, rustls, one HTTP/1.1 request).
//!
//! Passwords, tokens and header values never enter a report or an error.

pub mod challenge;
pub mod net;
pub mod plan;
pub mod probe;

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

pub use plan::{Layout, PlanError, Target};
pub use probe::{CONNECT_TIMEOUT, EndpointReport, ImageReport, StepReport};

use crate::render::HostsOptions;
use crate::spec::RegistrySpec;

/// The schema name of `check -o json`; bumped on any incompatible change.
pub const SCHEMA: &str = "regmirror.check/v1";

/// The default total time one probe (one endpoint, or one host of an image) may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The whole answer of `check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub schema: &'static str,
    /// What the hosts came from: `{kind: "secret", path}` or `{kind: "disk", config,
    /// containerd}`.
    pub source: serde_json::Value,
    pub timeout_ms: u64,
    /// Every endpoint and every image is fine.
    pub ok: bool,
    pub endpoints: Vec<EndpointReport>,
    pub images: Vec<ImageReport>,
    pub warnings: Vec<String>,
}

/// Probe every endpoint of `layout` and every image, all at once, each bounded by `timeout`.
pub async fn check(
    layout: &Layout,
    images: &[String],
    timeout: Duration,
) -> Result<(Vec<EndpointReport>, Vec<ImageReport>), PlanError> {
    let targets = layout.targets()?;
    let plans = images
        .iter()
        .map(|i| layout.image_plan(i).map(|p| (i.clone(), p)))
        .collect::<Result<Vec<_>, _>>()?;
    let endpoints =
        futures::future::join_all(targets.iter().map(|t| probe::probe_target(t, timeout)));
    let imgs =
        futures::future::join_all(plans.iter().map(|(r, p)| probe::probe_image(r, p, timeout)));
    Ok(futures::join!(endpoints, imgs))
}

/// Probe every mirror endpoint of `spec` (`GET /v2/` with its CA / skip-verify and
/// credentials), concurrently, each within `timeout`: what the agent runs after an apply.
pub async fn probe_spec(
    spec: &RegistrySpec,
    timeout: Duration,
) -> Result<Vec<EndpointReport>, PlanError> {
    let layout = Layout::from_spec(spec, HostsOptions::default())?;
    Ok(check(&layout, &[], timeout).await?.0)
}

/// Assemble the report.
pub fn report(
    source: serde_json::Value,
    timeout: Duration,
    endpoints: Vec<EndpointReport>,
    images: Vec<ImageReport>,
    warnings: Vec<String>,
) -> CheckReport {
    CheckReport {
        schema: SCHEMA,
        source,
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        ok: endpoints.iter().all(EndpointReport::ok) && images.iter().all(|i| i.ok),
        endpoints,
        images,
        warnings,
    }
}

fn yes_no(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "ok",
        Some(false) => "FAILED",
        None => "-",
    }
}

/// The text form of a report. Pure.
pub fn render_text(r: &CheckReport) -> String {
    let mut o = String::new();
    if r.endpoints.is_empty() {
        o.push_str("no mirror endpoint to check\n");
    }
    for e in &r.endpoints {
        write_endpoint(&mut o, e);
    }
    for i in &r.images {
        write_image(&mut o, i);
    }
    for w in &r.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    o
}

/// The text block of one endpoint: its verdict line, its facts, its error and warnings.
fn write_endpoint(o: &mut String, e: &EndpointReport) {
    let _ = writeln!(
        o,
        "{} {} (for {})",
        if e.ok() { "ok    " } else { "FAILED" },
        e.url,
        e.registries.join(", ")
    );
    let _ = writeln!(o, "       {}", endpoint_facts(e).join(", "));
    if let Some(err) = &e.error {
        let _ = writeln!(o, "       error: {err}");
    }
    for w in &e.warnings {
        let _ = writeln!(o, "       warning: {w}");
    }
}

/// What an endpoint probe found, one short phrase each: reachability, TLS (https only),
/// auth, latency, status.
fn endpoint_facts(e: &EndpointReport) -> Vec<String> {
    let mut facts = vec![format!(
        "reachable {}",
        if e.reachable { "yes" } else { "no" }
    )];
    if e.url.starts_with("https://") {
        facts.push(format!(
            "TLS {}{}",
            yes_no(e.tls_ok),
            if e.skip_verify {
                " (verification off)"
            } else if e.ca {
                " (CA configured)"
            } else {
                ""
            }
        ));
    }
    facts.push(format!(
        "auth {}{}",
        yes_no(e.auth_ok),
        match e.auth {
            Some(a) if e.auth_ok.is_some() => format!(" ({a})"),
            _ => String::new(),
        }
    ));
    if let Some(l) = e.latency_ms {
        facts.push(format!("{l} ms"));
    }
    if let Some(s) = e.status {
        facts.push(format!("GET /v2/ {s}"));
    }
    facts
}

/// The text block of one image: its verdict line, each host tried, and who serves it.
fn write_image(o: &mut String, i: &ImageReport) {
    let _ = writeln!(
        o,
        "{} image {}",
        if i.ok { "ok    " } else { "FAILED" },
        i.image
    );
    for (n, a) in i.attempts.iter().enumerate() {
        write_attempt(o, n + 1, a);
    }
    let _ = writeln!(o, "       {}", image_verdict(i));
}

/// The numbered line (`n`) of one host of an image pull, and its error below it.
fn write_attempt(o: &mut String, n: usize, a: &StepReport) {
    let mut line = format!("       {}. {} {}", n, a.url, a.outcome.replace('_', " "));
    if let Some(s) = a.status {
        let _ = write!(line, " ({s})");
    }
    if let Some(l) = a.latency_ms {
        let _ = write!(line, " {l} ms");
    }
    if let Some(d) = &a.digest {
        let _ = write!(line, " {d}");
    }
    let _ = writeln!(o, "{line}");
    if let Some(e) = &a.error {
        let _ = writeln!(o, "          {e}");
    }
}

/// Who serves an image: a mirror, the upstream containerd falls back to, or nobody.
fn image_verdict(i: &ImageReport) -> String {
    match (&i.served_by, &i.upstream) {
        (Some(s), _) => format!("served by {s}"),
        (None, Some(u)) => {
            format!("no mirror serves it: containerd falls back to the upstream {u} (not probed)")
        }
        (None, None) => "no mirror serves it and nothing follows: the pull fails".into(),
    }
}
