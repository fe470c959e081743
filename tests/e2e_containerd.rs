//! End-to-end: regmirror's output against a REAL containerd and a REAL docker-registry
//! (distribution 2.8), both started by hand on 127.0.0.1 in temp dirs. Every case runs on each
//! containerd of the matrix: Debian 12's 1.6.20, and 1.7.24 (Debian 13) and 2.1.9 (Debian sid)
//! as `scripts/fetch-containerd.sh` unpacks them. Test names say the version:
//! `containerd_2_1::case3_tls_ca_cert_legacy`. regmirror learns the version itself, over the
//! node's CRI socket, as on a node.
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
//! The starting config.toml alternates between Debian's packaged one (version 2) and
//! `containerd config default` of the release (version 2 on 1.x, 3 on 2.x); a version 1 file is
//! case 12. On 2.x, `--mode legacy` must be refused for CA_CERT, INSECURE and version 1 files
//! (2.x ignores what it would write): those cases assert the refusal (exit 2, no byte changed),
//! then pull in auto mode.

/// Also brings `e2e!(name)`: skip the test unless `support::prerequisites`, then time it.
mod support;

use std::time::Instant;

use support::cli::{self, Mode, Secret};
use support::containerd::{self, Base, Containerd, Release};
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

containerd_matrix!(
    case0_harness_hand_written_v2_endpoint_pulls,
    cri_client_status_and_unimplemented,
    case1_legacy_docker_and_quay,
    case2_hosts_docker_and_quay,
    case3_tls_ca_cert_legacy,
    case3_tls_ca_cert_hosts,
    case4_insecure_self_signed_legacy,
    case4_insecure_self_signed_hosts,
    case4_insecure_plain_http_legacy,
    case4_insecure_plain_http_hosts,
    case5_auth_legacy,
    case5_auth_hosts,
    case6_wildcard_legacy,
    case6_wildcard_hosts,
    case7_hosts_live_update,
    case8_negative_control_seed_doc_endpoint,
    case9_revert_legacy,
    case9_revert_hosts,
    case10_auto_tls_ca_auth,
    case11_v2_target_form,
    case12_version1_file,
    case13_config_path_list,
    case14_strict_airgap_never_contacts_upstream,
    diff_and_reapply_are_idempotent,
);

/// A started node of `release` from `base` on which `regmirror apply` ran with `secret` in
/// `mode`, and containerd was restarted because apply said so.
fn applied_node(release: Release, base: Base, mode: Mode, secret: &Secret) -> Containerd {
    let mut node = Containerd::prepare_on(release, base);
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

/// Harness check without regmirror: the working legacy form written by hand pulls (on 2.x in
/// a version 2 file, which 2.x migrates).
fn case0_harness_hand_written_v2_endpoint_pulls(release: Release) {
    let reg = mirror(Kind::Plain);
    let mut node = Containerd::prepare_on(release, Base::Debian);
    let endpoint = format!("http://{}/v2/airgap-images/docker.io", reg.host());
    node.write_config(&containerd::with_legacy_mirror(
        &node.original,
        "docker.io",
        &endpoint,
    ));
    node.start();
    eprintln!("containerd CRI version {}", node.version());
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "tiny:1", DOCKER_PATH);
    let st = node.status();
    assert!(st.runtime_ready, "{st:?}");
    let loaded = node.loaded();
    assert_eq!(loaded.mirrors["docker.io"], vec![endpoint], "{loaded:?}");
}

/// The crate's CRI client against the real thing: healthy Status, and a containerd whose CRI
/// plugin failed to load (`config_path` together with legacy `mirrors`) is UNIMPLEMENTED, an
/// error at once rather than healthy or a timeout.
fn cri_client_status_and_unimplemented(release: Release) {
    let mut node = Containerd::prepare_on(release, Base::Debian);
    node.start();
    let st = node.status();
    assert!(st.runtime_ready, "{st:?}");
    // NetworkReady follows whether a CNI network config exists on this machine (Debian's podman
    // package ships /etc/cni/net.d/87-podman-bridge.conflist; a bare machine has none).
    let cni_configured = std::fs::read_dir("/etc/cni/net.d").is_ok_and(|d| {
        d.flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.ends_with(".conf") || n.ends_with(".conflist") || n.ends_with(".json")
        })
    });
    assert_eq!(
        st.network_ready, cni_configured,
        "NetworkReady must follow the CNI config in /etc/cni/net.d: {st:?}"
    );
    assert_eq!(
        st.config.as_ref().and_then(|c| c.get("registry")).is_some(),
        !release.is_2x(),
        "CRI Status carries the registry config on 1.x only: {st:?}"
    );
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

/// Case 1: legacy mode, docker.io and quay.io mirrors; full name and short name. (On 2.x:
/// allowed for plain mirrors in a version 2 file, with a deprecation warning.)
fn case1_legacy_docker_and_quay(release: Release) {
    let reg = mirror(Kind::Plain);
    let secret = Secret::new(&reg.host(), &docker_and_quay(&reg, "http://"));
    let node = applied_node(release, Base::Debian, Mode::Legacy, &secret);
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "quay.io/e2e/tiny:1", QUAY_PATH);
}

/// Case 2: hosts mode, same mirrors.
fn case2_hosts_docker_and_quay(release: Release) {
    let reg = mirror(Kind::Plain);
    let secret = Secret::new(&reg.host(), &docker_and_quay(&reg, "http://"));
    let node = applied_node(release, Base::Default, Mode::Hosts, &secret);
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "quay.io/e2e/tiny:1", QUAY_PATH);
}

/// On 2.x, `--mode legacy` with what 2.x ignores is refused: exit 2, the reason named, no byte
/// on disk changed. Returns the mode the case goes on with (auto on 2.x).
fn legacy_or_refused(node: &mut Containerd, secret: &Secret, why: &str) -> Mode {
    if !node.release.is_2x() {
        return Mode::Legacy;
    }
    node.start();
    let file = secret.write(node, "secret");
    let before = cli::written_files(node);
    let r = cli::regmirror(
        node,
        "apply",
        &["--secret-file", file.to_str().unwrap(), "--mode", "legacy"],
    );
    assert_eq!(r.code, 2, "legacy mode on 2.x must be refused: {r}");
    assert!(
        r.stderr.contains("--mode legacy on containerd 2.1.9") && r.stderr.contains(why),
        "the refusal must name the version and {why:?}: {r}"
    );
    assert_eq!(
        cli::written_files(node),
        before,
        "a refused apply changed files"
    );
    assert!(
        !node.state_dir.join("state.json").exists(),
        "a refused apply wrote state"
    );
    node.stop();
    Mode::Auto
}

/// `applied_node`, but legacy mode goes through [`legacy_or_refused`] first.
fn applied_legacy_node(release: Release, base: Base, secret: &Secret, why: &str) -> Containerd {
    let mut probe = Containerd::prepare_on(release, base);
    let mode = legacy_or_refused(&mut probe, secret, why);
    drop(probe);
    applied_node(release, base, mode, secret)
}

/// Case 3: TLS registry whose certificate is signed by the CA in CA_CERT.
fn tls_with_ca(release: Release, base: Base, mode: Mode) {
    let reg = mirror(Kind::Tls);
    let mut secret = Secret::new(&reg.host(), &docker_and_quay(&reg, ""));
    secret.ca_cert = reg.tls.as_ref().unwrap().ca_pem();
    let node = match mode {
        Mode::Legacy => applied_legacy_node(release, base, &secret, "CA_CERT"),
        _ => applied_node(release, base, mode, &secret),
    };
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "quay.io/e2e/tiny:1", QUAY_PATH);
}

fn case3_tls_ca_cert_legacy(release: Release) {
    tls_with_ca(release, Base::Debian, Mode::Legacy);
}

fn case3_tls_ca_cert_hosts(release: Release) {
    tls_with_ca(release, Base::Debian, Mode::Hosts);
}

/// Case 4: INSECURE=true, no CA_CERT, target without a scheme.
fn insecure(release: Release, kind: Kind, base: Base, mode: Mode) {
    let reg = mirror(kind);
    let mut secret = Secret::new(&reg.host(), &docker_and_quay(&reg, ""));
    secret.insecure = true;
    let node = match mode {
        Mode::Legacy => applied_legacy_node(release, base, &secret, "INSECURE"),
        _ => applied_node(release, base, mode, &secret),
    };
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "quay.io/e2e/tiny:1", QUAY_PATH);
}

fn case4_insecure_self_signed_legacy(release: Release) {
    insecure(release, Kind::SelfSigned, Base::Debian, Mode::Legacy);
}

fn case4_insecure_self_signed_hosts(release: Release) {
    insecure(release, Kind::SelfSigned, Base::Default, Mode::Hosts);
}

fn case4_insecure_plain_http_legacy(release: Release) {
    insecure(release, Kind::Plain, Base::Debian, Mode::Legacy);
}

fn case4_insecure_plain_http_hosts(release: Release) {
    insecure(release, Kind::Plain, Base::Debian, Mode::Hosts);
}

/// A Secret for the htpasswd + TLS registry `reg`: its user, password and CA, docker.io and
/// quay.io mirrored.
fn auth_secret(reg: &Registry) -> Secret {
    let (user, pass) = reg.creds().unwrap();
    let mut secret = Secret::new(&reg.host(), &docker_and_quay(reg, ""));
    secret.ca_cert = reg.tls.as_ref().unwrap().ca_pem();
    secret.username = user.to_string();
    secret.password = pass.to_string();
    secret
}

/// Case 5: USERNAME/PASSWORD against the htpasswd registry (TLS, CA in CA_CERT).
fn auth(release: Release, base: Base, mode: Mode) {
    let reg = mirror(Kind::TlsAuth);
    assert!(
        !reg.anonymous_inspect_succeeds(DOCKER_REPO),
        "the auth registry let an anonymous client in: the case would prove nothing"
    );
    let secret = auth_secret(&reg);
    let node = match mode {
        Mode::Legacy => applied_legacy_node(release, base, &secret, "CA_CERT"),
        _ => applied_node(release, base, mode, &secret),
    };
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "quay.io/e2e/tiny:1", QUAY_PATH);
}

fn case5_auth_legacy(release: Release) {
    auth(release, Base::Debian, Mode::Legacy);
}

fn case5_auth_hosts(release: Release) {
    auth(release, Base::Default, Mode::Hosts);
}

/// Case 6: a wildcard source (`*` or `default`) sends every registry to the mirror: the
/// docker.io image and one from a registry that has no entry of its own.
fn wildcard(release: Release, spelling: &str, base: Base, mode: Mode) {
    let reg = mirror(Kind::Plain);
    let secret = Secret::new(
        &reg.host(),
        &format!("{spelling}::http://{}/airgap-images/docker.io", reg.host()),
    );
    let node = applied_node(release, base, mode, &secret);
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(
        &node,
        &reg,
        "registry.example.com/library/tiny:1",
        DOCKER_PATH,
    );
}

fn case6_wildcard_legacy(release: Release) {
    wildcard(release, "*", Base::Debian, Mode::Legacy);
    if !release.is_2x() {
        // containerd config default is version 2 on 1.x only.
        wildcard(release, "default", Base::Default, Mode::Legacy);
    }
}

fn case6_wildcard_hosts(release: Release) {
    wildcard(release, "default", Base::Default, Mode::Hosts);
    wildcard(release, "*", Base::Debian, Mode::Hosts);
}

/// Case 7: hosts mode takes a changed Secret without a restart.
fn case7_hosts_live_update(release: Release) {
    let a = mirror(Kind::Plain);
    let b = mirror(Kind::Plain);
    let first = Secret::new(&a.host(), &docker_and_quay(&a, "http://"));
    let node = applied_node(release, Base::Debian, Mode::Hosts, &first);
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

/// A TCP listener on 127.0.0.1 standing in for the upstream registry: it counts every
/// connection (and closes it). Any contact at all is what strict air-gap must rule out, so no
/// registry protocol is needed behind it. Stops with the test process.
fn upstream_counter() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = l.local_addr().unwrap().to_string();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = n.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(c);
        }
    });
    (host, n)
}

/// Case 14: strict air-gap (`--strict-airgap`): an image the mirror has pulls through it; one
/// it lacks fails, and the upstream stand-in sees no connection. Control: the same Secret
/// without the flag makes containerd fall back to the upstream (a connection is seen).
fn case14_strict_airgap_never_contacts_upstream(release: Release) {
    let reg = Registry::start(Kind::Plain);
    let (up, contacts) = upstream_counter();
    let dir = up.replace(':', "_");
    reg.push_tiny(&format!("airgap-images/{dir}/library/tiny"));
    let mut secret = Secret::new(
        &reg.host(),
        &format!("{up}::http://{}/airgap-images/{dir}", reg.host()),
    );
    secret.insecure = true;
    let mut node = Containerd::prepare_on(release, Base::Debian);
    node.start();
    let file = secret.write(&node, "secret");
    let file = file.to_str().unwrap();
    let count = || contacts.load(std::sync::atomic::Ordering::SeqCst);
    for strict in [false, true] {
        let mut args = vec!["--secret-file", file, "--mode", "hosts", "--reload", "none"];
        if strict {
            args.push("--strict-airgap");
        }
        let run = cli::regmirror(&node, "apply", &args);
        assert_eq!(run.code, 0, "{run}");
        node.restart();
        let path = format!("/v2/airgap-images/{dir}/library/tiny/manifests/1");
        assert_pull_via(&node, &reg, &format!("{up}/library/tiny:1"), &path);
        let before = count();
        assert_pull_fails(&node, &format!("{up}/library/absent:1"));
        let seen = count() - before;
        eprintln!(
            "strict={strict}: upstream stand-in saw {seen} connection(s) for a missing image"
        );
        if strict {
            assert_eq!(
                seen,
                0,
                "strict air-gap contacted upstream:\n{}",
                cli::written_files(&node)
            );
        } else {
            assert!(
                seen > 0,
                "control: no fallback to upstream seen:\n{}",
                cli::written_files(&node)
            );
        }
    }
}

/// Case 8: negative control: the seed doc's endpoint form (no scheme, no `/v2`), written by
/// hand, fails. 1.x asks the mirror for `/airgap-images/...` without `/v2` (404); 2.x does not
/// even ask the mirror. Either way the mirror never answers the `/v2/...` path.
fn case8_negative_control_seed_doc_endpoint(release: Release) {
    let reg = mirror(Kind::Plain);
    let mut node = Containerd::prepare_on(release, Base::Debian);
    node.write_config(&containerd::with_legacy_mirror(
        &node.original,
        "docker.io",
        &format!("{}/airgap-images/docker.io", reg.host()),
    ));
    node.start();
    let mark = reg.mark();
    let err = assert_pull_fails(&node, "docker.io/library/tiny:1");
    if !release.is_2x() {
        let wrong = reg.hits(mark, SEED_DOC_PATH);
        assert!(
            wrong.iter().any(|r| r.status == 404),
            "expected a 404 for {SEED_DOC_PATH}; CRI error: {err}\naccess log:\n{}",
            reg.log_since(mark)
        );
    }
    assert!(
        reg.hits(mark, DOCKER_PATH).is_empty(),
        "the /v2 path must not have been asked:\n{}",
        reg.log_since(mark)
    );
}

/// Case 9: revert, restart: the effective config has no mirrors (and no config_path), and a
/// pull no longer reaches the mirror.
fn revert(release: Release, base: Base, mode: Mode) {
    let reg = mirror(Kind::Plain);
    let secret = Secret::new(&reg.host(), &docker_and_quay(&reg, "http://"));
    let mut node = applied_node(release, base, mode, &secret);
    let before = node.loaded();
    match mode {
        Mode::Legacy => assert!(
            !before.mirrors.is_empty(),
            "apply (legacy) should have loaded mirrors: {before:?}"
        ),
        _ => assert_eq!(
            before.config_path,
            node.certs_dir.to_str().unwrap(),
            "apply (hosts) should have set config_path: {before:?}"
        ),
    }
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);

    let run = cli::revert(&node);
    node.restart();
    let after = node.loaded();
    assert!(
        after.mirrors.is_empty() && after.config_path.is_empty(),
        "mirrors or config_path left after revert ({run}):\n{after:#?}\n{}",
        cli::written_files(&node)
    );
    assert_eq!(
        node.config_text(),
        node.original,
        "revert is not byte-exact"
    );
    let mark = reg.mark();
    assert_pull_fails(&node, "quay.io/e2e/tiny:1");
    assert!(
        reg.hits(mark, QUAY_PATH).is_empty(),
        "the mirror was still asked after revert:\n{}",
        reg.log_since(mark)
    );
}

fn case9_revert_legacy(release: Release) {
    revert(release, Base::Debian, Mode::Legacy);
}

fn case9_revert_hosts(release: Release) {
    revert(release, Base::Debian, Mode::Hosts);
}

/// Case 10: auto mode, TLS + CA_CERT + USERNAME/PASSWORD, on both base files: whatever auto
/// picks for this containerd and file must pull through the mirror (on 2.x with a version 2
/// file, legacy `configs.tls` would be dropped: auto must pick hosts mode there).
fn case10_auto_tls_ca_auth(release: Release) {
    let reg = mirror(Kind::TlsAuth);
    let secret = auth_secret(&reg);
    for base in [Base::Debian, Base::Default] {
        let node = applied_node(release, base, Mode::Auto, &secret);
        let loaded = node.loaded();
        assert_eq!(
            (!loaded.config_path.is_empty(), loaded.mirrors.is_empty()),
            (release.is_2x(), release.is_2x()),
            "auto on {release:?} with the {base:?} file picked the wrong mode ({loaded:?}):\n{}",
            cli::written_files(&node)
        );
        assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
        assert_pull_via(&node, &reg, "quay.io/e2e/tiny:1", QUAY_PATH);
    }
}

/// Case 11: a target written with the registry API root (`host/v2/prefix`, as Harbor proxy-cache
/// docs write it) means the same as without: it pulls, and `diff` of one form against the other
/// is empty.
fn case11_v2_target_form(release: Release) {
    let reg = mirror(Kind::Plain);
    let h = reg.host();
    let with_v2 = Secret::new(
        &h,
        &format!(
            "docker.io::http://{h}/v2/airgap-images/docker.io,quay.io::http://{h}/v2/airgap-images/quay.io"
        ),
    );
    let node = applied_node(release, Base::Default, Mode::Auto, &with_v2);
    assert!(
        !node.config_text().contains("/v2/v2") && !cli::written_files(&node).contains("/v2/v2"),
        "double /v2:\n{}",
        cli::written_files(&node)
    );
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "quay.io/e2e/tiny:1", QUAY_PATH);
    let without = Secret::new(&h, &docker_and_quay(&reg, "http://")).write(&node, "plain");
    let d = cli::diff(&node, &without, Mode::Auto);
    assert_eq!(d.code, 0, "the forms with and without /v2 differ: {d}");
}

/// Case 12: a version 1 file (no `version` key). 1.x reads `plugins.cri`: auto writes legacy
/// mirrors there. 2.x ignores `plugins.cri` in such a file: legacy is refused, and auto writes
/// `config_path` under the full plugin id `io.containerd.cri.v1.images`, which 2.x honours.
fn case12_version1_file(release: Release) {
    let reg = mirror(Kind::Plain);
    let secret = Secret::new(&reg.host(), &docker_and_quay(&reg, "http://"));
    let mut probe = Containerd::prepare_on(release, Base::V1);
    if release.is_2x() {
        legacy_or_refused(&mut probe, &secret, "version 1 file");
    }
    drop(probe);
    let node = applied_node(release, Base::V1, Mode::Auto, &secret);
    let text = node.config_text();
    let table = if release.is_2x() {
        "[plugins.\"io.containerd.cri.v1.images\".registry]"
    } else {
        "[plugins.cri.registry.mirrors.\"docker.io\"]"
    };
    assert!(text.contains(table), "expected {table}:\n{text}");
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "quay.io/e2e/tiny:1", QUAY_PATH);
}

/// Case 13: the admin's config.toml already sets a colon-separated `config_path` (containerd
/// 2.2's default, EKS nodeadm's): hosts.toml files go to its first directory, and the pull goes
/// through the mirror.
fn case13_config_path_list(release: Release) {
    let reg = mirror(Kind::Plain);
    let secret = Secret::new(&reg.host(), &docker_and_quay(&reg, "http://"));
    let mut node = Containerd::prepare_on(release, Base::Debian);
    let other = node.dir().join("docker-certs.d");
    let mut doc: toml_edit::DocumentMut = node.original.parse().unwrap();
    containerd::cri_registry(&mut doc)["config_path"] =
        toml_edit::value(format!("{}:{}", node.certs_dir.display(), other.display()));
    node.original = doc.to_string();
    node.write_config(&node.original);
    node.start();
    let file = secret.write(&node, "secret");
    let (restart, run) = cli::apply(&node, &file, Mode::Auto);
    eprintln!("{run}");
    if restart {
        node.restart();
    }
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "quay.io/e2e/tiny:1", QUAY_PATH);
    cli::revert(&node);
    assert_eq!(
        node.config_text(),
        node.original,
        "revert is not byte-exact"
    );
}

/// Extra: `diff` reports changes before and none after `apply`; a second apply needs no
/// restart. containerd is not started: regmirror asks `containerd --version` of the release.
fn diff_and_reapply_are_idempotent(release: Release) {
    for (base, mode) in [(Base::Debian, Mode::Legacy), (Base::Default, Mode::Hosts)] {
        let node = Containerd::prepare_on(release, base);
        let secret = Secret::new(
            "127.0.0.1:5000",
            "docker.io::127.0.0.1:5000/airgap-images/docker.io",
        )
        .write(&node, "secret");
        let d = cli::diff(&node, &secret, mode);
        assert_eq!(d.code, 1, "diff before apply ({mode:?}, {base:?}): {d}");
        assert!(
            d.stdout
                .contains(&format!("containerd {}", release.version())),
            "diff must say which containerd it decided for: {d}"
        );
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

/// A node upgraded from containerd 1.6 to 2.1 under regmirror: legacy entries (with a CA, which
/// 2.x would drop) move to hosts mode in one apply and one restart; pulls go through the mirror
/// on both; revert afterwards is byte-exact to the admin's original file.
#[test]
fn upgrade_1_6_to_2_1_moves_legacy_to_hosts() {
    e2e!("upgrade_1_6_to_2_1_moves_legacy_to_hosts");
    if let Some(p) = Release::V2_1.problem()
        && !support::prerequisites_verdict("upgrade", "containerd release", &[p])
    {
        return;
    }
    let reg = mirror(Kind::TlsAuth);
    let secret = auth_secret(&reg);
    let mut node = applied_node(Release::V1_6, Base::Debian, Mode::Auto, &secret);
    assert!(
        !node.config_text().contains("config_path"),
        "1.6 + v2 file: legacy"
    );
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);

    node.upgrade_to(Release::V2_1);
    let file = secret.write(&node, "secret");
    let (restart, run) = cli::apply(&node, &file, Mode::Auto);
    assert!(restart, "moving to hosts mode changes config.toml: {run}");
    assert!(run.stdout.contains("containerd 2.1.9"), "{run}");
    let text = node.config_text();
    assert!(
        text.contains("config_path") && !text.contains("mirrors") && !text.contains("ca_file"),
        "legacy entries must be gone, config_path written:\n{text}"
    );
    node.restart();
    assert_pull_via(&node, &reg, "docker.io/library/tiny:1", DOCKER_PATH);
    assert_pull_via(&node, &reg, "quay.io/e2e/tiny:1", QUAY_PATH);
    let (restart, run) = cli::apply(&node, &file, Mode::Auto);
    assert!(!restart, "a second apply on 2.1 changed something: {run}");
    cli::revert(&node);
    assert_eq!(
        node.config_text(),
        node.original,
        "revert is not byte-exact"
    );
}
