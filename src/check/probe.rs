//! The probes: `GET /v2/` at each endpoint and `HEAD` of an image's manifest at each host of
//! its pull, with the auth handshake containerd performs (a 401 answered with Basic
//! credentials, or a Bearer token fetched from the challenge's realm with them), each bounded
//! by a total timeout. What a probe saw is turned into a report by pure functions
//! ([`classify_ping`], [`classify_step`]); only [`exchange`] does I/O.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_rustls::rustls::ClientConfig;

use super::challenge::{self, Challenge};
use super::net::{self, NetError, Progress, Response, TlsFailure, fmt_dur};
use super::plan::{ImagePlan, Step, Target};

/// TCP connect timeout of every request (containerd's dialer default is 30 s; a probe that
/// must answer quickly uses less).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What containerd's resolver sends when it asks for a manifest.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json, */*";

/// What one request (and its auth round trips) ended with.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The final answer.
    pub status: u16,
    pub response: Response,
    /// Time to the first answer (connect + TLS + first response headers).
    pub latency: Duration,
    /// How the request was authorised: `none`, `header` (hosts.toml), `basic`, `bearer`.
    pub auth: &'static str,
    /// The auth handshake failed (wrong credentials, none, token refused): why.
    pub auth_failure: Option<String>,
}

/// How a bounded probe ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Answered(Exchange),
    Failed(NetError),
    /// The total timeout hit; the phase reached ([`net::CONNECTED`], …) and the timeout.
    TimedOut(u8, Duration),
}

fn push_auth(headers: &mut Vec<(String, String)>, value: String) {
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
    headers.push(("Authorization".into(), value));
}

/// One request, retried as plain http when the host allows it and https was not answered.
async fn send(
    t: &Target,
    cfg: &Arc<ClientConfig>,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    progress: &Progress,
) -> Result<Response, NetError> {
    let r = net::request(method, url, headers, cfg, CONNECT_TIMEOUT, progress).await;
    match (r, url.strip_prefix("https://")) {
        (Err(NetError::Tls(TlsFailure::NotTls)), Some(rest)) if t.http_fallback => {
            let http = format!("http://{rest}");
            net::request(method, &http, headers, cfg, CONNECT_TIMEOUT, progress).await
        }
        (r, _) => r,
    }
}

/// `method url` at `t`, answering a 401 as containerd does. `scope`: the token scope this
/// request needs (`repository:<repo>:pull`), when the challenge names none.
pub async fn exchange(
    t: &Target,
    cfg: &Arc<ClientConfig>,
    method: &str,
    url: &str,
    accept: Option<&str>,
    scope: Option<&str>,
    progress: &Progress,
) -> Result<Exchange, NetError> {
    let mut headers = request_headers(t, accept);
    let preemptive = authorization_of(&headers);
    let started = Instant::now();
    let first = send(t, cfg, method, url, &headers, progress).await?;
    let mut ex = first_exchange(first, started.elapsed(), preemptive.is_some());
    if ex.status != 401 {
        return Ok(ex);
    }
    let retry_auth =
        match retry_authorization(t, cfg, &mut ex, preemptive.as_deref(), scope, progress).await {
            Ok(value) => value,
            Err(why) => {
                ex.auth_failure = Some(why);
                return Ok(ex);
            }
        };
    push_auth(&mut headers, retry_auth);
    let second = send(t, cfg, method, url, &headers, progress).await?;
    ex.status = second.status;
    if second.status == 401 {
        ex.auth_failure = Some(refused_after_retry(ex.auth));
    }
    ex.response = second;
    Ok(ex)
}

/// The headers of a request to `t`: its hosts.toml headers, plus `Accept` when given.
fn request_headers(t: &Target, accept: Option<&str>) -> Vec<(String, String)> {
    let mut headers = t.headers.0.clone();
    if let Some(a) = accept {
        headers.push(("Accept".into(), a.into()));
    }
    headers
}

/// The value of the `Authorization` header among `headers`, if any (sent preemptively).
fn authorization_of(headers: &[(String, String)]) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.clone())
}

/// The exchange as the first answer leaves it, before any auth round trip.
fn first_exchange(first: Response, latency: Duration, preemptive: bool) -> Exchange {
    Exchange {
        status: first.status,
        response: first,
        latency,
        auth: if preemptive { "header" } else { "none" },
        auth_failure: None,
    }
}

/// The `Authorization` value to retry the 401 in `ex` with, or why the handshake failed.
/// Sets `ex.auth` to the scheme of the challenge answered.
async fn retry_authorization(
    t: &Target,
    cfg: &Arc<ClientConfig>,
    ex: &mut Exchange,
    preemptive: Option<&str>,
    scope: Option<&str>,
    progress: &Progress,
) -> Result<String, String> {
    let challenges: Vec<Challenge> = ex
        .response
        .header_all("www-authenticate")
        .iter()
        .flat_map(|h| challenge::parse_challenges(h))
        .collect();
    let Some(c) = challenge::pick(&challenges) else {
        return Err(no_challenge_failure(&challenges));
    };
    if c.scheme == "basic" {
        ex.auth = "basic";
        basic_authorization(t, preemptive)
    } else {
        ex.auth = "bearer";
        bearer_authorization(t, cfg, c, scope, progress).await
    }
}

/// Why a 401 carrying no Basic or Bearer challenge cannot be answered.
fn no_challenge_failure(challenges: &[Challenge]) -> String {
    let schemes: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
    format!(
        "401 with no Basic or Bearer challenge (WWW-Authenticate: {})",
        if schemes.is_empty() {
            "none".to_string()
        } else {
            schemes.join(", ")
        }
    )
}

/// The `Basic` value answering a Basic challenge with `t`'s credentials, or why there is
/// none (no credentials, or the same ones were already sent and refused).
fn basic_authorization(t: &Target, preemptive: Option<&str>) -> Result<String, String> {
    let Some(cr) = t.credentials.as_ref() else {
        return Err(
            "the registry asks for credentials (Basic) and none are configured for this host (USERNAME/PASSWORD go to DOMAIN's host only)".into(),
        );
    };
    let value = format!("Basic {}", cr.basic_token());
    if preemptive == Some(value.as_str()) {
        return Err("authentication failed: the credentials were refused (401)".into());
    }
    Ok(value)
}

/// The `Bearer` value answering the Bearer challenge `c`: a token fetched from its realm
/// (with `t`'s credentials when it has some), or why none was obtained.
async fn bearer_authorization(
    t: &Target,
    cfg: &Arc<ClientConfig>,
    c: &Challenge,
    scope: Option<&str>,
    progress: &Progress,
) -> Result<String, String> {
    let Some(token_url) = challenge::token_url(c, scope) else {
        return Err("the Bearer challenge names no realm".into());
    };
    let realm_host = net::parse_url(&token_url)
        .map(|p| p.authority)
        .unwrap_or_else(|| "?".into());
    let mut th = Vec::new();
    if let Some(cr) = &t.credentials {
        th.push((
            "Authorization".into(),
            format!("Basic {}", cr.basic_token()),
        ));
    }
    let tr = send(t, cfg, "GET", &token_url, &th, progress)
        .await
        .map_err(|e| format!("token server {realm_host}: {e}"))?;
    if let Some(why) = token_status_failure(tr.status, &realm_host, t.credentials.is_some()) {
        return Err(why);
    }
    let Some(token) = challenge::parse_token(&tr.body) else {
        return Err(format!(
            "token server {realm_host} answered without a token"
        ));
    };
    Ok(format!("Bearer {}", token.expose()))
}

/// Why the token server's answer `status` gives no token, or `None` for a success (2xx).
fn token_status_failure(status: u16, realm_host: &str, has_credentials: bool) -> Option<String> {
    match status {
        200..=299 => None,
        401 | 403 => Some(format!(
            "authentication failed: the token server {realm_host} refused {} ({status})",
            if has_credentials {
                "the credentials"
            } else {
                "an anonymous token (no credentials are configured for this host)"
            },
        )),
        s => Some(format!("token server {realm_host} answered {s}")),
    }
}

/// Why the registry still answered 401 after the retry with `auth` (`basic`/`bearer`).
fn refused_after_retry(auth: &str) -> String {
    format!(
        "authentication failed: the registry refused the {} (401)",
        if auth == "bearer" {
            "token"
        } else {
            "credentials"
        }
    )
}

/// `fut` within `timeout`, as an [`Outcome`].
async fn bounded(
    timeout: Duration,
    progress: &Progress,
    fut: impl std::future::Future<Output = Result<Exchange, NetError>>,
) -> Outcome {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(ex)) => Outcome::Answered(ex),
        Ok(Err(e)) => Outcome::Failed(e),
        Err(_) => Outcome::TimedOut(progress.get(), timeout),
    }
}

/// One endpoint, as `check` reports it (schema `regmirror.check/v1`, `endpoints[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointReport {
    /// The registries whose pulls use this endpoint (`*`: the wildcard).
    pub registries: Vec<String>,
    /// `host[:port]`.
    pub host: String,
    /// The endpoint as containerd has it (`scheme://host/v2/<prefix>`).
    pub url: String,
    /// What was asked: `scheme://host/v2/`.
    pub probe_url: String,
    pub skip_verify: bool,
    /// A CA (CA_CERT, hosts.toml `ca`, `tls.ca_file`) is configured for this host.
    pub ca: bool,
    /// Credentials are configured for this host.
    pub credentials: bool,
    /// A TCP connection was made.
    pub reachable: bool,
    /// `null` for plain http.
    pub tls_ok: Option<bool>,
    /// `null` when the question did not arise (no answer, or not a registry).
    pub auth_ok: Option<bool>,
    /// `none`, `header`, `basic`, `bearer` (`null` without an answer).
    pub auth: Option<&'static str>,
    /// The final HTTP status.
    pub status: Option<u16>,
    /// Time to the first answer (connect + TLS + response headers), ms.
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
    pub warnings: Vec<String>,
}

impl EndpointReport {
    /// Reachable, TLS fine, authorised, and `/v2/` answered 2xx.
    pub fn ok(&self) -> bool {
        self.error.is_none()
            && self.reachable
            && self.tls_ok != Some(false)
            && self.auth_ok == Some(true)
    }

    fn new(t: &Target) -> EndpointReport {
        EndpointReport {
            registries: t.registries.clone(),
            host: t.host.clone(),
            url: t.url(),
            probe_url: t.ping_url(),
            skip_verify: t.tls.skip_verify,
            ca: !t.ca_files.is_empty(),
            credentials: t.credentials.is_some(),
            reachable: false,
            tls_ok: None,
            auth_ok: None,
            auth: None,
            status: None,
            latency_ms: None,
            error: None,
            warnings: t.warnings.clone(),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How far a failed or timed-out request got: (reachable, tls_ok, why). Pure.
fn failed_phase(https: bool, o: &Outcome) -> Option<(bool, Option<bool>, String)> {
    match o {
        Outcome::Answered(_) => None,
        Outcome::Failed(e) => {
            let (reachable, tls) = match e {
                NetError::BadUrl(_) | NetError::Connect(_) | NetError::ConnectTimeout(_) => {
                    (false, None)
                }
                NetError::Tls(_) => (true, Some(false)),
                NetError::Http(_) => (true, https.then_some(true)),
            };
            Some((reachable, tls, e.to_string()))
        }
        Outcome::TimedOut(phase, after) => {
            let after = fmt_dur(*after);
            Some(if *phase < net::CONNECTED {
                (false, None, format!("no connection within {after}"))
            } else if https && *phase < net::TLS_DONE {
                (
                    true,
                    Some(false),
                    format!(
                        "connected, but the TLS handshake did not finish within {after} (the server hangs)"
                    ),
                )
            } else {
                (
                    true,
                    https.then_some(true),
                    format!("connected, but no answer within {after} (the server hangs)"),
                )
            })
        }
    }
}

/// The report of `GET /v2/` at `t`. Pure.
pub fn classify_ping(t: &Target, o: &Outcome) -> EndpointReport {
    let mut r = EndpointReport::new(t);
    let https = t.scheme == "https";
    if let Some((reachable, tls, e)) = failed_phase(https, o) {
        (r.reachable, r.tls_ok, r.error) = (reachable, tls, Some(e));
        return r;
    }
    let Outcome::Answered(ex) = o else {
        return r;
    };
    r.reachable = true;
    r.tls_ok = https.then_some(true);
    r.latency_ms = Some(ms(ex.latency));
    r.status = Some(ex.status);
    r.auth = Some(ex.auth);
    if let Some(f) = &ex.auth_failure {
        r.auth_ok = Some(false);
        r.error = Some(f.clone());
        return r;
    }
    match ex.status {
        200..=299 => r.auth_ok = Some(true),
        404 => r.error = Some("GET /v2/ answered 404: no registry API at this host".into()),
        400 if !https && String::from_utf8_lossy(&ex.response.body).contains("HTTPS server") => {
            r.error = Some("GET /v2/ answered 400: this port speaks https, not http".into())
        }
        403 => {
            r.auth_ok = Some(false);
            r.error = Some("GET /v2/ answered 403: access denied".into());
        }
        s => r.error = Some(format!("GET /v2/ answered {s}")),
    }
    r
}

/// Probe one endpoint (`GET /v2/`), bounded by `timeout`.
pub async fn probe_target(t: &Target, timeout: Duration) -> EndpointReport {
    if let Some(e) = &t.ca_error {
        let mut r = EndpointReport::new(t);
        r.error = Some(e.clone());
        return r;
    }
    let cfg = match net::client_config(&t.tls) {
        Ok(c) => c,
        Err(e) => {
            let mut r = EndpointReport::new(t);
            r.error = Some(format!("CA: {e}"));
            return r;
        }
    };
    let progress = Progress::default();
    let url = t.ping_url();
    let o = bounded(
        timeout,
        &progress,
        exchange(t, &cfg, "GET", &url, None, None, &progress),
    )
    .await;
    classify_ping(t, &o)
}

/// One host of an image pull (schema `regmirror.check/v1`, `images[].attempts[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    /// The manifest URL containerd requests there.
    pub url: String,
    pub host: String,
    pub eligible: bool,
    /// The registry itself (the upstream fallback), not a mirror.
    pub upstream: bool,
    /// `served` (2xx), `missing` (404: containerd tries the next host), `failed` (any other
    /// answer or no answer: the next host too), `skipped` (capabilities exclude the host),
    /// `not_tried` (an earlier host served it), `not_probed` (the upstream is not asked).
    pub outcome: &'static str,
    pub status: Option<u16>,
    pub latency_ms: Option<u64>,
    /// `Docker-Content-Digest` of the answer.
    pub digest: Option<String>,
    pub media_type: Option<String>,
    pub error: Option<String>,
}

/// One `--image` (schema `regmirror.check/v1`, `images[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageReport {
    /// As given.
    pub reference: String,
    /// Normalised (`docker.io/library/nginx:1.25`).
    pub image: String,
    pub attempts: Vec<StepReport>,
    /// The URL of the host that would serve the manifest (`null`: no mirror does).
    pub served_by: Option<String>,
    /// No mirror serves it and containerd would go on to the upstream registry.
    pub falls_back_to_upstream: bool,
    /// That upstream URL (not probed).
    pub upstream: Option<String>,
    pub ok: bool,
}

/// The report of one eligible mirror step from what `HEAD` saw. Pure.
pub fn classify_step(url: &str, host: &str, o: &Outcome) -> StepReport {
    let mut s = StepReport {
        url: url.to_string(),
        host: host.to_string(),
        eligible: true,
        upstream: false,
        outcome: "failed",
        status: None,
        latency_ms: None,
        digest: None,
        media_type: None,
        error: None,
    };
    let ex = match o {
        Outcome::Answered(ex) => ex,
        Outcome::Failed(e) => {
            s.error = Some(e.to_string());
            return s;
        }
        Outcome::TimedOut(..) => {
            s.error = failed_phase(url.starts_with("https://"), o).map(|(_, _, e)| e);
            return s;
        }
    };
    s.status = Some(ex.status);
    s.latency_ms = Some(ms(ex.latency));
    if let Some(f) = &ex.auth_failure {
        s.error = Some(f.clone());
        return s;
    }
    match ex.status {
        200..=299 => {
            s.outcome = "served";
            s.digest = ex.response.header("docker-content-digest");
            s.media_type = ex.response.header("content-type");
        }
        404 => {
            s.outcome = "missing";
            s.error = Some("the mirror does not have this manifest (404)".into());
        }
        st => s.error = Some(format!("HEAD answered {st}")),
    }
    s
}

/// What the steps add up to: who serves it, whether containerd falls back. Pure.
pub fn conclude(reference: &str, image: &str, attempts: Vec<StepReport>) -> ImageReport {
    let served_by = attempts
        .iter()
        .find(|a| a.outcome == "served")
        .map(|a| a.url.clone());
    let upstream = attempts
        .iter()
        .find(|a| a.upstream && a.eligible)
        .map(|a| a.url.clone());
    ImageReport {
        reference: reference.to_string(),
        image: image.to_string(),
        falls_back_to_upstream: served_by.is_none() && upstream.is_some(),
        ok: served_by.is_some(),
        served_by,
        upstream,
        attempts,
    }
}

/// HEAD the manifest at each host of the pull, in order, until one serves it.
pub async fn probe_image(reference: &str, plan: &ImagePlan, timeout: Duration) -> ImageReport {
    let mut attempts = Vec::new();
    let mut served = false;
    for step in &plan.steps {
        let report = if served {
            unprobed_step(step, "not_tried", None)
        } else {
            probe_step(step, timeout).await
        };
        served |= report.outcome == "served";
        attempts.push(report);
    }
    conclude(reference, &plan.image, attempts)
}

/// The report of `step` when it was not probed (or failed before any request): `outcome`,
/// with `error` when there is one.
fn unprobed_step(step: &Step, outcome: &'static str, error: Option<String>) -> StepReport {
    StepReport {
        url: step.url.clone(),
        host: step.target.host.clone(),
        eligible: step.eligible,
        upstream: step.upstream,
        outcome,
        status: None,
        latency_ms: None,
        digest: None,
        media_type: None,
        error,
    }
}

/// The report of `step` of a pull no earlier host served: skipped, left to the upstream,
/// failed on its CA, or probed with a manifest HEAD bounded by `timeout`.
async fn probe_step(step: &Step, timeout: Duration) -> StepReport {
    let t = &step.target;
    if !step.eligible {
        return unprobed_step(
            step,
            "skipped",
            Some("its capabilities leave it out of this pull".into()),
        );
    }
    if step.upstream {
        return unprobed_step(step, "not_probed", None);
    }
    if let Some(e) = &t.ca_error {
        return unprobed_step(step, "failed", Some(e.clone()));
    }
    match net::client_config(&t.tls) {
        Err(e) => unprobed_step(step, "failed", Some(format!("CA: {e}"))),
        Ok(cfg) => {
            let o = head_manifest(step, &cfg, timeout).await;
            classify_step(&step.url, &t.host, &o)
        }
    }
}

/// HEAD of `step`'s manifest URL, with the pull scope of its repository, within `timeout`.
async fn head_manifest(step: &Step, cfg: &Arc<ClientConfig>, timeout: Duration) -> Outcome {
    let progress = Progress::default();
    let path = net::parse_url(&step.url)
        .map(|p| p.target)
        .unwrap_or_default();
    let scope = challenge::repository_of(&path).map(|r| format!("repository:{r}:pull"));
    bounded(
        timeout,
        &progress,
        exchange(
            &step.target,
            cfg,
            "HEAD",
            &step.url,
            Some(MANIFEST_ACCEPT),
            scope.as_deref(),
            &progress,
        ),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::plan::Headers;

    fn target(scheme: &str) -> Target {
        Target {
            registries: vec!["docker.io".into()],
            scheme: scheme.into(),
            host: "m:5000".into(),
            path: "/v2/p".into(),
            tls: Default::default(),
            ca_files: vec![],
            ca_error: None,
            headers: Headers::default(),
            credentials: None,
            http_fallback: false,
            warnings: vec![],
        }
    }

    fn answered(status: u16, auth_failure: Option<&str>) -> Outcome {
        Outcome::Answered(Exchange {
            status,
            response: Response {
                status,
                headers: Default::default(),
                body: vec![],
            },
            latency: Duration::from_millis(7),
            auth: "basic",
            auth_failure: auth_failure.map(str::to_string),
        })
    }

    #[test]
    fn ping_classification() {
        let t = target("https");
        let r = classify_ping(&t, &answered(200, None));
        assert!(r.ok() && r.tls_ok == Some(true) && r.latency_ms == Some(7));
        let r = classify_ping(&t, &answered(401, Some("authentication failed")));
        assert_eq!((r.auth_ok, r.ok()), (Some(false), false));
        let r = classify_ping(&t, &Outcome::Failed(NetError::Tls(TlsFailure::UnknownCa)));
        assert_eq!(
            (r.reachable, r.tls_ok, r.auth_ok),
            (true, Some(false), None)
        );
        assert!(r.error.unwrap().contains("unknown CA"));
        let r = classify_ping(&t, &Outcome::Failed(NetError::Connect("refused".into())));
        assert!(!r.reachable && r.tls_ok.is_none());
        let r = classify_ping(
            &t,
            &Outcome::TimedOut(net::CONNECTED, Duration::from_secs(2)),
        );
        assert_eq!((r.reachable, r.tls_ok), (true, Some(false)));
        assert!(
            r.error
                .unwrap()
                .contains("TLS handshake did not finish within 2 s")
        );
        let h = target("http");
        let r = classify_ping(
            &h,
            &Outcome::TimedOut(net::SENT, Duration::from_millis(1500)),
        );
        assert_eq!((r.reachable, r.tls_ok), (true, None));
        assert!(r.error.unwrap().contains("no answer within 1500 ms"));
        let r = classify_ping(&h, &answered(404, None));
        assert!(!r.ok() && r.error.unwrap().contains("no registry API"));
    }

    #[test]
    fn image_conclusions() {
        let served = classify_step("u1", "m", &answered(200, None));
        let missing = classify_step("u1", "m", &answered(404, None));
        let denied = classify_step("u1", "m", &answered(401, Some("authentication failed")));
        assert_eq!(
            (served.outcome, missing.outcome, denied.outcome),
            ("served", "missing", "failed")
        );
        let up = StepReport {
            url: "https://registry-1.docker.io/v2/x/manifests/1".into(),
            upstream: true,
            outcome: "not_probed",
            ..missing.clone()
        };
        let r = conclude(
            "x:1",
            "docker.io/library/x:1",
            vec![missing.clone(), up.clone()],
        );
        assert!(!r.ok && r.falls_back_to_upstream && r.served_by.is_none());
        assert_eq!(r.upstream.as_deref(), Some(up.url.as_str()));
        let r = conclude(
            "x:1",
            "docker.io/library/x:1",
            vec![missing.clone(), served, up],
        );
        assert!(r.ok && !r.falls_back_to_upstream && r.served_by.as_deref() == Some("u1"));
        // Strict air-gap: nothing follows the mirrors.
        let r = conclude("x:1", "docker.io/library/x:1", vec![missing]);
        assert!(!r.ok && !r.falls_back_to_upstream);
    }
}
