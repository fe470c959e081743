//! Self-test of the FAKE API server in `tests/support_kube`: drives it with kube-rs itself
//! (`Client`, `Api`, `watcher`, `Recorder`) to check that it speaks the protocol the way the
//! kube-rs watcher expects (list+watch, resume, 410 relist, outage, streaming lists, Events,
//! Node patches). Every wait is bounded.

mod support_kube;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Secret};
use kube::api::{
    Api, ListParams, Patch, PatchParams, PostParams, VersionMatch, WatchEvent, WatchParams,
};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use support_kube::FakeApiServer;
use tokio::time::timeout;

const NS: &str = "jet-system";
const NAME: &str = "registry-info";
/// Bound for one expected watcher step.
const STEP: Duration = Duration::from_secs(5);
/// Bound for a step that includes the watcher's backoff or kube's 503 retries.
const RECOVERY: Duration = Duration::from_secs(15);

/// A kube-rs watcher driven by a background task (as the agent runs it), its events
/// described as strings. The task is aborted on drop.
struct Events {
    rx: tokio::sync::mpsc::UnboundedReceiver<Result<String, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Events {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn data(mirror: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("mirror".to_string(), mirror.to_string())])
}

fn mirror_of(s: &Secret) -> String {
    let v = s
        .data
        .as_ref()
        .and_then(|d| d.get("mirror"))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned());
    format!(
        "{}={}",
        s.metadata.name.as_deref().unwrap_or("?"),
        v.unwrap_or_default()
    )
}

fn describe(ev: &Event<Secret>) -> String {
    match ev {
        Event::Init => "Init".into(),
        Event::InitApply(s) => format!("InitApply({})", mirror_of(s)),
        Event::InitDone => "InitDone".into(),
        Event::Apply(s) => format!("Apply({})", mirror_of(s)),
        Event::Delete(s) => format!("Delete({})", mirror_of(s)),
    }
}

fn secret_watcher(server: &FakeApiServer, cfg: watcher::Config) -> Events {
    let api: Api<Secret> = Api::namespaced(server.plain_http_client(), NS);
    let mut stream = watcher::watcher(api, cfg.fields(&format!("metadata.name={NAME}")))
        .default_backoff()
        .boxed();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            let item = item.as_ref().map(describe).map_err(|e| format!("{e:?}"));
            if tx.send(item).is_err() {
                return;
            }
        }
    });
    Events { rx, task }
}

/// The next successful watcher event (errors are collected into `errors`), within `within`.
async fn next_event(stream: &mut Events, errors: &mut Vec<String>, within: Duration) -> String {
    let got = timeout(within, async {
        loop {
            match stream.rx.recv().await {
                Some(Ok(ev)) => return ev,
                Some(Err(e)) => errors.push(e),
                None => panic!("watcher stream ended"),
            }
        }
    })
    .await;
    got.unwrap_or_else(|_| panic!("no watcher event within {within:?} (errors so far: {errors:?})"))
}

async fn expect_events(
    stream: &mut Events,
    errors: &mut Vec<String>,
    within: Duration,
    want: &[&str],
) {
    for w in want {
        let got = next_event(stream, errors, within).await;
        assert_eq!(got, *w, "watcher event (errors so far: {errors:?})");
    }
}

/// A watcher (see [`secret_watcher`]) past its initial list, which holds the selected Secret
/// with mirror `mirror`; and the errors it has seen so far.
async fn watching(
    server: &FakeApiServer,
    cfg: watcher::Config,
    mirror: &str,
) -> (Events, Vec<String>) {
    let mut errors = Vec::new();
    let mut w = secret_watcher(server, cfg);
    let init_apply = format!("InitApply({NAME}={mirror})");
    expect_events(
        &mut w,
        &mut errors,
        STEP,
        &["Init", &init_apply, "InitDone"],
    )
    .await;
    (w, errors)
}

/// How many Secret list requests the server has seen.
fn secret_lists(server: &FakeApiServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.is_secret_list())
        .count()
}

/// Waits (within [`STEP`]) until some request got a 503.
async fn wait_for_a_503(server: &FakeApiServer) {
    wait_until("a request got 503", STEP, || {
        server.requests().iter().any(|r| r.status == 503)
    })
    .await;
}

/// Every test as a whole is bounded too.
async fn bounded(test: impl std::future::Future<Output = ()>) {
    timeout(Duration::from_secs(90), test)
        .await
        .expect("test took more than 90 s");
}

async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_lifecycle_reconnect_relist_and_outage() {
    bounded(watcher_lifecycle_reconnect_relist_and_outage_body()).await;
}

async fn watcher_lifecycle_reconnect_relist_and_outage_body() {
    let t0 = Instant::now();
    let server = FakeApiServer::start().await;
    server.create_secret(NS, "unrelated", data("nope-0"));
    server.create_secret("other-ns", NAME, data("other-ns-0"));
    server.create_secret(NS, NAME, data("v1"));

    // Initial list (only the selected Secret), then the watch.
    let (mut w, mut errors) = watching(&server, watcher::Config::default(), "v1").await;
    assert!(
        server.wait_for_open_watches(1, STEP).await,
        "the watcher never opened a watch"
    );
    let list = server
        .requests()
        .into_iter()
        .find(|r| r.is_secret_list())
        .expect("a list request");
    assert_eq!(list.path, format!("/api/v1/namespaces/{NS}/secrets"));
    assert_eq!(
        list.param("fieldSelector"),
        Some("metadata.name=registry-info")
    );
    let watch = server
        .requests()
        .into_iter()
        .find(|r| r.is_watch())
        .expect("a watch request");
    assert_eq!(watch.param("allowWatchBookmarks"), Some("true"));
    assert!(
        watch
            .param("resourceVersion")
            .is_some_and(|rv| !rv.is_empty())
    );

    // Live changes; the unrelated Secrets never show up.
    server.update_secret(NS, "unrelated", data("nope-1"));
    server.update_secret(NS, NAME, data("v2"));
    expect_events(&mut w, &mut errors, STEP, &["Apply(registry-info=v2)"]).await;
    server.delete_secret(NS, NAME);
    expect_events(&mut w, &mut errors, STEP, &["Delete(registry-info=v2)"]).await;
    server.update_secret("other-ns", NAME, data("other-ns-1"));
    server.create_secret(NS, NAME, data("v3"));
    expect_events(&mut w, &mut errors, STEP, &["Apply(registry-info=v3)"]).await;
    let rv_v4 = server.update_secret(NS, NAME, data("v4"));
    expect_events(&mut w, &mut errors, STEP, &["Apply(registry-info=v4)"]).await;

    // A dropped connection: the watcher resumes from its last resourceVersion (no relist).
    let lists_before = secret_lists(&server);
    server.drop_connections();
    // A change while disconnected is replayed from history on resume.
    server.update_secret(NS, NAME, data("v5"));
    expect_events(&mut w, &mut errors, RECOVERY, &["Apply(registry-info=v5)"]).await;
    assert!(server.wait_for_open_watches(1, STEP).await);
    let reqs = server.requests();
    assert_eq!(
        reqs.iter().filter(|r| r.is_secret_list()).count(),
        lists_before,
        "a dropped connection must resume the watch, not relist"
    );
    assert!(
        reqs.iter()
            .any(|r| r.is_watch() && r.param("resourceVersion") == Some(rv_v4.as_str())),
        "resumed from the last seen resourceVersion {rv_v4}: {reqs:#?}"
    );
    server.update_secret(NS, NAME, data("v6"));
    expect_events(&mut w, &mut errors, STEP, &["Apply(registry-info=v6)"]).await;

    // Compaction + drop: the resumed watch gets a 410 ERROR event, the watcher relists.
    let errors_before = errors.len();
    let compacted = server.compact_history();
    server.drop_connections();
    expect_events(
        &mut w,
        &mut errors,
        RECOVERY,
        &["Init", "InitApply(registry-info=v6)", "InitDone"],
    )
    .await;
    assert!(
        errors[errors_before..]
            .iter()
            .any(|e| e.contains("410") && e.contains("too old resource version")),
        "expected a 410 Expired watch error, got {errors:?}"
    );
    let reqs = server.requests();
    let relist = reqs
        .iter()
        .rev()
        .find(|r| r.is_secret_list())
        .expect("relist");
    assert_eq!(relist.status, 200);
    assert!(server.wait_for_open_watches(1, STEP).await);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.is_watch() && r.param("resourceVersion") == Some(compacted.as_str())),
        "after the relist the watch starts at the list's resourceVersion {compacted}"
    );
    server.update_secret(NS, NAME, data("v7"));
    expect_events(&mut w, &mut errors, STEP, &["Apply(registry-info=v7)"]).await;

    // An outage: every request gets 503 (kube's client retries them), then recovery. A change
    // made during the outage arrives afterwards, without a relist.
    let lists_before = secret_lists(&server);
    server.set_unavailable(true);
    server.drop_connections();
    wait_for_a_503(&server).await;
    server.update_secret(NS, NAME, data("v8"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        server.open_watches(),
        0,
        "no watch can be open during the outage"
    );
    let outage_503s = server.requests().iter().filter(|r| r.status == 503).count();
    server.set_unavailable(false);
    let recovery_started = Instant::now();
    expect_events(&mut w, &mut errors, RECOVERY, &["Apply(registry-info=v8)"]).await;
    let recovery = recovery_started.elapsed();
    assert_eq!(
        secret_lists(&server),
        lists_before,
        "an outage shorter than kube's retries resumes the watch"
    );
    server.update_secret(NS, NAME, data("v9"));
    expect_events(&mut w, &mut errors, STEP, &["Apply(registry-info=v9)"]).await;
    eprintln!(
        "lifecycle test: {outage_503s} requests answered 503 during the outage, recovered in {recovery:?}, total {:?}, watcher errors seen: {}",
        t0.elapsed(),
        errors.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_relists_after_410_and_sees_deletion_in_relist() {
    bounded(watcher_relists_after_410_and_sees_deletion_in_relist_body()).await;
}

async fn watcher_relists_after_410_and_sees_deletion_in_relist_body() {
    let server = FakeApiServer::start().await;
    server.create_secret(NS, NAME, data("a"));
    let (mut w, mut errors) = watching(&server, watcher::Config::default(), "a").await;
    assert!(server.wait_for_open_watches(1, STEP).await);
    // Cut the watch and keep the server unavailable while the Secret is deleted and the
    // history compacted: the resumed watch gets 410, and the relist shows no Secret.
    server.set_unavailable(true);
    server.drop_connections();
    server.delete_secret(NS, NAME);
    server.compact_history();
    wait_for_a_503(&server).await;
    server.set_unavailable(false);
    expect_events(&mut w, &mut errors, RECOVERY, &["Init", "InitDone"]).await;
    assert!(errors.iter().any(|e| e.contains("410")), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_watcher_gets_initial_events_end_bookmark() {
    bounded(streaming_list_watcher_gets_initial_events_end_bookmark_body()).await;
}

async fn streaming_list_watcher_gets_initial_events_end_bookmark_body() {
    let server = FakeApiServer::start().await;
    server.create_secret(NS, NAME, data("s1"));
    let (mut w, mut errors) =
        watching(&server, watcher::Config::default().streaming_lists(), "s1").await;
    server.update_secret(NS, NAME, data("s2"));
    expect_events(&mut w, &mut errors, STEP, &["Apply(registry-info=s2)"]).await;
    let reqs = server.requests();
    assert!(
        !reqs.iter().any(|r| r.is_secret_list()),
        "streaming lists never list: {reqs:#?}"
    );
    let first = reqs.iter().find(|r| r.is_watch()).expect("watch");
    assert_eq!(first.param("sendInitialEvents"), Some("true"));
    assert_eq!(first.param("resourceVersionMatch"), Some("NotOlderThan"));
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_protocol_list_get_watch() {
    bounded(raw_protocol_list_get_watch_body()).await;
}

async fn raw_protocol_list_get_watch_body() {
    let server = FakeApiServer::start().await;
    let client = server.plain_http_client();
    let api: Api<Secret> = Api::namespaced(client.clone(), NS);

    // GET of a missing object: a 404 Status.
    match api.get(NAME).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 404);
            assert_eq!(s.reason, "NotFound");
            assert_eq!(s.message, "secrets \"registry-info\" not found");
        }
        other => panic!("expected 404, got {other:?}"),
    }
    let rv1 = server.create_secret(NS, NAME, data("x1"));
    for n in ["a", "b", "c"] {
        server.create_secret(NS, n, data(n));
    }
    let got = api.get(NAME).await.expect("get");
    assert_eq!(mirror_of(&got), "registry-info=x1");
    assert_eq!(got.metadata.resource_version.as_deref(), Some(rv1.as_str()));
    assert!(got.metadata.uid.is_some() && got.metadata.creation_timestamp.is_some());

    // List with a field selector; list resourceVersion is the current one.
    let list = api
        .list(&ListParams::default().fields(&format!("metadata.name={NAME}")))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 1);
    assert_eq!(
        list.metadata.resource_version,
        Some(server.resource_version())
    );
    let list = api
        .list(&ListParams::default().fields("metadata.name!=registry-info"))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 3);
    match api
        .list(&ListParams::default().fields("spec.foo=bar"))
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(
            (s.code, s.message.as_str()),
            (400, "field label not supported: spec.foo")
        ),
        other => panic!("expected 400, got {other:?}"),
    }

    // ListSemantic::Any (resourceVersion=0, NotOlderThan) is accepted too.
    let any = api
        .list(
            &ListParams::default()
                .match_any()
                .fields(&format!("metadata.name={NAME}")),
        )
        .await
        .expect("list any");
    assert_eq!(any.items.len(), 1);

    // Paging over a consistent snapshot.
    let page1 = api
        .list(&ListParams::default().limit(3))
        .await
        .expect("page 1");
    assert_eq!(page1.items.len(), 3);
    let token = page1.metadata.continue_.clone().expect("continue token");
    assert_eq!(page1.metadata.remaining_item_count, Some(1));
    server.create_secret(NS, "zz-after-page-1", data("late"));
    let page2 = api
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .expect("page 2");
    let names: Vec<_> = page2
        .items
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![NAME.to_string()],
        "page 2 is from page 1's snapshot"
    );
    assert_eq!(page2.metadata.continue_, None);

    // Exact list at an older resourceVersion reconstructs that state.
    let rv2 = server.update_secret(NS, NAME, data("x2"));
    let exact = api
        .list(
            &ListParams::default()
                .fields(&format!("metadata.name={NAME}"))
                .at(&rv1)
                .matching(VersionMatch::Exact),
        )
        .await
        .expect("exact list");
    assert_eq!(mirror_of(&exact.items[0]), "registry-info=x1");
    assert_eq!(
        exact.metadata.resource_version.as_deref(),
        Some(rv1.as_str())
    );

    // Watch from rv1 replays rv2 (MODIFIED), then live events, then bookmarks.
    let wp = WatchParams::default()
        .fields(&format!("metadata.name={NAME}"))
        .timeout(2);
    let mut stream = api.watch(&wp, &rv1).await.expect("watch").boxed();
    match timeout(STEP, stream.next()).await.expect("replayed event") {
        Some(Ok(WatchEvent::Modified(s))) => {
            assert_eq!(mirror_of(&s), "registry-info=x2");
            assert_eq!(s.metadata.resource_version.as_deref(), Some(rv2.as_str()));
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    let rv3 = server.delete_secret(NS, NAME);
    match timeout(STEP, stream.next()).await.expect("live event") {
        Some(Ok(WatchEvent::Deleted(s))) => {
            assert_eq!(s.metadata.resource_version.as_deref(), Some(rv3.as_str()))
        }
        other => panic!("expected DELETED, got {other:?}"),
    }
    // timeoutSeconds=2: a final BOOKMARK at the current resourceVersion, then a clean end.
    let started = Instant::now();
    match timeout(STEP, stream.next())
        .await
        .expect("bookmark before timeout")
    {
        Some(Ok(WatchEvent::Bookmark(b))) => {
            assert_eq!(b.metadata.resource_version, server.resource_version());
            assert_eq!(b.types.kind, "Secret");
        }
        other => panic!("expected BOOKMARK, got {other:?}"),
    }
    assert!(
        timeout(STEP, stream.next())
            .await
            .expect("end of stream")
            .is_none()
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed after timeoutSeconds"
    );

    // Periodic bookmarks when enabled.
    server.set_bookmark_interval(Some(Duration::from_millis(200)));
    let now_rv = server.resource_version();
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &now_rv)
        .await
        .expect("watch")
        .boxed();
    match timeout(STEP, stream.next())
        .await
        .expect("periodic bookmark")
    {
        Some(Ok(WatchEvent::Bookmark(b))) => assert_eq!(b.metadata.resource_version, now_rv),
        other => panic!("expected BOOKMARK, got {other:?}"),
    }
    drop(stream);
    server.set_bookmark_interval(None);

    // Watch without resourceVersion ("0"): synthetic ADDED for the current state first.
    let mut stream = api
        .watch(
            &WatchParams::default().fields("metadata.name=a").timeout(10),
            "0",
        )
        .await
        .expect("watch")
        .boxed();
    match timeout(STEP, stream.next()).await.expect("synthetic ADDED") {
        Some(Ok(WatchEvent::Added(s))) => assert_eq!(mirror_of(&s), "a=a"),
        other => panic!("expected ADDED, got {other:?}"),
    }
    drop(stream);

    // Too old after compaction: HTTP 200 then one ERROR event with a 410 Status, then the end.
    let compacted = server.compact_history();
    let mut stream = api
        .watch(&WatchParams::default(), &rv1)
        .await
        .expect("watch is accepted")
        .boxed();
    match timeout(STEP, stream.next()).await.expect("error event") {
        Some(Ok(WatchEvent::Error(s))) => {
            assert_eq!((s.code, s.reason.as_str()), (410, "Expired"));
            assert_eq!(
                s.message,
                format!("too old resource version: {rv1} ({compacted})")
            );
        }
        other => panic!("expected ERROR 410, got {other:?}"),
    }
    assert!(timeout(STEP, stream.next()).await.expect("end").is_none());
    match api
        .list(&ListParams::default().at(&rv1).matching(VersionMatch::Exact))
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410 on an Exact list, got {other:?}"),
    }
    // A resourceVersion from the future: 504 "Too large resource version" with Retry-After
    // (kube's client retries 504 itself, so only look at what the server answered).
    let _ = timeout(
        Duration::from_millis(300),
        api.list(
            &ListParams::default()
                .at("999999")
                .matching(VersionMatch::NotOlderThan),
        ),
    )
    .await;
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.param("resourceVersion") == Some("999999") && r.status == 504)
    );

    // Outage: 503 Status for everything. kube's client retries 503 with backoff, so a request
    // made during the outage succeeds once it is over.
    server.set_unavailable(true);
    let api2 = api.clone();
    let pending = tokio::spawn(async move { api2.get("a").await });
    wait_for_a_503(&server).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pending.is_finished(), "still retrying during the outage");
    server.set_unavailable(false);
    let got = timeout(RECOVERY, pending)
        .await
        .expect("the retried request completes after the outage")
        .expect("join")
        .expect("get after the outage");
    assert_eq!(mirror_of(&got), "a=a");

    // Unknown paths: 404 Status; the version endpoint.
    let info = client.apiserver_version().await.expect("version");
    assert_eq!(info.minor, "33");
    let req = axum::http::Request::get("/apis/example.com/v1/widgets")
        .body(Vec::new())
        .unwrap();
    match client.request::<serde_json::Value>(req).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 404),
        other => panic!("expected 404, got {other:?}"),
    }
    let reqs = server.requests();
    assert!(
        reqs.iter()
            .all(|r| !r.method.is_empty() && r.path.starts_with('/'))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_node_patches_are_recorded() {
    bounded(events_and_node_patches_are_recorded_body()).await;
}

async fn events_and_node_patches_are_recorded_body() {
    let server = FakeApiServer::start().await;
    let client = server.plain_http_client();

    // What the agent does: kube's Recorder on a Node reference (events.k8s.io/v1, namespace
    // "default"); the second identical publish is a PATCH with a series.
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "regmirror".into(),
            instance: Some("node-1".into()),
        },
    );
    let node_ref = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some("node-1".into()),
        uid: Some("node-1".into()),
        ..Default::default()
    };
    let ev = KubeEvent {
        type_: EventType::Warning,
        reason: "MirrorRejected".into(),
        note: Some("bad mirror".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    timeout(STEP, recorder.publish(&ev, &node_ref))
        .await
        .expect("bounded")
        .expect("publish 1");
    timeout(STEP, recorder.publish(&ev, &node_ref))
        .await
        .expect("bounded")
        .expect("publish 2");
    let events = server.events();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0]["reason"], "MirrorRejected");
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(events[0]["regarding"]["name"], "node-1");
    assert_eq!(events[1]["series"]["count"], 2);
    let reqs = server.requests();
    assert!(reqs.iter().any(|r| r.method == "POST"
        && r.path == "/apis/events.k8s.io/v1/namespaces/default/events"
        && r.status == 201));
    assert!(reqs.iter().any(|r| {
        r.method == "PATCH"
            && r.path
                .starts_with("/apis/events.k8s.io/v1/namespaces/default/events/")
            && r.content_type.as_deref() == Some("application/merge-patch+json")
            && r.status == 200
    }));
    let stored = server.event_objects();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["series"]["count"], 2);

    // A core/v1 Event through Api::create.
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), NS);
    let created = core
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"generateName": "regmirror-"},
                "involvedObject": {"kind": "Node", "name": "node-1"},
                "reason": "Applied",
                "message": "ok",
                "type": "Normal",
            }))
            .unwrap(),
        )
        .await
        .expect("create core event");
    assert!(
        created
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("regmirror-"))
    );
    assert_eq!(created.metadata.namespace.as_deref(), Some(NS));
    assert_eq!(server.events().len(), 3);
    assert_eq!(server.events()[2]["reason"], "Applied");

    // Node annotation through a merge patch (what the agent does), then removal with null.
    let nodes: Api<Node> = Api::all(client.clone());
    let patched = nodes
        .patch(
            "node-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"regmirror.io/spec-hash": "abc"}}})),
        )
        .await
        .expect("patch node");
    assert_eq!(
        patched
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("regmirror.io/spec-hash"))
            .map(String::as_str),
        Some("abc")
    );
    let got = nodes.get("node-1").await.expect("get node");
    assert_eq!(
        got.metadata.resource_version,
        patched.metadata.resource_version
    );
    nodes
        .patch(
            "node-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"regmirror.io/spec-hash": null}}})),
        )
        .await
        .expect("patch node");
    let node = server.node("node-1").expect("node stored");
    assert!(
        node["metadata"]["annotations"]
            .get("regmirror.io/spec-hash")
            .is_none(),
        "{node}"
    );

    // Server-side apply needs a field manager; JSON patch works; unknown media types get 415.
    nodes
        .patch(
            "node-1",
            &PatchParams::apply("regmirror"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1", "labels": {"x": "y"}}})),
        )
        .await
        .expect("apply patch");
    let req = axum::http::Request::patch("/api/v1/nodes/node-1")
        .header("content-type", "application/json-patch+json")
        .body(
            serde_json::to_vec(&json!([{"op": "add", "path": "/metadata/labels/z", "value": "w"}]))
                .unwrap(),
        )
        .unwrap();
    let _: Node = client.request(req).await.expect("json patch");
    let req = axum::http::Request::patch("/api/v1/nodes/node-1")
        .header("content-type", "text/plain")
        .body(b"hello".to_vec())
        .unwrap();
    match client.request::<Node>(req).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (415, "UnsupportedMediaType"))
        }
        other => panic!("expected 415, got {other:?}"),
    }
    let node = server.node("node-1").unwrap();
    assert_eq!(node["metadata"]["labels"]["x"], "y");
    assert_eq!(node["metadata"]["labels"]["z"], "w");
    let patches = server.node_patches();
    let types: Vec<_> = patches.iter().map(|p| p.content_type.as_str()).collect();
    assert_eq!(
        types,
        vec![
            "application/merge-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
            "application/json-patch+json",
            "text/plain",
        ]
    );
    assert_eq!(
        patches[0].body["metadata"]["annotations"]["regmirror.io/spec-hash"],
        "abc"
    );
    assert_eq!(patches[0].node, "node-1");
    let statuses: Vec<_> = patches.iter().map(|p| p.status).collect();
    assert_eq!(statuses, vec![200, 200, 200, 200, 415]);
    assert_eq!(
        patches[2]
            .params
            .iter()
            .find(|(k, _)| k == "fieldManager")
            .map(|(_, v)| v.as_str()),
        Some("regmirror")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_server_closes_everything() {
    bounded(dropping_the_server_closes_everything_body()).await;
}

async fn dropping_the_server_closes_everything_body() {
    let server = FakeApiServer::start().await;
    let api: Api<Secret> = Api::namespaced(server.plain_http_client(), NS);
    let mut stream = api
        .watch(
            &WatchParams::default().timeout(60),
            &server.resource_version(),
        )
        .await
        .expect("watch")
        .boxed();
    assert!(server.wait_for_open_watches(1, STEP).await);
    let addr = server.addr();
    drop(server);
    // The open watch ends (the connection is cut) ...
    let end = timeout(STEP, async {
        loop {
            match stream.next().await {
                None => return,
                Some(Err(_)) => continue,
                Some(Ok(ev)) => panic!("unexpected event {ev:?}"),
            }
        }
    })
    .await;
    assert!(
        end.is_ok(),
        "the watch stream did not end after the server was dropped"
    );
    // ... and nothing listens any more.
    wait_until("the port is closed", STEP, || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
}

/// `FakeApiServer::client()` builds the client the way the agent does (`Client::try_from`
/// a `Config`). With kube's `rustls-tls` feature but neither `ring` nor `aws-lc-rs`, rustls has
/// no `CryptoProvider` and that panics, even for an `http://` URL: this test catches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_client_construction_works() {
    bounded(production_client_construction_works_body()).await;
}

async fn production_client_construction_works_body() {
    let server = FakeApiServer::start().await;
    let client = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.client()))
        .unwrap_or_else(|_| {
            panic!(
                "kube::Client::try_from(Config) panicked (see the rustls CryptoProvider message \
                 above): kube needs its `ring` (or `aws-lc-rs`) feature in Cargo.toml"
            )
        });
    server.create_secret(NS, NAME, data("p"));
    let api: Api<Secret> = Api::namespaced(client, NS);
    let got = timeout(STEP, api.get(NAME))
        .await
        .expect("bounded")
        .expect("get");
    assert_eq!(mirror_of(&got), "registry-info=p");
}
