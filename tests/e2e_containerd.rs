//! End-to-end: regmirror's output against a REAL containerd (Debian 12's 1.6.20) and a REAL
//! docker-registry (distribution 2.8), both started by hand on 127.0.0.1 in temp dirs.
//!
//! Every case proves a pull by two independent facts: the CRI `PullImage` succeeds, and the
//! mirror's access log shows the mirror path (`/v2/airgap-images/docker.io/library/tiny/
//! manifests/1`) answered 200. There is no internet here, so a pull that fell back to the
//! upstream registry fails anyway, but the log is asserted too.
//!
//! Needs root and `containerd docker-registry skopeo umoci apache2-utils openssl`; without them
//! each test prints `skipped: …` (or panics when `REGMIRROR_E2E=1`, as in CI).
//! Each test has its own ports and temp dirs, so they may run in parallel (~8 s here); serially
//! (~14 s on 2 cores): `REGMIRROR_E2E=1 cargo test --test e2e_containerd -- --test-threads=1`.
//! `REGMIRROR_E2E_KEEP=1` keeps the temp dirs (configs, hosts.toml, logs) for a post-mortem.
//! The starting config.toml alternates between Debian's packaged one and
//! `containerd config default`.

/// Also brings `e2e!(name)`: skip the test unless `support::prerequisites`, then time it.
mod support;

use std::time::Instant;

use support::cli::{self, Mode, Secret};
use support::containerd::{self, Base, Containerd};
use support::registry::{Kind, Registry};

const DOCKER_REPO: &str = "airgap-images/docker.io/library/tiny";
const QUAY_REPO: &str = "airgap-images/quay.io/e2e/tiny";
/// What containerd must request from the mirror for `docker.io/library/tiny:1`.
const DOCKER_PATH: &str = "/v2/airgap-images/docker.io/library/tiny/manifests/1";
/// … and for `quay.io/e2e/tiny:1`.
const QUAY_PATH: &str = "/v2/airgap-images/quay.io/e2e/tiny/manifests/1";
/// What the seed doc's endpoint form (no `/v2`) makes containerd request instead.
const SEED_DOC_PATH: &str = "/airgap-images/docker.io/library/tiny/manifests/1";

/// A registry of `kind` holding the tiny image as `docker.io/library/tiny:1` and
/// `quay.io/e2e/tiny:1` under `airgap-images/`.
fn mirror(kind: Kind) -> Registry {
    let r = Registry::start(kind);
    r.push_tiny(DOCKER_REPO);
    r.push_tiny(QUAY_REPO);
    r
}

/// `docker.io::<scheme><host>/airgap-images/docker.io,quay.io::<scheme><host>/airgap-images/quay.io`.
fn docker_and_quay(reg: &Registry, scheme: &str) -> String {
    let h = reg.host();
    format!(
        "docker.io::{scheme}{h}/airgap-images/docker.io,quay.io::{scheme}{h}/airgap-images/quay.io"
    )
}

/// A started node from `base` on which `regmirror apply` ran with `secret` in `mode`, and
/// containerd was restarted because apply said so.
fn applied_node(base: Base, mode: Mode, secret: &Secret) -> Containerd {
    let mut node = Containerd::prepare(base);
    node.start();
    let file = secret.write(&node, "secret");
    let (restart, run) = cli::apply(&node, &file, mode);
    assert!(
        restart,
        "first apply on a node without mirrors must need a restart: {run}\n{}",
        cli::written_files(&node)
    );
    node.restart();
    node
}

/// Pulls `image` over CRI and asserts it succeeded and that `reg` answered `path` with 200.
fn assert_pull_via(node: &Containerd, reg: &Registry, image: &str, path: &str) {
    let mark = reg.mark();
    let result = node.pull(image);
    let hits = reg.hits(mark, path);
    let served = hits.iter().any(|r| r.status == 200);
    if result.is_err() || !served {
        panic!(
            "pull of {image} through mirror {} failed\n  CRI: {result:?}\n  expected {path} \
             answered 200; access log since the pull started:\n{}\n  containerd log \
             (pull-related):\n{}\n  registry errors:\n{}\n{}",
            reg.host(),
            reg.log_since(mark),
            node.pull_log(),
            reg.error_log(5),
            cli::written_files(node),
        );
    }
}

/// Pulls `image` and asserts it failed.
fn assert_pull_fails(node: &Containerd, image: &str) -> String {
    match node.pull(image) {
        Ok(id) => panic!(
            "pull of {image} should have failed but returned {id}\n{}",
            cli::written_files(node)
        ),
        Err(e) => e,
    }
}

/// Harness check without regmirror: the working legacy form written by hand pulls.
#[test]
fn case0_harness_hand_written_v2_endpoint_pulls() {
    e2e!("case0_harness_hand_written_v2_endpoint_pulls");
    let reg = mirror(Kind::Plain);
    let mut node = Containerd::prepare(Base::Debian);
    node.write_config(&containerd::with_legacy_mirror(
        &node.original,
        "docker.io",
        &format!("http://{}/v2/airgap-images/docker.io", reg.host()),
    ));
    node.start();
    eprintln!("containerd CRI version {}", node.version());
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "tiny:1", DOCKER_PATH);
    let st = node.status();
    assert!(st.runtime_ready, "{st:?}");
    let endpoints = &node.effective_registry()["mirrors"]["docker.io"]["endpoint"];
    assert_eq!(
        endpoints,
        &serde_json::json!([format!("http://{}/v2/airgap-images/docker.io", reg.host())])
    );
}

/// The crate's CRI client against the real thing: healthy Status, and a containerd whose CRI
/// plugin failed to load (`config_path` together with legacy `mirrors`) is UNIMPLEMENTED, an
/// error at once rather than healthy or a timeout.
#[test]
fn cri_client_status_and_unimplemented() {
    e2e!("cri_client_status_and_unimplemented");
    let mut node = Containerd::prepare(Base::Default);
    node.start();
    let st = node.status();
    assert!(st.runtime_ready, "{st:?}");
    assert!(
        !st.network_ready,
        "no CNI here, NetworkReady must be false: {st:?}"
    );
    assert!(node.effective_registry().is_object());
    node.stop();

    let mut doc: toml_edit::DocumentMut =
        containerd::with_legacy_mirror(&node.original, "docker.io", "http://127.0.0.1:1/v2/x")
            .parse()
            .unwrap();
    containerd::cri_registry(&mut doc)["config_path"] =
        toml_edit::value(node.certs_dir.to_str().unwrap());
    node.write_config(&doc.to_string());
    let started = Instant::now();
    let err = node
        .try_start()
        .expect_err("a containerd without CRI plugin must not be healthy");
    assert!(err.is_unimplemented(), "{err}");
    assert!(
        started.elapsed() < containerd::START_TIMEOUT / 2,
        "UNIMPLEMENTED should end the wait early, took {:?}",
        started.elapsed()
    );
    let msg = err.to_string();
    assert!(msg.contains(node.socket.to_str().unwrap()), "{msg}");
    assert!(
        node.log_grep(&["cannot be set when `config_path` is provided"], 1)
            .contains("mirrors"),
        "containerd log does not say why the CRI plugin failed:\n{}",
        node.log_grep(&["cri"], 10)
    );
}

/// Case 1: legacy mode, docker.io and quay.io mirrors; full name and short name.
#[test]
fn case1_legacy_docker_and_quay() {
    e2e!("case1_legacy_docker_and_quay");
    let reg = mirror(Kind::Plain);
    let secret = Secret::new(&reg.host(), &docker_and_quay(&reg, "http://"));
    let node = applied_node(Base::Debian, Mode::Legacy, &secret);
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "quay.io/e2e/tiny:1", QUAY_PATH);
}

/// Case 2: hosts mode, same mirrors.
#[test]
fn case2_hosts_docker_and_quay() {
    e2e!("case2_hosts_docker_and_quay");
    let reg = mirror(Kind::Plain);
    let secret = Secret::new(&reg.host(), &docker_and_quay(&reg, "http://"));
    let node = applied_node(Base::Default, Mode::Hosts, &secret);
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "quay.io/e2e/tiny:1", QUAY_PATH);
}

/// Case 3: TLS registry whose certificate is signed by the CA in CA_CERT.
fn tls_with_ca(base: Base, mode: Mode) {
    let reg = mirror(Kind::Tls);
    let mut secret = Secret::new(&reg.host(), &docker_and_quay(&reg, ""));
    secret.ca_cert = reg.tls.as_ref().unwrap().ca_pem();
    let node = applied_node(base, mode, &secret);
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "quay.io/e2e/tiny:1", QUAY_PATH);
}

#[test]
fn case3_tls_ca_cert_legacy() {
    e2e!("case3_tls_ca_cert_legacy");
    tls_with_ca(Base::Default, Mode::Legacy);
}

#[test]
fn case3_tls_ca_cert_hosts() {
    e2e!("case3_tls_ca_cert_hosts");
    tls_with_ca(Base::Debian, Mode::Hosts);
}

/// Case 4: INSECURE=true, no CA_CERT, target without a scheme.
fn insecure(kind: Kind, base: Base, mode: Mode) {
    let reg = mirror(kind);
    let mut secret = Secret::new(&reg.host(), &docker_and_quay(&reg, ""));
    secret.insecure = true;
    let node = applied_node(base, mode, &secret);
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "quay.io/e2e/tiny:1", QUAY_PATH);
}

#[test]
fn case4_insecure_self_signed_legacy() {
    e2e!("case4_insecure_self_signed_legacy");
    insecure(Kind::SelfSigned, Base::Debian, Mode::Legacy);
}

#[test]
fn case4_insecure_self_signed_hosts() {
    e2e!("case4_insecure_self_signed_hosts");
    insecure(Kind::SelfSigned, Base::Default, Mode::Hosts);
}

#[test]
fn case4_insecure_plain_http_legacy() {
    e2e!("case4_insecure_plain_http_legacy");
    insecure(Kind::Plain, Base::Default, Mode::Legacy);
}

#[test]
fn case4_insecure_plain_http_hosts() {
    e2e!("case4_insecure_plain_http_hosts");
    insecure(Kind::Plain, Base::Debian, Mode::Hosts);
}

/// Case 5: USERNAME/PASSWORD against the htpasswd registry (TLS, CA in CA_CERT).
fn auth(base: Base, mode: Mode) {
    let reg = mirror(Kind::TlsAuth);
    assert!(
        !reg.anonymous_inspect_succeeds(DOCKER_REPO),
        "the auth registry let an anonymous client in: the case would prove nothing"
    );
    let (user, pass) = reg.creds().unwrap();
    let mut secret = Secret::new(&reg.host(), &docker_and_quay(&reg, ""));
    secret.ca_cert = reg.tls.as_ref().unwrap().ca_pem();
    secret.username = user.to_string();
    secret.password = pass.to_string();
    let node = applied_node(base, mode, &secret);
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "quay.io/e2e/tiny:1", QUAY_PATH);
}

#[test]
fn case5_auth_legacy() {
    e2e!("case5_auth_legacy");
    auth(Base::Debian, Mode::Legacy);
}

#[test]
fn case5_auth_hosts() {
    e2e!("case5_auth_hosts");
    auth(Base::Default, Mode::Hosts);
}

/// Case 6: a wildcard source (`*` or `default`) sends every registry to the mirror: the
/// docker.io image and one from a registry that has no entry of its own.
fn wildcard(spelling: &str, base: Base, mode: Mode) {
    let reg = mirror(Kind::Plain);
    let secret = Secret::new(
        &reg.host(),
        &format!("{spelling}::http://{}/airgap-images/docker.io", reg.host()),
    );
    let node = applied_node(base, mode, &secret);
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(
        &node,
        &reg,
        "registry.example.com/library/tiny:1",
        DOCKER_PATH,
    );
}

#[test]
fn case6_wildcard_legacy() {
    e2e!("case6_wildcard_legacy");
    wildcard("*", Base::Default, Mode::Legacy);
    wildcard("default", Base::Debian, Mode::Legacy);
}

#[test]
fn case6_wildcard_hosts() {
    e2e!("case6_wildcard_hosts");
    wildcard("default", Base::Default, Mode::Hosts);
    wildcard("*", Base::Debian, Mode::Hosts);
}

/// Case 7: hosts mode takes a changed Secret without a restart.
#[test]
fn case7_hosts_live_update() {
    e2e!("case7_hosts_live_update");
    let a = mirror(Kind::Plain);
    let b = mirror(Kind::Plain);
    let first = Secret::new(&a.host(), &docker_and_quay(&a, "http://"));
    let node = applied_node(Base::Debian, Mode::Hosts, &first);
    assert_pull_via(&node, &a, "docker.io/library/tiny:1", DOCKER_PATH);
    let pid = node.pid();

    let second = Secret::new(&b.host(), &docker_and_quay(&b, "http://"));
    let file = second.write(&node, "secret-2");
    let (restart, run) = cli::apply(&node, &file, Mode::Hosts);
    assert!(
        !restart,
        "moving a mirror in hosts mode must not need a restart: {run}\n{}",
        cli::written_files(&node)
    );
    let a_mark = a.mark();
    assert_pull_via(&node, &b, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &b, "quay.io/e2e/tiny:1", QUAY_PATH);
    assert_eq!(node.pid(), pid, "containerd was restarted");
    assert!(
        a.hits(a_mark, DOCKER_PATH).is_empty(),
        "the old mirror was still asked after the update:\n{}",
        a.log_since(a_mark)
    );
}

/// Case 8: negative control: the seed doc's endpoint form (no `/v2`), written by hand, fails,
/// and the mirror saw the `/airgap-images/...` path without `/v2` (404).
#[test]
fn case8_negative_control_seed_doc_endpoint() {
    e2e!("case8_negative_control_seed_doc_endpoint");
    let reg = mirror(Kind::Plain);
    let mut node = Containerd::prepare(Base::Default);
    node.write_config(&containerd::with_legacy_mirror(
        &node.original,
        "docker.io",
        &format!("{}/airgap-images/docker.io", reg.host()),
    ));
    node.start();
    let mark = reg.mark();
    let err = assert_pull_fails(&node, "docker.io/library/tiny:1");
    let wrong = reg.hits(mark, SEED_DOC_PATH);
    assert!(
        wrong.iter().any(|r| r.status == 404),
        "expected a 404 for {SEED_DOC_PATH}; CRI error: {err}\naccess log:\n{}",
        reg.log_since(mark)
    );
    assert!(
        reg.hits(mark, DOCKER_PATH).is_empty(),
        "the /v2 path must not have been asked:\n{}",
        reg.log_since(mark)
    );
}

/// `mirrors` of the effective CRI config: empty (null or `{}`)?
fn no_mirrors(registry: &serde_json::Value) -> bool {
    match &registry["mirrors"] {
        serde_json::Value::Null => true,
        serde_json::Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Case 9: revert, restart: the effective CRI config has no mirrors (and no config_path),
/// and a pull no longer reaches the mirror.
fn revert(base: Base, mode: Mode) {
    let reg = mirror(Kind::Plain);
    let secret = Secret::new(&reg.host(), &docker_and_quay(&reg, "http://"));
    let mut node = applied_node(base, mode, &secret);
    let before = node.effective_registry();
    match mode {
        Mode::Legacy => assert!(
            !no_mirrors(&before),
            "apply (legacy) should have loaded mirrors: {before}"
        ),
        Mode::Hosts => assert_ne!(
            before["configPath"].as_str().unwrap_or(""),
            "",
            "apply (hosts) should have set config_path: {before}"
        ),
    }
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);

    let run = cli::revert(&node);
    node.restart();
    let after = node.effective_registry();
    assert!(
        no_mirrors(&after),
        "mirrors left after revert ({run}):\n{after:#}\n{}",
        cli::written_files(&node)
    );
    assert_eq!(
        after["configPath"].as_str().unwrap_or(""),
        "",
        "config_path left after revert ({run}):\n{after:#}\n{}",
        cli::written_files(&node)
    );
    if node.config_text() != node.original {
        eprintln!(
            "note: config.toml after revert differs from the original:\n--- original\n{}\n--- \
             after revert\n{}",
            node.original,
            node.config_text()
        );
    }
    let mark = reg.mark();
    assert_pull_fails(&node, "quay.io/e2e/tiny:1");
    assert!(
        reg.hits(mark, QUAY_PATH).is_empty(),
        "the mirror was still asked after revert:\n{}",
        reg.log_since(mark)
    );
}

#[test]
fn case9_revert_legacy() {
    e2e!("case9_revert_legacy");
    revert(Base::Default, Mode::Legacy);
}

#[test]
fn case9_revert_hosts() {
    e2e!("case9_revert_hosts");
    revert(Base::Debian, Mode::Hosts);
}

/// Extra: `diff` reports changes before and none after `apply`; a second apply needs no
/// restart. No containerd needed.
#[test]
fn diff_and_reapply_are_idempotent() {
    e2e!("diff_and_reapply_are_idempotent");
    for (base, mode) in [(Base::Debian, Mode::Legacy), (Base::Default, Mode::Hosts)] {
        let node = Containerd::prepare(base);
        let secret = Secret::new(
            "127.0.0.1:5000",
            "docker.io::127.0.0.1:5000/airgap-images/docker.io",
        )
        .write(&node, "secret");
        let d = cli::diff(&node, &secret, mode);
        assert_eq!(d.code, 1, "diff before apply ({mode:?}, {base:?}): {d}");
        let (restart, _) = cli::apply(&node, &secret, mode);
        assert!(restart, "first apply ({mode:?}, {base:?}) needs a restart");
        let written = cli::written_files(&node);
        let d = cli::diff(&node, &secret, mode);
        assert_eq!(
            d.code, 0,
            "diff after apply ({mode:?}, {base:?}): {d}\n{written}"
        );
        let (restart, run) = cli::apply(&node, &secret, mode);
        assert!(
            !restart,
            "second apply ({mode:?}, {base:?}) changed something: {run}"
        );
        assert_eq!(
            cli::written_files(&node),
            written,
            "second apply rewrote files"
        );
    }
}
