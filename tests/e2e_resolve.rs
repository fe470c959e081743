//! `regmirror resolve` against what a REAL containerd does (1.6.20, 1.7.24, 2.1.9), for the
//! rules containerd's own tests leave out (`_default`, a registry directory with only a CA,
//! `host_port_` precedence, `server` normalisation, hosts without the `resolve` capability).
//! For each scenario: lay out the hosts directories, ask `regmirror resolve -o json`, pull over
//! CRI, and compare: the first host `resolve` says a tag pull uses is the registry whose access
//! log shows the tag's manifest request, and no host `resolve` skips or puts later is asked for
//! it. Mirrors are docker-registry instances on 127.0.0.1; without internet an
//! upstream attempt fails (which is what the scenarios that expect it assert).

mod support;

use support::cli;
use support::containerd::{self, Base, Containerd, Release};
use support::registry::{Kind, Registry};

containerd_matrix!(
    default_dir_applies_without_a_registry_dir,
    registry_dir_with_only_a_ca_wins_over_default,
    host_port_dir_wins_over_host_colon_port,
    server_without_and_with_v2,
    host_without_resolve_is_skipped_for_tags,
);

/// A plain registry holding the tiny image as `library/tiny:1`, at the root and under `p/`.
fn registry() -> Registry {
    let r = Registry::start(Kind::Plain);
    r.push_tiny("library/tiny");
    r.push_tiny("p/library/tiny");
    r
}

/// A node whose config.toml sets `config_path` to its certs dir, with `files` (relative path →
/// text) laid out there, started.
fn node(release: Release, files: &[(String, String)]) -> Containerd {
    let mut n = Containerd::prepare_on(release, Base::Debian);
    let mut doc: toml_edit::DocumentMut = n.original.parse().unwrap();
    containerd::cri_registry(&mut doc)["config_path"] =
        toml_edit::value(n.certs_dir.to_str().unwrap());
    n.original = doc.to_string();
    n.write_config(&n.original);
    for (rel, text) in files {
        let p = n.certs_dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    n.start();
    n
}

/// `regmirror resolve IMAGE -o json` on the node (version learnt over its socket).
fn resolve(node: &Containerd, image: &str) -> serde_json::Value {
    let out = std::process::Command::new(cli::BIN)
        .args(["resolve", image, "-o", "json", "--host-pid", "0"])
        .arg("--config")
        .arg(&node.config)
        .arg("--certs-dir")
        .arg(&node.certs_dir)
        .arg("--containerd-socket")
        .arg(&node.socket)
        .env_remove("REGMIRROR_CONTAINERD_VERSION")
        .env("PATH", node.release.path_env())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "resolve: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The hosts of the eligible attempts, in order.
fn eligible_hosts(res: &serde_json::Value) -> Vec<String> {
    res["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["eligible"] == true)
        .map(|a| a["host"].as_str().unwrap().to_string())
        .collect()
}

/// Pulls `image` (`…:1`); asserts that `expected_first` (one of `regs`, or none) was asked for
/// the tag's manifest and no other of `regs` was (hosts with only `pull` may then serve the
/// manifest by digest and the blobs: that needs no `resolve`).
fn pull_goes_to(
    node: &Containerd,
    image: &str,
    regs: &[&Registry],
    expected_first: Option<&Registry>,
) {
    let marks: Vec<usize> = regs.iter().map(|r| r.mark()).collect();
    let result = node.pull(image);
    for (r, m) in regs.iter().zip(&marks) {
        let manifests: Vec<_> = r
            .requests_since(*m)
            .into_iter()
            .filter(|q| q.path.ends_with("/manifests/1"))
            .collect();
        let is_first = expected_first.is_some_and(|f| f.host() == r.host());
        assert_eq!(
            !manifests.is_empty(),
            is_first,
            "registry {} {} asked for a manifest of {image} (pull: {result:?}); its log:\n{}\ncontainerd:\n{}",
            r.host(),
            if is_first { "was not" } else { "was" },
            r.log_since(*m),
            node.pull_log()
        );
    }
    assert_eq!(
        result.is_ok(),
        expected_first.is_some(),
        "pull of {image}: {result:?}"
    );
}

fn mirror_table(reg: &Registry, caps: &str) -> String {
    format!(
        "[host.\"http://{}/v2/p\"]\n  capabilities = {caps}\n  override_path = true\n",
        reg.host()
    )
}

/// `_default/hosts.toml` applies to a registry without a directory of its own (1.6.17+).
fn default_dir_applies_without_a_registry_dir(release: Release) {
    let a = registry();
    let n = node(
        release,
        &[(
            "_default/hosts.toml".into(),
            mirror_table(&a, "[\"pull\", \"resolve\"]"),
        )],
    );
    let res = resolve(&n, "docker.io/library/tiny:1");
    assert_eq!(eligible_hosts(&res)[0], a.host(), "{res:#}");
    pull_goes_to(&n, "docker.io/library/tiny:1", &[&a], Some(&a));
}

/// A `docker.io` directory holding only a CA stops the search: `_default` is not used, the
/// upstream is (and fails here).
fn registry_dir_with_only_a_ca_wins_over_default(release: Release) {
    let a = registry();
    let dir = support::temp_dir("ca");
    let ca = support::tls::ca_signed(dir.path()).ca_pem();
    let n = node(
        release,
        &[
            ("docker.io/ca.crt".into(), ca),
            (
                "_default/hosts.toml".into(),
                mirror_table(&a, "[\"pull\", \"resolve\"]"),
            ),
        ],
    );
    let res = resolve(&n, "docker.io/library/tiny:1");
    assert_eq!(eligible_hosts(&res), ["registry-1.docker.io"], "{res:#}");
    pull_goes_to(&n, "docker.io/library/tiny:1", &[&a], None);
}

/// For `host:port`, the `host_port_` directory is looked at before `host:port`.
fn host_port_dir_wins_over_host_colon_port(release: Release) {
    let (a, b) = (registry(), registry());
    let target = registry();
    let (host, port) = target
        .host()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .unwrap();
    let n = node(
        release,
        &[
            (
                format!("{host}_{port}_/hosts.toml"),
                mirror_table(&a, "[\"pull\", \"resolve\"]"),
            ),
            (
                format!("{host}:{port}/hosts.toml"),
                mirror_table(&b, "[\"pull\", \"resolve\"]"),
            ),
        ],
    );
    let image = format!("{}/library/tiny:1", target.host());
    let res = resolve(&n, &image);
    assert_eq!(eligible_hosts(&res)[0], a.host(), "{res:#}");
    pull_goes_to(&n, &image, &[&a, &b], Some(&a));
}

/// A hosts.toml with only `server`: without `/v2` it gets it appended, ending in `/v2` it is not
/// doubled (2.x). containerd 1.x before 1.7.32 rejects such a file and uses the upstream (which
/// fails here): `resolve` must say so for 1.6.20 and 1.7.24.
fn server_without_and_with_v2(release: Release) {
    for suffix in ["", "/v2"] {
        let a = registry();
        let text = format!("server = \"http://{}{suffix}\"\n", a.host());
        let n = node(release, &[("docker.io/hosts.toml".into(), text)]);
        let res = resolve(&n, "docker.io/library/tiny:1");
        let first = res["attempts"][0]["url"].as_str().unwrap().to_string();
        if release.is_2x() {
            assert_eq!(
                first,
                format!("http://{}/v2/library/tiny/manifests/1", a.host()),
                "{res:#}"
            );
            pull_goes_to(&n, "docker.io/library/tiny:1", &[&a], Some(&a));
        } else {
            assert_eq!(eligible_hosts(&res), ["registry-1.docker.io"], "{res:#}");
            pull_goes_to(&n, "docker.io/library/tiny:1", &[&a], None);
        }
    }
}

/// A host without `resolve` is not asked for a tag's manifest; the next host is.
fn host_without_resolve_is_skipped_for_tags(release: Release) {
    let (a, b) = (registry(), registry());
    let text = format!(
        "{}\n{}",
        mirror_table(&a, "[\"pull\"]"),
        mirror_table(&b, "[\"pull\", \"resolve\"]")
    );
    let n = node(release, &[("docker.io/hosts.toml".into(), text)]);
    let res = resolve(&n, "docker.io/library/tiny:1");
    assert_eq!(eligible_hosts(&res)[0], b.host(), "{res:#}");
    assert_eq!(res["attempts"][0]["eligible"], false, "{res:#}");
    pull_goes_to(&n, "docker.io/library/tiny:1", &[&a, &b], Some(&b));
}
