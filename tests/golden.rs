//! Golden tests: the exact config.toml and managed files regmirror renders for the cases the
//! core must get right (legacy v1, v2, hosts mode on v2 and v3, credentials, CA_CERT, INSECURE,
//! wildcard, empty target). Snapshots live in tests/snapshots/ (insta); review a change with
//! `INSTA_UPDATE=always cargo test --test golden` and read the .snap files.
//!
//! Besides the snapshot, every case checks that PASSWORD appears only where containerd needs it:
//! in clear only as `password = "…"` under `registry.configs."<host>".auth` in config.toml
//! (legacy mode), as base64 only as `Authorization = "Basic …"` under `[host."…".header]` in a
//! hosts.toml (mode 0600), and nowhere else (ownership, warnings, other files).

mod common;

use common::{CERTS, base_pairs, ca_pem, data_of, dump, read_repo, render, set, spec_of};
use regmirror::render::{ConfigOwnership, Mode, Rendered, WriteMode};
use regmirror::spec::{RegistrySpec, parse_spec, secret_data_from_manifest};

const SEED_MIRRORS: &str = "docker.io::harbor.example.org/airgap-images/docker.io,registry.k8s.io::harbor.example.org/airgap-images/k8s.io";
const PASSWORD: &str = "s3cr3t-Pa55word!";

fn seed_config() -> String {
    read_repo("examples/containerd/config.toml")
}

fn seed_spec() -> RegistrySpec {
    let text = read_repo("examples/registry-secret.yaml");
    let data = secret_data_from_manifest(&text, "registry-info", Some("jet-system")).unwrap();
    parse_spec(&data).unwrap()
}

fn auth_spec() -> RegistrySpec {
    let text = read_repo("examples/registry-secret-auth.yaml");
    let data = secret_data_from_manifest(&text, "registry-info", Some("jet-system")).unwrap();
    parse_spec(&data).unwrap()
}

/// A spec from the base Secret with some keys changed.
fn spec_with(mirrors: &str, changes: &[(&str, &str)]) -> RegistrySpec {
    let mut pairs = base_pairs(mirrors);
    for (k, v) in changes {
        set(&mut pairs, k, v);
    }
    spec_of(&pairs)
}

/// Render (fresh: nothing owned before), check the password rules, check the revert gives the
/// original back, and return the dump plus what regmirror owns.
fn golden(config: &str, spec: &RegistrySpec, mode: Mode) -> (Rendered, String) {
    let r = render(config, &ConfigOwnership::default(), Some(spec), mode)
        .unwrap_or_else(|e| panic!("render refused: {e}"));
    check_password(spec, &r);
    let back = render(&r.config, &r.ownership, None, Mode::Auto).unwrap();
    assert_eq!(back.config, config, "revert did not give the original back");
    let mut out = dump(&r);
    out.push_str("## ---- ownership ----\n");
    for v in &r.ownership.values {
        out.push_str(&format!(
            "## owns {} ({})\n",
            v.path.join(" > "),
            match &v.previous {
                None => "new key".to_string(),
                Some(p) => format!("replaced {}", p.repr),
            }
        ));
    }
    for t in &r.ownership.created_tables {
        out.push_str(&format!("## created table {}\n", t.join(" > ")));
    }
    (r, out)
}

/// Every string value in a TOML document, with its key path (array items as `[i]`).
fn strings(text: &str) -> Vec<(Vec<String>, String)> {
    fn walk_value(
        path: &mut Vec<String>,
        v: &toml_edit::Value,
        out: &mut Vec<(Vec<String>, String)>,
    ) {
        match v {
            toml_edit::Value::String(s) => out.push((path.clone(), s.value().clone())),
            toml_edit::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    path.push(format!("[{i}]"));
                    walk_value(path, x, out);
                    path.pop();
                }
            }
            toml_edit::Value::InlineTable(t) => {
                for (k, x) in t.iter() {
                    path.push(k.to_string());
                    walk_value(path, x, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    fn walk(path: &mut Vec<String>, item: &toml_edit::Item, out: &mut Vec<(Vec<String>, String)>) {
        match item {
            toml_edit::Item::Value(v) => walk_value(path, v, out),
            toml_edit::Item::Table(t) => {
                for (k, x) in t.iter() {
                    path.push(k.to_string());
                    walk(path, x, out);
                    path.pop();
                }
            }
            toml_edit::Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    path.push(format!("[{i}]"));
                    for (k, x) in t.iter() {
                        path.push(k.to_string());
                        walk(path, x, out);
                        path.pop();
                    }
                    path.pop();
                }
            }
            toml_edit::Item::None => {}
        }
    }
    let doc: toml_edit::DocumentMut = text.parse().expect("rendered TOML parses");
    let mut out = Vec::new();
    walk(&mut Vec::new(), doc.as_item(), &mut out);
    out
}

/// PASSWORD only where containerd needs it (see the module comment).
fn check_password(spec: &RegistrySpec, r: &Rendered) {
    let own = serde_json::to_string(&r.ownership).unwrap();
    let Some(c) = &spec.credentials else {
        for f in &r.files {
            let t = String::from_utf8_lossy(&f.contents);
            assert!(
                !t.contains("Authorization"),
                "{}: header without credentials",
                f.path.display()
            );
        }
        assert!(
            !r.config.contains("password"),
            "password key without credentials"
        );
        return;
    };
    let pw = c.password.expose();
    let token = c.basic_token();
    assert!(
        !own.contains(pw) && !own.contains(&token),
        "ownership holds the password"
    );
    for w in &r.warnings {
        assert!(!w.contains(pw), "warning holds the password: {w}");
    }
    // config.toml: only as the value of `configs."<host>".auth.password`, never the token.
    assert!(
        !r.config.contains(&token),
        "config.toml holds the Basic token"
    );
    let mut in_config = 0;
    for (path, v) in strings(&r.config) {
        assert!(!v.contains(&token), "{path:?} holds the Basic token");
        if v.contains(pw) {
            let n = path.len();
            assert!(
                n >= 6
                    && path[n - 4] == "configs"
                    && path[n - 2] == "auth"
                    && path[n - 1] == "password",
                "password at {path:?}"
            );
            assert_eq!(v, pw);
            in_config += 1;
        }
    }
    // And no raw copy outside those values (comments, keys).
    let raw = r.config.matches(pw).count();
    assert!(
        raw <= in_config,
        "config.toml holds the password {raw} times, {in_config} as auth values"
    );
    match r.mode {
        Some(WriteMode::Legacy) => {
            assert_eq!(in_config, 1, "one password, for DOMAIN's host only");
        }
        _ => assert_eq!(in_config, 0, "hosts mode puts no password into config.toml"),
    }
    // Managed files: only hosts.toml `[host."…".header] Authorization`, base64, in 0600 files.
    for f in &r.files {
        let t = String::from_utf8_lossy(&f.contents).into_owned();
        assert!(
            !t.contains(pw),
            "{} holds the clear password",
            f.path.display()
        );
        if !f.path.ends_with("hosts.toml") {
            assert!(!t.contains(&token), "{} holds the token", f.path.display());
            continue;
        }
        let values = strings(&t);
        let mut n = 0;
        for (path, v) in &values {
            if v.contains(&token) {
                assert!(
                    path.len() == 4
                        && path[0] == "host"
                        && path[2] == "header"
                        && path[3] == "Authorization",
                    "token at {path:?}"
                );
                assert_eq!(*v, format!("Basic {token}"));
                n += 1;
            }
        }
        assert_eq!(
            t.matches(&token).count(),
            n,
            "{}: token outside the header",
            f.path.display()
        );
        let hosts = values
            .iter()
            .filter(|(p, _)| {
                p.len() == 4 && p[0] == "host" && p[2] == "capabilities" && p[3] == "[0]"
            })
            .filter(|(p, _)| {
                let domain = format!("://{}", spec.domain);
                p[1].contains(&format!("{domain}/")) || p[1].ends_with(&domain)
            })
            .count();
        assert_eq!(
            n,
            hosts,
            "{}: one Authorization header per DOMAIN host, none for others",
            f.path.display()
        );
        if n > 0 {
            assert_eq!(f.mode, 0o600, "{} holds credentials", f.path.display());
        }
    }
}

#[test]
fn legacy_v1_without_version() {
    let config = read_repo("tests/fixtures/configs/v1-no-version.toml");
    let (r, out) = golden(&config, &spec_with(SEED_MIRRORS, &[]), Mode::Auto);
    assert_eq!(r.mode, Some(WriteMode::Legacy));
    assert!(
        r.config
            .contains("[plugins.cri.registry.mirrors.\"docker.io\"]")
    );
    insta::assert_snapshot!("legacy_v1", out);
}

#[test]
fn legacy_v2_seed_example() {
    let (r, out) = golden(&seed_config(), &seed_spec(), Mode::Auto);
    assert_eq!(r.mode, Some(WriteMode::Legacy));
    assert!(r.files.is_empty());
    // The seed doc's endpoint form (no /v2) would 404; the rendered one must spell /v2/<prefix>.
    assert!(
        r.config
            .contains("endpoint = [\"https://harbor.example.org/v2/airgap-images/docker.io\"]")
    );
    insta::assert_snapshot!("legacy_v2_seed", out);
}

#[test]
fn legacy_v2_into_containerd_16_default() {
    // `containerd config default` holds empty mirrors/configs tables and config_path = "".
    let config = read_repo("tests/fixtures/configs/containerd-1.6-default.toml");
    let (r, out) = golden(&config, &spec_with(SEED_MIRRORS, &[]), Mode::Auto);
    assert_eq!(r.mode, Some(WriteMode::Legacy));
    insta::assert_snapshot!("legacy_v2_containerd_16_default", out);
}

#[test]
fn hosts_mode_on_v2_seed() {
    let (r, out) = golden(&seed_config(), &seed_spec(), Mode::Hosts);
    assert_eq!(r.mode, Some(WriteMode::Hosts));
    assert_eq!(r.files.len(), seed_spec().mirrors.len());
    for f in &r.files {
        assert!(f.path.starts_with(CERTS));
        assert_eq!(f.mode, 0o644);
    }
    insta::assert_snapshot!("hosts_v2_seed", out);
}

#[test]
fn hosts_mode_auto_on_version_3() {
    let config = read_repo("examples/hosts/config.toml");
    let (r, out) = golden(&config, &spec_with(SEED_MIRRORS, &[]), Mode::Auto);
    assert_eq!(r.mode, Some(WriteMode::Hosts));
    assert!(
        r.config
            .contains("[plugins.\"io.containerd.cri.v1.images\".registry]")
    );
    insta::assert_snapshot!("hosts_v3_auto", out);
}

#[test]
fn hosts_mode_auto_on_containerd_2_default() {
    // config_path = '' exists (literal string): replaced, and restored on revert.
    let config = read_repo("tests/fixtures/configs/containerd-2.0-v3.toml");
    let (r, out) = golden(&config, &spec_with(SEED_MIRRORS, &[]), Mode::Auto);
    assert_eq!(r.mode, Some(WriteMode::Hosts));
    assert_eq!(r.ownership.values.len(), 1);
    assert!(r.ownership.values[0].previous.is_some());
    insta::assert_snapshot!("hosts_v3_containerd_20_default", out);
}

#[test]
fn credentials_legacy() {
    let (r, out) = golden(&seed_config(), &auth_spec(), Mode::Auto);
    assert_eq!(r.mode, Some(WriteMode::Legacy));
    assert!(
        r.config
            .contains("password = \"example-password-do-not-use\"")
    );
    insta::assert_snapshot!("credentials_legacy", out);
}

#[test]
fn credentials_hosts() {
    let (r, out) = golden(&seed_config(), &auth_spec(), Mode::Hosts);
    assert!(!r.config.contains("example-password-do-not-use"));
    insta::assert_snapshot!("credentials_hosts", out);
}

#[test]
fn credentials_with_a_password_that_needs_escaping() {
    // Quotes, backslashes and '#' must stay inside the TOML string.
    let pw = r#"p"a\ss#wo'rd"#;
    let spec = spec_with(SEED_MIRRORS, &[("USERNAME", "robot$ci"), ("PASSWORD", pw)]);
    for mode in [Mode::Legacy, Mode::Hosts] {
        let r = render(
            &seed_config(),
            &ConfigOwnership::default(),
            Some(&spec),
            mode,
        )
        .unwrap();
        let doc: toml_edit::DocumentMut = r.config.parse().unwrap();
        if mode == Mode::Legacy {
            let got = doc["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["configs"]
                ["harbor.example.org"]["auth"]["password"]
                .as_str();
            assert_eq!(got, Some(pw));
        } else {
            for f in &r.files {
                let h: toml_edit::DocumentMut = String::from_utf8(f.contents.clone())
                    .unwrap()
                    .parse()
                    .unwrap();
                let host = h["host"].as_table().unwrap().iter().next().unwrap().1;
                let v = host["header"]["Authorization"].as_str().unwrap();
                assert_eq!(
                    v,
                    format!("Basic {}", spec.credentials.as_ref().unwrap().basic_token())
                );
            }
        }
    }
    let (_, out) = golden(&seed_config(), &spec, Mode::Legacy);
    insta::assert_snapshot!("credentials_escaping_legacy", out);
}

#[test]
fn a_password_everywhere_checked() {
    // The same checks on a spec with credentials, a CA and INSECURE together, both modes.
    let spec = spec_with(
        &format!("{SEED_MIRRORS},*::mirror2.example:5000/all,quay.io::"),
        &[
            ("USERNAME", "u"),
            ("PASSWORD", PASSWORD),
            ("CA_CERT", &ca_pem()),
            ("INSECURE", "true"),
        ],
    );
    for mode in [Mode::Legacy, Mode::Hosts] {
        golden(&seed_config(), &spec, mode);
    }
}

#[test]
fn ca_cert_legacy() {
    let spec = spec_with(SEED_MIRRORS, &[("CA_CERT", &ca_pem())]);
    let (r, out) = golden(&seed_config(), &spec, Mode::Auto);
    let ca = &r.files[0];
    assert_eq!(
        ca.path.to_str(),
        Some("/etc/containerd/certs.d/harbor.example.org/ca.crt")
    );
    assert_eq!(String::from_utf8_lossy(&ca.contents), ca_pem());
    insta::assert_snapshot!("ca_cert_legacy", out);
}

#[test]
fn ca_cert_hosts() {
    let spec = spec_with(SEED_MIRRORS, &[("CA_CERT", &ca_pem())]);
    let (_, out) = golden(&seed_config(), &spec, Mode::Hosts);
    insta::assert_snapshot!("ca_cert_hosts", out);
}

#[test]
fn insecure_legacy() {
    let spec = spec_with(SEED_MIRRORS, &[("INSECURE", "true")]);
    let (r, out) = golden(&seed_config(), &spec, Mode::Auto);
    // Two endpoints: https without verification first, then plain http.
    assert!(r.config.contains(
        "endpoint = [\"https://harbor.example.org/v2/airgap-images/docker.io\", \"http://harbor.example.org/v2/airgap-images/docker.io\"]"
    ));
    assert!(r.config.contains("insecure_skip_verify = true"));
    insta::assert_snapshot!("insecure_legacy", out);
}

#[test]
fn insecure_hosts() {
    let spec = spec_with(SEED_MIRRORS, &[("INSECURE", "true")]);
    let (r, out) = golden(&seed_config(), &spec, Mode::Hosts);
    let docker = String::from_utf8_lossy(&r.files[0].contents).into_owned();
    let https = docker.find("[host.\"https://").unwrap();
    let http = docker.find("[host.\"http://").unwrap();
    assert!(https < http, "https (skip_verify) must come before http");
    assert_eq!(docker.matches("skip_verify = true").count(), 1);
    insta::assert_snapshot!("insecure_hosts", out);
}

#[test]
fn wildcard_legacy() {
    let spec = spec_with(
        "docker.io::harbor.example.org/airgap-images/docker.io,*::harbor.example.org/airgap-images/all",
        &[],
    );
    let (r, out) = golden(&seed_config(), &spec, Mode::Auto);
    assert!(
        r.config
            .contains("[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"*\"]")
    );
    insta::assert_snapshot!("wildcard_legacy", out);
}

#[test]
fn wildcard_hosts() {
    let spec = spec_with("default::harbor.example.org/airgap-images/all", &[]);
    let (r, out) = golden(&seed_config(), &spec, Mode::Hosts);
    assert_eq!(
        r.files[0].path.to_str(),
        Some("/etc/containerd/certs.d/_default/hosts.toml")
    );
    // `_default` has no upstream of its own: no `server` line.
    assert!(!String::from_utf8_lossy(&r.files[0].contents).contains("server ="));
    insta::assert_snapshot!("wildcard_hosts", out);
}

#[test]
fn empty_target_legacy() {
    let spec = spec_with(
        "docker.io::harbor.example.org/airgap-images/docker.io,quay.io::",
        &[],
    );
    let (r, out) = golden(&seed_config(), &spec, Mode::Auto);
    assert!(r.config.contains(
        "[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"quay.io\"]\nendpoint = []"
    ));
    insta::assert_snapshot!("empty_target_legacy", out);
}

#[test]
fn empty_target_hosts() {
    let spec = spec_with(
        "docker.io::harbor.example.org/airgap-images/docker.io,quay.io::",
        &[],
    );
    let (r, out) = golden(&seed_config(), &spec, Mode::Hosts);
    let quay = r
        .files
        .iter()
        .find(|f| f.path.ends_with("quay.io/hosts.toml"))
        .unwrap();
    let t = String::from_utf8_lossy(&quay.contents);
    assert!(t.contains("server = \"https://quay.io\"") && !t.contains("[host."));
    insta::assert_snapshot!("empty_target_hosts", out);
}

#[test]
fn ports_and_ip_literals() {
    let spec = spec_with(
        "registry.corp.example:5000::[fd00::2]:8443/mirror,10.0.0.1:5000::http://10.0.0.2:5000",
        &[("USERNAME", "u"), ("PASSWORD", PASSWORD)],
    );
    let (_, legacy) = golden(&seed_config(), &spec, Mode::Legacy);
    let (_, hosts) = golden(&seed_config(), &spec, Mode::Hosts);
    insta::assert_snapshot!("ports_and_ip_literals", format!("{legacy}\n{hosts}"));
}

#[test]
fn secret_data_and_string_data_agree() {
    // The same Secret as base64 `data` renders the same as `stringData`.
    let pairs = {
        let mut p = base_pairs(SEED_MIRRORS);
        set(&mut p, "USERNAME", "u");
        set(&mut p, "PASSWORD", PASSWORD);
        p
    };
    use base64::Engine;
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: registry-info\n  namespace: jet-system\ndata:\n",
    );
    for (k, v) in &pairs {
        yaml.push_str(&format!(
            "  {k}: {}\n",
            base64::engine::general_purpose::STANDARD.encode(v)
        ));
    }
    let from_data =
        parse_spec(&secret_data_from_manifest(&yaml, "registry-info", Some("jet-system")).unwrap())
            .unwrap();
    assert_eq!(from_data, parse_spec(&data_of(&pairs)).unwrap());
}

/// The pure render for a known containerd version.
fn render_for(config: &str, spec: &RegistrySpec, mode: Mode, containerd: &str) -> Rendered {
    regmirror::render::render(&regmirror::render::RenderInput {
        config,
        prior: &ConfigOwnership::default(),
        spec: Some(spec),
        mode,
        certs_dir: std::path::Path::new(CERTS),
        containerd: Some(containerd.parse().unwrap()),
        hosts: Default::default(),
    })
    .unwrap_or_else(|e| panic!("render refused: {e}"))
}

#[test]
fn containerd_2x_gets_hosts_mode_in_the_table_it_reads() {
    // A version 2 file on 2.x: hosts mode in the v2 table (2.x migrates it), never legacy
    // `configs.*.tls`, which 2.x drops.
    let spec = spec_with(SEED_MIRRORS, &[("CA_CERT", &ca_pem())]);
    let r = render_for(&seed_config(), &spec, Mode::Auto, "2.1.9");
    assert_eq!(r.mode, Some(WriteMode::Hosts));
    assert!(
        r.config
            .contains("[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path"),
        "{}",
        r.config
    );
    assert!(!r.config.contains("tls"), "{}", r.config);
    // The same file on 1.7: legacy, as before.
    let r = render_for(&seed_config(), &spec, Mode::Auto, "1.7.24");
    assert_eq!(r.mode, Some(WriteMode::Legacy));
    // A version 1 file on 2.x: the full plugin id (2.x ignores `plugins.cri` there).
    let v1 = "[plugins.cri.containerd]\n  snapshotter = \"overlayfs\"\n";
    let r = render_for(v1, &seed_spec(), Mode::Auto, "2.1.9");
    assert!(
        r.config
            .contains("[plugins.\"io.containerd.cri.v1.images\".registry]"),
        "{}",
        r.config
    );
    let back = render(&r.config, &r.ownership, None, Mode::Auto).unwrap();
    assert_eq!(back.config, v1);
}

#[test]
fn v2_api_root_in_targets_renders_identically() {
    let with = spec_with(
        "docker.io::harbor.example.org/v2/airgap-images/docker.io,registry.k8s.io::harbor.example.org/v2/airgap-images/k8s.io",
        &[],
    );
    let without = spec_with(SEED_MIRRORS, &[]);
    assert_eq!(with, without);
    for mode in [Mode::Legacy, Mode::Hosts] {
        let (a, _) = golden(&seed_config(), &with, mode);
        let (b, _) = golden(&seed_config(), &without, mode);
        assert_eq!(a, b, "{mode:?}");
        assert!(!dump(&a).contains("/v2/v2"), "{}", dump(&a));
    }
}

#[test]
fn crlf_file_gets_crlf_lines() {
    let crlf = seed_config().replace('\n', "\r\n");
    for mode in [Mode::Legacy, Mode::Hosts] {
        let (r, _) = golden(&crlf, &auth_spec(), mode);
        assert!(
            !r.config.replace("\r\n", "").contains('\n'),
            "LF-only lines added ({mode:?}): {:?}",
            r.config
        );
        // Applying again over the written file changes nothing.
        let again = render(&r.config, &r.ownership, Some(&auth_spec()), mode).unwrap();
        assert_eq!(again.config, r.config);
    }
}
