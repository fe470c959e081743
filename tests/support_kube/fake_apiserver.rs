//! A FAKE Kubernetes API server for tests. It is NOT a kube-apiserver: it is a small in-process
//! HTTP/1.1 server (axum/hyper) on `127.0.0.1:<random port>`, plain HTTP, no auth, that speaks
//! the real wire protocol for the handful of endpoints regmirror uses, so that a real
//! `kube::Client` and the real kube-rs `watcher` can be pointed at it.
//!
//! Implemented (JSON only, no protobuf/CBOR):
//! - `GET /api/v1/namespaces/{ns}/secrets` and `GET /api/v1/secrets`: list (`SecretList`, items
//!   without `kind`/`apiVersion` as the real server sends them), with `fieldSelector`
//!   (`metadata.name`, `metadata.namespace`, `type`; `=`, `==`, `!=`), simple `labelSelector`
//!   (`k=v`, `k==v`, `k!=v`, `k`, `!k`), `limit`/`continue` (real paging over a consistent
//!   snapshot; a continue token older than the compacted history gets 410), `resourceVersion`
//!   and `resourceVersionMatch` (`""`: most recent, `"0"`: any, `N`/`NotOlderThan`,
//!   `N`/`Exact`: the state at N, reconstructed from history; 410 if compacted, 504
//!   "Too large resource version" if N is in the future).
//! - the same paths with `watch=true`: a chunked stream of newline-delimited
//!   `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{..}}`. From `resourceVersion=N`
//!   the events after N are replayed from history, then live events follow; with no
//!   `resourceVersion` or `"0"`, synthetic ADDED events for the current state come first. If N
//!   is older than the retained history: HTTP 200 and a single ERROR event carrying a 410
//!   `Expired` Status ("too old resource version: N (M)"), then the stream ends, like the real
//!   watch cache. `sendInitialEvents=true` (streaming lists, needs
//!   `resourceVersionMatch=NotOlderThan` and `allowWatchBookmarks=true`, else 422): the initial
//!   ADDED events then a BOOKMARK annotated `k8s.io/initial-events-end: "true"`.
//!   `timeoutSeconds` ends the stream cleanly after that many seconds (a BOOKMARK first when
//!   bookmarks are allowed); without it (or 0) after 1800 s. Periodic BOOKMARKs only when
//!   [`FakeApiServer::set_bookmark_interval`] is set (off by default, for determinism).
//! - `GET /api/v1/namespaces/{ns}/secrets/{name}`: 200 or a 404 `NotFound` Status.
//! - `POST /api/v1/namespaces/{ns}/events`, `POST /apis/events.k8s.io/v1/namespaces/{ns}/events`
//!   (201 with the stored object; `generateName`; 409 `AlreadyExists`), and
//!   `GET`/`PATCH .../events/{name}` (what kube's `Recorder` does for a repeated event).
//! - `GET`/`PATCH /api/v1/nodes/{name}`: every node name exists implicitly (a bare Node). PATCH
//!   understands `application/merge-patch+json` (RFC 7386), `application/json-patch+json`
//!   (RFC 6902), and approximates `application/strategic-merge-patch+json` and
//!   `application/apply-patch+yaml` (JSON body; `fieldManager` required) as a merge patch;
//!   other content types get 415. A `metadata.resourceVersion` in a patch that does not match
//!   gets 409 `Conflict`.
//! - `GET /version`.
//! - everything else: 404 `NotFound` (unknown path) or 405 `MethodNotAllowed` Status JSON.
//!
//! Not implemented: writes of Secrets over HTTP (the control handle writes them), watches of
//! anything but Secrets, set-based label selectors, protobuf, authn/authz, server-side apply
//! field ownership, strategic-merge list semantics, and the real server's habit of returning
//! short pages when a selector filters items.
//!
//! Resource versions are one global, monotonic integer (as strings), shared by every write
//! (Secrets, Events, Nodes), like etcd's revision. Every task and connection stops when the
//! [`FakeApiServer`] is dropped.

// Handlers return a ready-made error `Response` as their `Err`; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

/// The first resourceVersion handed out (RVs before it are "compacted" from the start).
const FIRST_RV: u64 = 100;
/// Watch duration when the client sends no `timeoutSeconds` (the real server picks 1800-3600 s).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
/// Request bodies larger than this get 413.
const MAX_BODY: usize = 3 * 1024 * 1024;
/// Live-event buffer per watch; a watcher that falls this far behind is disconnected.
const BROADCAST_CAPACITY: usize = 4096;
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// One request the fake served, in arrival order.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, `PATCH`, ...
    pub method: String,
    /// The path, e.g. `/api/v1/namespaces/jet-system/secrets`.
    pub path: String,
    /// The raw (still percent-encoded) query string, `""` if none.
    pub query: String,
    /// The decoded query parameters, in order.
    pub params: Vec<(String, String)>,
    /// The request's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The HTTP status answered (200 for a watch, even one that then carries a 410 ERROR event).
    pub status: u16,
}

impl RecordedRequest {
    /// The decoded value of query parameter `key` (the first one).
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether this was a watch (`watch=true`).
    pub fn is_watch(&self) -> bool {
        self.param("watch").is_some_and(is_true)
    }

    /// Whether this was a list of Secrets (a GET on the collection without `watch`).
    pub fn is_secret_list(&self) -> bool {
        self.method == "GET" && self.path.ends_with("/secrets") && !self.is_watch()
    }
}

/// One PATCH of a Node, as received.
#[derive(Clone, Debug)]
pub struct NodePatch {
    /// The Node's name.
    pub node: String,
    /// The request's `Content-Type` (e.g. `application/merge-patch+json`).
    pub content_type: String,
    /// The decoded query parameters (e.g. `fieldManager`).
    pub params: Vec<(String, String)>,
    /// The patch body, parsed as JSON (`Value::String` holding the raw text if it was not JSON).
    pub body: Value,
    /// The HTTP status answered.
    pub status: u16,
}

/// The fake API server. Start with [`FakeApiServer::start`]; it stops (listener closed, every
/// connection and watch dropped) when this handle is dropped.
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeApiServer {
    /// Bind `127.0.0.1:0` and serve. Panics if binding fails.
    pub async fn start() -> FakeApiServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("fake apiserver: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake apiserver: local_addr");
        let (kill, _) = watch::channel(0u64);
        let (live, _) = broadcast::channel(BROADCAST_CAPACITY);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            ^ u32::from(addr.port());
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(seed)),
            live,
            kill,
            unavailable: AtomicBool::new(false),
            open_watches: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        });
        let app_shared = shared.clone();
        let app = axum::Router::new().fallback(move |req: Request| {
            let shared = app_shared.clone();
            async move { handle(shared, req).await }
        });
        let listener = KillableListener {
            inner: listener,
            kill: shared.kill.clone(),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApiServer { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A `kube::Config` for this server (plain HTTP, no auth, default namespace `default`).
    pub fn config(&self) -> kube::Config {
        kube::Config::new(self.url().parse().expect("fake apiserver url"))
    }

    /// A `kube::Client` for this server built the production way (`Client::try_from(Config)`).
    /// Needs a Tokio runtime. With kube's `rustls-tls` feature this builds a rustls connector
    /// even for `http://`, so it panics unless a rustls `CryptoProvider` is available (kube's
    /// `ring` or `aws-lc-rs` feature, or one installed by the process).
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("kube client for the fake apiserver")
    }

    /// A `kube::Client` for this server over plain HTTP with no TLS stack at all: hyper-util's
    /// HTTP connector under kube's own base-URI layer and its default server-aware retry
    /// policy (429/503/504), i.e. the default stack minus TLS, auth, tracing and timeouts.
    /// Works whatever rustls provider features are enabled. Needs a Tokio runtime.
    pub fn plain_http_client(&self) -> kube::Client {
        use kube::client::ConfigExt as _;
        // hyper-util's `client-legacy`/`http1` and tower's `retry`/`util` features are enabled
        // by kube-client itself.
        let config = self.config();
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<kube::client::Body>();
        let service = tower::ServiceBuilder::new()
            .layer(config.base_uri_layer())
            .layer(tower::retry::RetryLayer::new(
                kube::client::retry::RetryPolicy::server_retry(),
            ))
            .map_err(tower::BoxError::from)
            .service(http);
        kube::Client::new(service, config.default_namespace)
    }

    /// Create Secret `ns/name` with `data` (plain values; stored base64 as `data`), type
    /// `Opaque`. Emits ADDED. Returns its resourceVersion. Panics if it already exists.
    pub fn create_secret(&self, ns: &str, name: &str, data: BTreeMap<String, String>) -> String {
        let mut st = self.shared.lock_state();
        let key = (ns.to_string(), name.to_string());
        assert!(
            !st.secrets.contains_key(&key),
            "fake apiserver: create_secret: secrets \"{name}\" already exists in {ns}"
        );
        let rv = st.next_rv();
        let uid = st.next_uid();
        let mut metadata = Map::new();
        metadata.insert("name".into(), json!(name));
        metadata.insert("namespace".into(), json!(ns));
        metadata.insert("uid".into(), json!(uid));
        metadata.insert("resourceVersion".into(), json!(rv.to_string()));
        metadata.insert("creationTimestamp".into(), json!(now_rfc3339()));
        let mut obj = Map::new();
        obj.insert("kind".into(), json!("Secret"));
        obj.insert("apiVersion".into(), json!("v1"));
        obj.insert("metadata".into(), Value::Object(metadata));
        set_secret_data(&mut obj, &data);
        obj.insert("type".into(), json!("Opaque"));
        let obj = Value::Object(obj);
        st.secrets.insert(key, obj.clone());
        self.shared.publish(&mut st, rv, "ADDED", obj);
        rv.to_string()
    }

    /// Replace the data of Secret `ns/name`. Emits MODIFIED. Returns the new resourceVersion.
    /// Panics if it does not exist.
    pub fn update_secret(&self, ns: &str, name: &str, data: BTreeMap<String, String>) -> String {
        let mut st = self.shared.lock_state();
        let key = (ns.to_string(), name.to_string());
        assert!(
            st.secrets.contains_key(&key),
            "fake apiserver: update_secret: secrets \"{name}\" not found in {ns}"
        );
        let rv = st.next_rv();
        let mut obj = st.secrets.remove(&key).expect("checked above");
        if let Some(o) = obj.as_object_mut() {
            set_secret_data(o, &data);
        }
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        st.secrets.insert(key, obj.clone());
        self.shared.publish(&mut st, rv, "MODIFIED", obj);
        rv.to_string()
    }

    /// Delete Secret `ns/name`. Emits DELETED (the last state, at the deletion's
    /// resourceVersion). Returns that resourceVersion. Panics if it does not exist.
    pub fn delete_secret(&self, ns: &str, name: &str) -> String {
        let mut st = self.shared.lock_state();
        let key = (ns.to_string(), name.to_string());
        let Some(mut obj) = st.secrets.remove(&key) else {
            panic!("fake apiserver: delete_secret: secrets \"{name}\" not found in {ns}");
        };
        let rv = st.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.shared.publish(&mut st, rv, "DELETED", obj);
        rv.to_string()
    }

    /// The stored Secret `ns/name` (full object, base64 `data`), if any.
    pub fn secret(&self, ns: &str, name: &str) -> Option<Value> {
        let st = self.shared.lock_state();
        st.secrets.get(&(ns.to_string(), name.to_string())).cloned()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> String {
        self.shared.lock_state().rv.to_string()
    }

    /// Simulate etcd compaction: advance the global resourceVersion by one (as unrelated writes
    /// in a real cluster do) and forget all history, so that a watch (or an `Exact` list, or a
    /// `continue` token) from any older resourceVersion gets 410 Expired. Open watches are not
    /// affected (combine with [`FakeApiServer::drop_connections`]). Returns the new oldest
    /// resourceVersion one may still watch from.
    pub fn compact_history(&self) -> String {
        let mut st = self.shared.lock_state();
        let rv = st.next_rv();
        st.compacted_rv = rv;
        st.base = st.secrets.clone();
        st.history.clear();
        rv.to_string()
    }

    /// Abort every open TCP connection, watch streams mid-way included (the client sees the
    /// chunked body end without its terminating chunk). New connections are accepted normally.
    pub fn drop_connections(&self) {
        self.shared.kill.send_modify(|epoch| *epoch += 1);
    }

    /// While `true`, answer every request (watches too) with 503 and a `ServiceUnavailable`
    /// Status. Already open watch streams stay open (combine with
    /// [`FakeApiServer::drop_connections`] to simulate an outage that cuts them).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.shared.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// Send a BOOKMARK (at the current resourceVersion) every `interval` on watches that allow
    /// bookmarks and start after this call. `None` (the default): no periodic bookmarks.
    pub fn set_bookmark_interval(&self, interval: Option<Duration>) {
        self.shared.lock_state().bookmark_interval = interval;
    }

    /// Every request served so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log).clone()
    }

    /// Every Event body POSTed or PATCHed (either API group), in arrival order, as received.
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock_state().event_log.clone()
    }

    /// The stored Event objects (after defaulting and patches), by group/namespace/name.
    pub fn event_objects(&self) -> Vec<Value> {
        self.shared.lock_state().events.values().cloned().collect()
    }

    /// Every Node PATCH received, in order.
    pub fn node_patches(&self) -> Vec<NodePatch> {
        self.shared.lock_state().node_patches.clone()
    }

    /// The stored Node `name`, if it was ever read or patched.
    /// A Lease as stored.
    pub fn lease(&self, ns: &str, name: &str) -> Option<Value> {
        lock(&self.shared.state)
            .leases
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Every accepted Lease write, in order: (namespace, name, holder, resourceVersion).
    pub fn lease_log(&self) -> Vec<(String, String, String, u64)> {
        lock(&self.shared.state).lease_log.clone()
    }

    pub fn node(&self, name: &str) -> Option<Value> {
        self.shared.lock_state().nodes.get(name).cloned()
    }

    /// How many watch response streams are currently open.
    pub fn open_watches(&self) -> usize {
        self.shared.open_watches.load(Ordering::SeqCst)
    }

    /// Wait (at most `within`) until at least `n` watch streams are open.
    pub async fn wait_for_open_watches(&self, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.open_watches() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.kill.send_modify(|epoch| *epoch += 1);
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// State

type Key = (String, String);

struct SecretEvent {
    rv: u64,
    type_: &'static str,
    object: Value,
}

struct State {
    /// Last resourceVersion handed out.
    rv: u64,
    /// Current Secrets by (namespace, name).
    secrets: BTreeMap<Key, Value>,
    /// Secrets as of `compacted_rv`.
    base: BTreeMap<Key, Value>,
    /// Oldest resourceVersion one may watch from; history holds every Secret event after it.
    compacted_rv: u64,
    history: Vec<Arc<SecretEvent>>,
    /// Events by (group, namespace, name).
    events: BTreeMap<(String, String, String), Value>,
    event_log: Vec<Value>,
    nodes: BTreeMap<String, Value>,
    node_patches: Vec<NodePatch>,
    /// coordination.k8s.io/v1 Leases by (namespace, name).
    leases: BTreeMap<Key, Value>,
    /// Every accepted Lease write: (namespace, name, holder or "", resourceVersion).
    lease_log: Vec<(String, String, String, u64)>,
    bookmark_interval: Option<Duration>,
    uid_seed: u32,
    uid_counter: u64,
}

impl State {
    fn new(uid_seed: u32) -> State {
        State {
            rv: FIRST_RV,
            secrets: BTreeMap::new(),
            base: BTreeMap::new(),
            compacted_rv: FIRST_RV,
            history: Vec::new(),
            events: BTreeMap::new(),
            event_log: Vec::new(),
            nodes: BTreeMap::new(),
            node_patches: Vec::new(),
            leases: BTreeMap::new(),
            lease_log: Vec::new(),
            bookmark_interval: None,
            uid_seed,
            uid_counter: 0,
        }
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn next_uid(&mut self) -> String {
        self.uid_counter += 1;
        format!(
            "{:08x}-fa4e-4000-8000-{:012x}",
            self.uid_seed, self.uid_counter
        )
    }

    /// The Secrets as of `rv` (`compacted_rv <= rv <= self.rv`).
    fn secrets_at(&self, rv: u64) -> BTreeMap<Key, Value> {
        if rv >= self.rv {
            return self.secrets.clone();
        }
        let mut at = self.base.clone();
        for ev in self.history.iter().take_while(|e| e.rv <= rv) {
            let key = object_key(&ev.object);
            if ev.type_ == "DELETED" {
                at.remove(&key);
            } else {
                at.insert(key, ev.object.clone());
            }
        }
        at
    }

    fn node_mut(&mut self, name: &str) -> &mut Value {
        if !self.nodes.contains_key(name) {
            let rv = self.next_rv();
            let uid = self.next_uid();
            let node = json!({
                "kind": "Node",
                "apiVersion": "v1",
                "metadata": {
                    "name": name,
                    "uid": uid,
                    "resourceVersion": rv.to_string(),
                    "creationTimestamp": now_rfc3339(),
                    "labels": {"kubernetes.io/hostname": name},
                },
                "spec": {},
                "status": {},
            });
            self.nodes.insert(name.to_string(), node);
        }
        self.nodes.get_mut(name).expect("inserted above")
    }
}

struct Shared {
    state: Mutex<State>,
    /// Live Secret events (sent while holding `state`, so a watch can subscribe atomically).
    live: broadcast::Sender<Arc<SecretEvent>>,
    /// Bumped to abort every connection and watch stream.
    kill: watch::Sender<u64>,
    unavailable: AtomicBool,
    open_watches: AtomicUsize,
    log: Mutex<Vec<RecordedRequest>>,
}

impl Shared {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn publish(&self, st: &mut State, rv: u64, type_: &'static str, object: Value) {
        let ev = Arc::new(SecretEvent { rv, type_, object });
        st.history.push(ev.clone());
        let _ = self.live.send(ev);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn object_key(obj: &Value) -> Key {
    (
        obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        obj["metadata"]["name"].as_str().unwrap_or("").to_string(),
    )
}

fn set_secret_data(obj: &mut Map<String, Value>, data: &BTreeMap<String, String>) {
    if data.is_empty() {
        obj.remove("data");
    } else {
        let encoded: Map<String, Value> = data
            .iter()
            .map(|(k, v)| {
                let b64 = base64::engine::general_purpose::STANDARD.encode(v.as_bytes());
                (k.clone(), Value::String(b64))
            })
            .collect();
        obj.insert("data".into(), Value::Object(encoded));
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP handling

type Params = Vec<(String, String)>;

fn param<'a>(params: &'a Params, key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn is_true(v: &str) -> bool {
    matches!(v, "true" | "True" | "TRUE" | "1" | "t" | "T")
}

async fn handle(shared: Arc<Shared>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let params = parse_query(&query);
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let resp = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Err(e) => status_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("could not read the request body: {e}"),
            None,
        ),
        Ok(_) if shared.unavailable.load(Ordering::SeqCst) => status_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the server is currently unable to handle the request (fake apiserver: unavailable)"
                .into(),
            None,
        ),
        Ok(body) => route(
            &shared,
            &method,
            &path,
            &params,
            content_type.as_deref(),
            &body,
        ),
    };
    lock(&shared.log).push(RecordedRequest {
        method: method.to_string(),
        path,
        query,
        params,
        content_type,
        status: resp.status().as_u16(),
    });
    resp
}

fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    params: &Params,
    content_type: Option<&str>,
    body: &[u8],
) -> Response {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let get = *method == Method::GET;
    let post = *method == Method::POST;
    let patch = *method == Method::PATCH;
    match segs.as_slice() {
        ["version"] if get => version(),
        ["api", "v1", "namespaces", ns, "secrets"] if get => {
            list_or_watch(shared, Some(ns), params)
        }
        ["api", "v1", "secrets"] if get => list_or_watch(shared, None, params),
        ["api", "v1", "namespaces", ns, "secrets", name] if get => get_secret(shared, ns, name),
        ["api", "v1", "namespaces", ns, "events"] if post => create_event(shared, "", ns, body),
        ["apis", "events.k8s.io", "v1", "namespaces", ns, "events"] if post => {
            create_event(shared, "events.k8s.io", ns, body)
        }
        ["api", "v1", "namespaces", ns, "events", name] if get || patch => {
            event_item(shared, "", ns, name, get, content_type, params, body)
        }
        [
            "apis",
            "events.k8s.io",
            "v1",
            "namespaces",
            ns,
            "events",
            name,
        ] if get || patch => event_item(
            shared,
            "events.k8s.io",
            ns,
            name,
            get,
            content_type,
            params,
            body,
        ),
        ["api", "v1", "nodes", name] if get => {
            let mut st = shared.lock_state();
            json_response(StatusCode::OK, st.node_mut(name))
        }
        ["api", "v1", "nodes", name] if patch => {
            patch_node(shared, name, content_type, params, body)
        }
        ["api", "v1", "nodes", name, "status"] if patch => patch_node_status(shared, name, body),
        [
            "apis",
            "coordination.k8s.io",
            "v1",
            "namespaces",
            ns,
            "leases",
        ] if post => leases::create(&mut shared.lock_state(), ns, body),
        [
            "apis",
            "coordination.k8s.io",
            "v1",
            "namespaces",
            ns,
            "leases",
            name,
        ] => {
            let mut st = shared.lock_state();
            match *method {
                Method::GET => leases::get(&st, ns, name),
                Method::PUT => leases::replace(&mut st, ns, name, body),
                Method::DELETE => leases::delete(&mut st, ns, name),
                _ => status_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    format!("fake apiserver: {method} on a Lease"),
                    None,
                ),
            }
        }
        ["version"]
        | ["api", "v1", "namespaces", _, "secrets"]
        | ["api", "v1", "secrets"]
        | ["api", "v1", "namespaces", _, "secrets", _]
        | ["api", "v1", "namespaces", _, "events"]
        | ["apis", "events.k8s.io", "v1", "namespaces", _, "events"]
        | ["api", "v1", "namespaces", _, "events", _]
        | ["apis", "events.k8s.io", "v1", "namespaces", _, "events", _]
        | ["api", "v1", "nodes", _] => status_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource (fake apiserver: {method} {path})"
            ),
            None,
        ),
        _ => status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource".into(),
            None,
        ),
    }
}

fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1",
            "minor": "33",
            "gitVersion": "v1.33.0-fake-apiserver",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.24.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        }),
    )
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).expect("serialize JSON");
    let mut resp = with_json_headers(Response::new(Body::from(body)));
    *resp.status_mut() = status;
    resp
}

/// `resp` with the headers the API server sends on JSON: `Content-Type: application/json`,
/// `Cache-Control: no-cache, private`.
fn with_json_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

fn status_value(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut v = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        v["details"] = d;
    }
    v
}

fn status_response(
    status: StatusCode,
    reason: &str,
    message: String,
    details: Option<Value>,
) -> Response {
    json_response(
        status,
        &status_value(status.as_u16(), reason, &message, details),
    )
}

fn not_found(resource: &str, name: &str, group: &str) -> Response {
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    let mut details = json!({"name": name, "kind": resource});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{qualified} \"{name}\" not found"),
        Some(details),
    )
}

fn bad_request(message: String) -> Response {
    status_response(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

fn invalid(message: String) -> Response {
    status_response(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message, None)
}

fn expired(message: String) -> Response {
    status_response(StatusCode::GONE, "Expired", message, None)
}

fn too_large_rv(requested: u64, current: u64) -> Response {
    let mut resp = status_response(
        StatusCode::GATEWAY_TIMEOUT,
        "Timeout",
        format!("Too large resource version: {requested}, current: {current}"),
        Some(
            json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
        ),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

// ---------------------------------------------------------------------------------------------
// Secrets: get, list, watch

fn get_secret(shared: &Arc<Shared>, ns: &str, name: &str) -> Response {
    let st = shared.lock_state();
    match st.secrets.get(&(ns.to_string(), name.to_string())) {
        Some(obj) => json_response(StatusCode::OK, obj),
        None => not_found("secrets", name, ""),
    }
}

#[derive(Clone, Debug)]
struct FieldReq {
    field: String,
    value: String,
    equal: bool,
}

#[derive(Clone, Debug)]
enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    NotExists(String),
}

#[derive(Clone, Debug)]
struct Filter {
    namespace: Option<String>,
    fields: Vec<FieldReq>,
    labels: Vec<LabelReq>,
}

impl Filter {
    fn parse(namespace: Option<&str>, params: &Params) -> Result<Filter, Response> {
        let mut fields = Vec::new();
        for term in param(params, "fieldSelector").unwrap_or("").split(',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, true)
            } else {
                return Err(bad_request(format!(
                    "invalid selector: '{term}'; can't understand '{term}'"
                )));
            };
            let field = field.trim();
            if !matches!(field, "metadata.name" | "metadata.namespace" | "type") {
                return Err(bad_request(format!("field label not supported: {field}")));
            }
            fields.push(FieldReq {
                field: field.to_string(),
                value: value.trim().to_string(),
                equal,
            });
        }
        let mut labels = Vec::new();
        for term in param(params, "labelSelector").unwrap_or("").split(',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            if term.contains('(') || term.contains(' ') {
                return Err(bad_request(format!(
                    "unable to parse requirement: fake apiserver supports only k=v, k!=v, k, !k (got '{term}')"
                )));
            }
            let req = if let Some((k, v)) = term.split_once("!=") {
                LabelReq::Ne(k.into(), v.into())
            } else if let Some((k, v)) = term.split_once("==") {
                LabelReq::Eq(k.into(), v.into())
            } else if let Some((k, v)) = term.split_once('=') {
                LabelReq::Eq(k.into(), v.into())
            } else if let Some(k) = term.strip_prefix('!') {
                LabelReq::NotExists(k.into())
            } else {
                LabelReq::Exists(term.into())
            };
            labels.push(req);
        }
        Ok(Filter {
            namespace: namespace.map(str::to_string),
            fields,
            labels,
        })
    }

    fn has_selectors(&self) -> bool {
        !self.fields.is_empty() || !self.labels.is_empty()
    }

    fn matches(&self, obj: &Value) -> bool {
        let meta = &obj["metadata"];
        let ns = meta["namespace"].as_str().unwrap_or("");
        if self.namespace.as_deref().is_some_and(|want| want != ns) {
            return false;
        }
        let fields_ok = self.fields.iter().all(|r| {
            let actual = match r.field.as_str() {
                "metadata.name" => meta["name"].as_str().unwrap_or(""),
                "metadata.namespace" => ns,
                _ => obj["type"].as_str().unwrap_or("Opaque"),
            };
            (actual == r.value) == r.equal
        });
        let label = |k: &str| meta["labels"][k].as_str().map(str::to_string);
        let labels_ok = self.labels.iter().all(|r| match r {
            LabelReq::Eq(k, v) => label(k).as_deref() == Some(v.as_str()),
            LabelReq::Ne(k, v) => label(k).as_deref() != Some(v.as_str()),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::NotExists(k) => label(k).is_none(),
        });
        fields_ok && labels_ok
    }
}

fn list_or_watch(shared: &Arc<Shared>, ns: Option<&str>, params: &Params) -> Response {
    let filter = match Filter::parse(ns, params) {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    if param(params, "watch").is_some_and(is_true) {
        watch_secrets(shared, filter, params)
    } else {
        list_secrets(shared, filter, params)
    }
}

/// Parse `resourceVersion`: `None` for absent/empty, else the number.
fn parse_rv(params: &Params) -> Result<Option<u64>, Response> {
    match param(params, "resourceVersion").unwrap_or("") {
        "" => Ok(None),
        s => s
            .parse::<u64>()
            .map(Some)
            .map_err(|_| bad_request(format!("invalid resource version: \"{s}\""))),
    }
}

fn list_secrets(shared: &Arc<Shared>, filter: Filter, params: &Params) -> Response {
    let rv = match parse_rv(params) {
        Ok(rv) => rv,
        Err(resp) => return resp,
    };
    let rv_match = param(params, "resourceVersionMatch").unwrap_or("");
    let limit = match param(params, "limit").unwrap_or("") {
        "" => 0,
        s => match s.parse::<i64>() {
            Ok(n) => n.max(0) as usize,
            Err(_) => return bad_request(format!("invalid limit: \"{s}\"")),
        },
    };
    let cont = param(params, "continue").unwrap_or("");
    match rv_match {
        "" | "NotOlderThan" | "Exact" => {}
        other => {
            return invalid(format!(
                "resourceVersionMatch: Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\""
            ));
        }
    }
    if !rv_match.is_empty() && rv.is_none() {
        return invalid(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
                .into(),
        );
    }
    if rv_match == "Exact" && rv == Some(0) {
        return invalid("resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"".into());
    }
    if !cont.is_empty() && (rv.is_some() || !rv_match.is_empty()) {
        return bad_request(
            "specifying resource version is not allowed when using continue".into(),
        );
    }

    let st = shared.lock_state();
    let (list_rv, snapshot, start_after) = if !cont.is_empty() {
        let Some((token_rv, start)) = decode_continue(cont) else {
            return bad_request(
                "continue key is not valid: incorrect encoded start resourceVersion".into(),
            );
        };
        if token_rv < st.compacted_rv {
            return expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into());
        }
        if token_rv > st.rv {
            return bad_request(
                "continue key is not valid: resourceVersion is in the future".into(),
            );
        }
        (token_rv, st.secrets_at(token_rv), Some(start))
    } else {
        match rv {
            Some(x) if x > st.rv => return too_large_rv(x, st.rv),
            Some(x) if rv_match == "Exact" => {
                if x < st.compacted_rv {
                    return expired(format!(
                        "too old resource version: {x} ({})",
                        st.compacted_rv
                    ));
                }
                (x, st.secrets_at(x), None)
            }
            _ => (st.rv, st.secrets.clone(), None),
        }
    };
    drop(st);

    let mut items: Vec<(Key, Value)> = snapshot
        .into_iter()
        .filter(|(k, v)| filter.matches(v) && start_after.as_ref().is_none_or(|s| k > s))
        .collect();
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if limit > 0 && items.len() > limit {
        let remaining = items.len() - limit;
        items.truncate(limit);
        let last = items.last().map(|(k, _)| k.clone()).expect("limit > 0");
        metadata["continue"] = json!(encode_continue(list_rv, &last));
        if !filter.has_selectors() {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    let items: Vec<Value> = items
        .into_iter()
        .map(|(_, mut v)| {
            // Typed lists from the real server carry no kind/apiVersion on their items.
            if let Some(o) = v.as_object_mut() {
                o.remove("kind");
                o.remove("apiVersion");
            }
            v
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"kind": "SecretList", "apiVersion": "v1", "metadata": metadata, "items": items}),
    )
}

fn encode_continue(rv: u64, last: &Key) -> String {
    let token =
        json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{}/{}\u{0}", last.0, last.1)});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str) -> Option<(u64, Key)> {
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    let rv = v["rv"].as_u64()?;
    let start = v["start"].as_str()?.strip_suffix('\u{0}')?;
    let (ns, name) = start.split_once('/')?;
    Some((rv, (ns.to_string(), name.to_string())))
}

fn event_line(type_: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": type_, "object": object})).expect("serialize");
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark_line(rv: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
    if initial_events_end {
        metadata["annotations"] = json!({INITIAL_EVENTS_END: "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": "Secret", "apiVersion": "v1", "metadata": metadata}),
    )
}

fn watch_secrets(shared: &Arc<Shared>, filter: Filter, params: &Params) -> Response {
    let rv = match parse_rv(params) {
        Ok(rv) => rv,
        Err(resp) => return resp,
    };
    let rv_match = param(params, "resourceVersionMatch").unwrap_or("");
    let send_initial = param(params, "sendInitialEvents").map(is_true);
    let bookmarks = param(params, "allowWatchBookmarks").is_some_and(is_true);
    let timeout = match param(params, "timeoutSeconds").unwrap_or("") {
        "" | "0" => DEFAULT_WATCH_TIMEOUT,
        s => match s.parse::<u64>() {
            Ok(n) => Duration::from_secs(n),
            Err(_) => return bad_request(format!("invalid timeoutSeconds: \"{s}\"")),
        },
    };
    match send_initial {
        Some(_) if rv_match != "NotOlderThan" => {
            return invalid("resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan".into());
        }
        Some(true) if !bookmarks => {
            return invalid("allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true".into());
        }
        None if !rv_match.is_empty() => {
            return invalid("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided".into());
        }
        _ => {}
    }

    let mut queue = VecDeque::new();
    let mut close_after_queue = false;
    let st = shared.lock_state();
    let current = st.rv;
    let initial_events = match send_initial {
        Some(s) => s,
        // Legacy semantics: no resourceVersion (or "0") means "synthetic ADDED for the current
        // state, then watch".
        None => matches!(rv, None | Some(0)),
    };
    match rv {
        Some(x) if x > current => return too_large_rv(x, current),
        Some(x) if x != 0 && !initial_events && x < st.compacted_rv => {
            let status = status_value(
                410,
                "Expired",
                &format!("too old resource version: {x} ({})", st.compacted_rv),
                None,
            );
            queue.push_back(event_line("ERROR", &status));
            close_after_queue = true;
        }
        Some(x) if x != 0 && !initial_events => {
            for ev in st.history.iter().filter(|e| e.rv > x) {
                if filter.matches(&ev.object) {
                    queue.push_back(event_line(ev.type_, &ev.object));
                }
            }
        }
        _ if initial_events => {
            for obj in st.secrets.values().filter(|o| filter.matches(o)) {
                queue.push_back(event_line("ADDED", obj));
            }
            if send_initial == Some(true) {
                queue.push_back(bookmark_line(current, true));
            }
        }
        _ => {}
    }
    let bookmark_interval = if bookmarks {
        st.bookmark_interval
    } else {
        None
    };
    let live = shared.live.subscribe();
    let kill = shared.kill.subscribe();
    drop(st);

    shared.open_watches.fetch_add(1, Ordering::SeqCst);
    let now = Instant::now();
    let ws = WatchStream {
        shared: shared.clone(),
        filter,
        queue,
        close_after_queue,
        live,
        kill,
        deadline: now + timeout,
        bookmarks,
        bookmark_interval,
        next_bookmark: bookmark_interval.map(|i| now + i),
        last_rv: current,
        done: false,
    };
    let stream = futures::stream::unfold(ws, |mut ws| async move {
        let item = ws.next_chunk().await?;
        Some((item, ws))
    });
    with_json_headers(Response::new(Body::from_stream(stream)))
}

/// The body of one watch response. Counted in `open_watches` until hyper drops it.
struct WatchStream {
    shared: Arc<Shared>,
    filter: Filter,
    queue: VecDeque<Bytes>,
    close_after_queue: bool,
    live: broadcast::Receiver<Arc<SecretEvent>>,
    kill: watch::Receiver<u64>,
    deadline: Instant,
    bookmarks: bool,
    bookmark_interval: Option<Duration>,
    next_bookmark: Option<Instant>,
    /// Every Secret event up to this resourceVersion has been considered for this stream.
    last_rv: u64,
    done: bool,
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.shared.open_watches.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WatchStream {
    fn consider(&mut self, ev: &SecretEvent) {
        if ev.rv <= self.last_rv {
            return;
        }
        self.last_rv = ev.rv;
        if self.filter.matches(&ev.object) {
            self.queue.push_back(event_line(ev.type_, &ev.object));
        }
    }

    /// Queue every pending live event, then a BOOKMARK at the current resourceVersion (sound:
    /// writers publish while holding the state lock, which we hold too).
    fn queue_bookmark(&mut self) -> bool {
        let shared = self.shared.clone();
        let st = shared.lock_state();
        loop {
            match self.live.try_recv() {
                Ok(ev) => self.consider(&ev),
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(_) => return false,
            }
        }
        self.queue.push_back(bookmark_line(st.rv, false));
        true
    }

    async fn next_chunk(&mut self) -> Option<Result<Bytes, io::Error>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(chunk) = self.queue.pop_front() {
                return Some(Ok(chunk));
            }
            if self.close_after_queue {
                self.done = true;
                return None;
            }
            let far = Instant::now() + Duration::from_secs(86_400);
            let bookmark_at = self.next_bookmark.unwrap_or(far);
            tokio::select! {
                biased;
                _ = self.kill.changed() => {
                    self.done = true;
                    return Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "fake apiserver: connection dropped",
                    )));
                }
                _ = tokio::time::sleep_until(self.deadline) => {
                    // Like the real server: a last bookmark, then a clean end of the stream.
                    self.close_after_queue = true;
                    if self.bookmarks && !self.queue_bookmark() {
                        self.queue.clear();
                    }
                }
                _ = tokio::time::sleep_until(bookmark_at), if self.next_bookmark.is_some() => {
                    self.next_bookmark = self.bookmark_interval.map(|i| Instant::now() + i);
                    if !self.queue_bookmark() {
                        self.done = true;
                    }
                }
                ev = self.live.recv() => match ev {
                    Ok(ev) => self.consider(&ev),
                    // Too slow (or the server is gone): the real server closes such watches.
                    Err(_) => self.done = true,
                },
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Events and Nodes

fn parse_json_body(body: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| {
        bad_request(format!(
            "the body of the request could not be decoded as JSON: {e}"
        ))
    })
}

fn create_event(shared: &Arc<Shared>, group: &str, ns: &str, body: &[u8]) -> Response {
    let mut obj = match parse_json_body(body) {
        Ok(v) if v.is_object() => v,
        Ok(_) => return bad_request("the body of the request is not a JSON object".into()),
        Err(resp) => return resp,
    };
    let mut st = shared.lock_state();
    st.event_log.push(obj.clone());
    if obj["metadata"]["namespace"]
        .as_str()
        .is_some_and(|n| !n.is_empty() && n != ns)
    {
        return bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        );
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    let mut name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    if name.is_empty() {
        match obj["metadata"]["generateName"].as_str() {
            Some(prefix) if !prefix.is_empty() => {
                st.uid_counter += 1;
                name = format!("{prefix}{:05x}", st.uid_counter & 0xfffff);
            }
            _ => {
                return invalid(
                    "Event \"\" is invalid: metadata.name: Required value: name or generateName is required".into(),
                );
            }
        }
    }
    let key = (group.to_string(), ns.to_string(), name.clone());
    if st.events.contains_key(&key) {
        let resource = if group.is_empty() {
            "events".to_string()
        } else {
            format!("events.{group}")
        };
        return status_response(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
            Some(json!({"name": name, "kind": "events", "group": group})),
        );
    }
    let rv = st.next_rv();
    let uid = st.next_uid();
    let meta = &mut obj["metadata"];
    meta["name"] = json!(name);
    meta["namespace"] = json!(ns);
    meta["uid"] = json!(uid);
    meta["resourceVersion"] = json!(rv.to_string());
    meta["creationTimestamp"] = json!(now_rfc3339());
    obj["kind"] = json!("Event");
    obj["apiVersion"] = json!(if group.is_empty() {
        "v1"
    } else {
        "events.k8s.io/v1"
    });
    st.events.insert(key, obj.clone());
    json_response(StatusCode::CREATED, &obj)
}

#[allow(clippy::too_many_arguments)]
fn event_item(
    shared: &Arc<Shared>,
    group: &str,
    ns: &str,
    name: &str,
    get: bool,
    content_type: Option<&str>,
    params: &Params,
    body: &[u8],
) -> Response {
    let mut st = shared.lock_state();
    let key = (group.to_string(), ns.to_string(), name.to_string());
    if get {
        return match st.events.get(&key) {
            Some(obj) => json_response(StatusCode::OK, obj),
            None => not_found("events", name, group),
        };
    }
    st.event_log.push(
        serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into())),
    );
    let Some(current) = st.events.get(&key).cloned() else {
        return not_found("events", name, group);
    };
    let mut patched = current.clone();
    if let Err(resp) = apply_patch(&mut patched, content_type, params, body, "events", name) {
        return resp;
    }
    let rv = st.next_rv();
    keep_identity(&mut patched, &current, rv);
    st.events.insert(key, patched.clone());
    json_response(StatusCode::OK, &patched)
}

fn patch_node(
    shared: &Arc<Shared>,
    name: &str,
    content_type: Option<&str>,
    params: &Params,
    body: &[u8],
) -> Response {
    let mut st = shared.lock_state();
    let current = st.node_mut(name).clone();
    let mut patched = current.clone();
    let resp = match apply_patch(&mut patched, content_type, params, body, "nodes", name) {
        Err(resp) => resp,
        Ok(()) => {
            let rv = st.next_rv();
            keep_identity(&mut patched, &current, rv);
            *st.node_mut(name) = patched.clone();
            json_response(StatusCode::OK, &patched)
        }
    };
    st.node_patches.push(NodePatch {
        node: name.to_string(),
        content_type: content_type.unwrap_or("").to_string(),
        params: params.clone(),
        body: serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into())),
        status: resp.status().as_u16(),
    });
    resp
}

/// PATCH nodes/{name}/status (strategic merge): `status.conditions` merge by `type`, the
/// rest of `status` as a merge patch.
fn patch_node_status(shared: &Arc<Shared>, name: &str, body: &[u8]) -> Response {
    let patch: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("the patch does not parse: {e}")),
    };
    let mut st = shared.lock_state();
    let rv = st.next_rv();
    let node = st.node_mut(name);
    if !node["status"].is_object() {
        node["status"] = json!({});
    }
    if !node["status"]["conditions"].is_array() {
        node["status"]["conditions"] = json!([]);
    }
    for c in patch["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let list = node["status"]["conditions"].as_array_mut().expect("array");
        match list.iter_mut().find(|x| x["type"] == c["type"]) {
            Some(x) => merge_patch(x, c),
            None => list.push(c.clone()),
        }
    }
    node["metadata"]["resourceVersion"] = json!(rv.to_string());
    let out = node.clone();
    st.node_patches.push(NodePatch {
        node: name.to_string(),
        content_type: "status".into(),
        params: Params::default(),
        body: patch,
        status: 200,
    });
    json_response(StatusCode::OK, &out)
}

/// Restore what a patch may not change and stamp the new resourceVersion.
fn keep_identity(patched: &mut Value, current: &Value, rv: u64) {
    if !patched.is_object() {
        *patched = json!({});
    }
    for k in ["kind", "apiVersion"] {
        patched[k] = current[k].clone();
    }
    if !patched["metadata"].is_object() {
        patched["metadata"] = json!({});
    }
    for k in ["name", "namespace", "uid", "creationTimestamp"] {
        if !current["metadata"][k].is_null() {
            patched["metadata"][k] = current["metadata"][k].clone();
        }
    }
    patched["metadata"]["resourceVersion"] = json!(rv.to_string());
}

fn apply_patch(
    target: &mut Value,
    content_type: Option<&str>,
    params: &Params,
    body: &[u8],
    resource: &str,
    name: &str,
) -> Result<(), Response> {
    let media = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let patch = match media.as_str() {
        "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/json-patch+json"
        | "application/apply-patch+yaml" => parse_json_body(body).map_err(|resp| {
            if media == "application/apply-patch+yaml" {
                bad_request(
                    "the fake apiserver only understands JSON-formatted apply patches".into(),
                )
            } else {
                resp
            }
        })?,
        _ => {
            return Err(status_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {media:?})"
                ),
                None,
            ));
        }
    };
    if media == "application/apply-patch+yaml"
        && param(params, "fieldManager").is_none_or(str::is_empty)
    {
        return Err(invalid(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
        ));
    }
    if media != "application/json-patch+json" {
        if let Some(want) = patch["metadata"]["resourceVersion"].as_str()
            && Some(want) != target["metadata"]["resourceVersion"].as_str()
        {
            return Err(status_response(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                ),
                Some(json!({"name": name, "kind": resource})),
            ));
        }
        if !patch.is_object() {
            return Err(bad_request("the patch is not a JSON object".into()));
        }
        merge_patch(target, &patch);
        return Ok(());
    }
    json_patch(target, &patch).map_err(|e| {
        invalid(format!(
            "the server rejected our request due to an error in our request: {e}"
        ))
    })
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// RFC 6902 JSON patch (add, remove, replace, move, copy, test).
fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops.as_array().ok_or("a JSON patch must be an array")?;
    let mut doc = target.clone();
    for op in ops {
        let path = op["path"].as_str().ok_or("missing path")?;
        match op["op"].as_str().ok_or("missing op")? {
            "add" => pointer_add(
                &mut doc,
                path,
                op.get("value").cloned().ok_or("missing value")?,
            )?,
            "remove" => {
                pointer_remove(&mut doc, path)?;
            }
            "replace" => {
                let slot = doc
                    .pointer_mut(path)
                    .ok_or(format!("replace: no such path {path}"))?;
                *slot = op.get("value").cloned().ok_or("missing value")?;
            }
            "test" => {
                if doc.pointer(path) != op.get("value") {
                    return Err(format!("test failed at {path}"));
                }
            }
            "move" => {
                let from = op["from"].as_str().ok_or("missing from")?;
                let v = pointer_remove(&mut doc, from)?;
                pointer_add(&mut doc, path, v)?;
            }
            "copy" => {
                let from = op["from"].as_str().ok_or("missing from")?;
                let v = doc
                    .pointer(from)
                    .cloned()
                    .ok_or(format!("copy: no such path {from}"))?;
                pointer_add(&mut doc, path, v)?;
            }
            other => return Err(format!("unknown op {other:?}")),
        }
    }
    *target = doc;
    Ok(())
}

fn split_pointer(path: &str) -> Result<(&str, String), String> {
    let idx = path
        .rfind('/')
        .ok_or(format!("invalid JSON pointer {path:?}"))?;
    let last = path[idx + 1..].replace("~1", "/").replace("~0", "~");
    Ok((&path[..idx], last))
}

fn pointer_add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.insert(last, value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| format!("bad array index {last:?}"))?;
            if i > a.len() {
                return Err(format!("array index {i} out of bounds"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("add: no such parent for {path}")),
    }
}

fn pointer_remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => m
            .remove(&last)
            .ok_or(format!("remove: no such path {path}")),
        Some(Value::Array(a)) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("bad array index {last:?}"))?;
            if i >= a.len() {
                return Err(format!("array index {i} out of bounds"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("remove: no such path {path}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// Decode an `application/x-www-form-urlencoded` query string.
fn parse_query(q: &str) -> Params {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn form_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Now, as RFC 3339 UTC with second precision (the format of `metav1.Time`).
fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

// ---------------------------------------------------------------------------------------------
// Connections that can be cut

/// Accepts TCP connections, each wrapped so that `drop_connections` (or dropping the server)
/// aborts it.
struct KillableListener {
    inner: TcpListener,
    kill: watch::Sender<u64>,
}

impl axum::serve::Listener for KillableListener {
    type Io = KillableIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let mut kill = self.kill.subscribe();
                    let killed = Box::pin(async move {
                        let _ = kill.changed().await;
                    });
                    return (
                        KillableIo {
                            inner: stream,
                            killed,
                            dead: false,
                        },
                        addr,
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

struct KillableIo {
    inner: TcpStream,
    killed: Pin<Box<dyn Future<Output = ()> + Send>>,
    dead: bool,
}

impl KillableIo {
    fn is_dead(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.dead && self.killed.as_mut().poll(cx).is_ready() {
            self.dead = true;
        }
        self.dead
    }
}

fn dropped() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "fake apiserver: connection dropped",
    )
}

impl AsyncRead for KillableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_dead(cx) {
            return Poll::Ready(Err(dropped()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.is_dead(cx) {
            return Poll::Ready(Err(dropped()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_dead(cx) {
            return Poll::Ready(Err(dropped()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_dead(cx) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// coordination.k8s.io/v1 Leases: create (409 AlreadyExists), get (404), replace with the
/// stored resourceVersion (a stale or missing one gets 409 Conflict, as kube-apiserver answers
/// optimistic-concurrency races), delete.
mod leases {
    use super::*;

    fn key(ns: &str, name: &str) -> Key {
        (ns.to_string(), name.to_string())
    }

    fn holder(v: &Value) -> String {
        v["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn stamp(st: &mut State, ns: &str, name: &str, obj: &mut Value, uid: String, created: String) {
        let rv = st.next_rv();
        obj["kind"] = json!("Lease");
        obj["apiVersion"] = json!("coordination.k8s.io/v1");
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let m = &mut obj["metadata"];
        m["name"] = json!(name);
        m["namespace"] = json!(ns);
        m["uid"] = json!(uid);
        m["creationTimestamp"] = json!(created);
        m["resourceVersion"] = json!(rv.to_string());
        st.lease_log.push((ns.into(), name.into(), holder(obj), rv));
    }

    pub(super) fn create(st: &mut State, ns: &str, body: &[u8]) -> Response {
        let mut obj: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return bad_request(format!("the body does not parse: {e}")),
        };
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        if name.is_empty() {
            return invalid("Lease \"\" is invalid: metadata.name: Required value".into());
        }
        if st.leases.contains_key(&key(ns, &name)) {
            return status_response(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("leases.coordination.k8s.io \"{name}\" already exists"),
                Some(json!({"name": name, "group": "coordination.k8s.io", "kind": "leases"})),
            );
        }
        let uid = st.next_uid();
        stamp(st, ns, &name, &mut obj, uid, now_rfc3339());
        st.leases.insert(key(ns, &name), obj.clone());
        json_response(StatusCode::CREATED, &obj)
    }

    pub(super) fn get(st: &State, ns: &str, name: &str) -> Response {
        match st.leases.get(&key(ns, name)) {
            Some(l) => json_response(StatusCode::OK, l),
            None => not_found("leases", name, "coordination.k8s.io"),
        }
    }

    pub(super) fn replace(st: &mut State, ns: &str, name: &str, body: &[u8]) -> Response {
        let mut obj: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return bad_request(format!("the body does not parse: {e}")),
        };
        let Some(current) = st.leases.get(&key(ns, name)).cloned() else {
            return not_found("leases", name, "coordination.k8s.io");
        };
        if obj["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
            return status_response(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                ),
                Some(json!({"name": name, "group": "coordination.k8s.io", "kind": "leases"})),
            );
        }
        let uid = current["metadata"]["uid"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let created = current["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or("")
            .to_string();
        stamp(st, ns, name, &mut obj, uid, created);
        st.leases.insert(key(ns, name), obj.clone());
        json_response(StatusCode::OK, &obj)
    }

    pub(super) fn delete(st: &mut State, ns: &str, name: &str) -> Response {
        match st.leases.remove(&key(ns, name)) {
            Some(_) => json_response(StatusCode::OK, &status_value(200, "", "", None)),
            None => not_found("leases", name, "coordination.k8s.io"),
        }
    }
}
