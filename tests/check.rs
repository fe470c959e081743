//! `regmirror check` against REAL `docker-registry` (distribution 2.8) instances on 127.0.0.1:
//! plain http, TLS with a private CA (openssl), htpasswd Basic auth, Bearer token auth (the
//! registry's own `auth.token`, with a tiny token issuer in this file: distribution ships no
//! token server), a wrong password, a wrong CA, an image that exists and one that does not, a
//! mirror that accepts connections and never answers, and `--from-disk` after a real `apply`.
//! Every run is the real binary with `-o json`; the password is never in any output.
//!
//! Needs `docker-registry skopeo umoci apache2-utils openssl` (no root, no containerd); without
//! them each test prints `skipped: …` (or panics when `REGMIRROR_E2E=1`).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cli::{BIN, Secret};
use support::registry::{self, Kind, Registry};

const REPO: &str = "airgap-images/docker.io/library/tiny";
const MANIFEST_PATH: &str = "/v2/airgap-images/docker.io/library/tiny/manifests/1";

const NEEDED: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("htpasswd", "apache2-utils"),
    ("openssl", "openssl"),
];

fn ready(test: &str) -> bool {
    let problems: Vec<String> = support::missing_binaries(NEEDED.iter().copied())
        .into_iter()
        .collect();
    support::prerequisites_verdict(test, "check", &problems)
}

macro_rules! check_test {
    ($name:expr) => {
        skip_unless!(ready($name), "check", $name)
    };
}

/// One `regmirror check … -o json` run.
struct Run {
    code: i32,
    json: Value,
    stdout: String,
    stderr: String,
    took: Duration,
}

fn check(args: &[&str]) -> Run {
    let started = Instant::now();
    let out = Command::new(BIN)
        .arg("check")
        .args(args)
        .args(["-o", "json"])
        .env_remove("REGMIRROR_STRICT_AIRGAP")
        .stdin(Stdio::null())
        .output()
        .expect("run regmirror check");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    eprintln!(
        "check {args:?}: exit {:?} in {took:.2?}\n{stdout}{stderr}",
        out.status.code()
    );
    for secret in [registry::PASSWORD, "wrong-pass", "eyJ"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a secret ({secret:?}) is in the output"
        );
    }
    Run {
        code: out.status.code().unwrap_or(-1),
        json,
        stdout,
        stderr,
        took,
    }
}

fn secret_file(dir: &Path, s: &Secret) -> PathBuf {
    let p = dir.join("secret.yaml");
    std::fs::write(&p, s.manifest()).unwrap();
    p
}

fn endpoint(r: &Run, i: usize) -> &Value {
    &r.json["endpoints"][i]
}

/// The mirror, `docker.io::<scheme><host>/airgap-images/docker.io`.
fn mirrors(scheme: &str, host: &str) -> String {
    format!("docker.io::{scheme}{host}/airgap-images/docker.io")
}

#[test]
fn plain_http_image_present_and_missing() {
    check_test!("plain_http_image_present_and_missing");
    let reg = Registry::start(Kind::Plain);
    reg.push_tiny(REPO);
    let dir = support::temp_dir("check");
    let f = secret_file(
        dir.path(),
        &Secret::new(&reg.host(), &mirrors("http://", &reg.host())),
    );
    let f = f.to_str().unwrap();
    let mark = reg.mark();
    let r = check(&["--secret-file", f, "--image", "tiny:1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json["schema"], "regmirror.check/v1");
    let e = endpoint(&r, 0);
    assert_eq!(
        e["url"],
        format!("http://{}/v2/airgap-images/docker.io", reg.host())
    );
    assert_eq!(e["reachable"], true);
    assert_eq!(e["tls_ok"], Value::Null);
    assert_eq!(e["auth_ok"], true);
    assert!(e["latency_ms"].as_u64().is_some());
    let img = &r.json["images"][0];
    let want = format!("http://{}{MANIFEST_PATH}", reg.host());
    assert_eq!(img["served_by"], want.as_str());
    assert_eq!(img["falls_back_to_upstream"], false);
    assert_eq!(img["attempts"][0]["outcome"], "served");
    assert!(
        img["attempts"][0]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(img["attempts"][1]["outcome"], "not_tried");
    // The registry saw exactly the URL containerd would request.
    let hits = reg.hits(mark, MANIFEST_PATH);
    assert!(
        hits.iter().any(|h| h.method == "HEAD" && h.status == 200),
        "{}",
        reg.log_since(mark)
    );

    // The library call the agent makes.
    let data = [
        ("DOMAIN", reg.host()),
        ("BASE_PATH", "airgap-images".into()),
        ("INSECURE", "false".into()),
        ("MIRROR_REGISTRIES", mirrors("http://", &reg.host())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_bytes()))
    .collect();
    let spec = regmirror::spec::parse_spec(&data).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reports = rt
        .block_on(regmirror::check::probe_spec(&spec, Duration::from_secs(5)))
        .unwrap();
    assert_eq!(reports.len(), 1);
    assert!(reports[0].ok(), "{:?}", reports[0]);

    // An image the mirror lacks: containerd would fall back to the upstream.
    let r = check(&[
        "--secret-file",
        f,
        "--image",
        "tiny:1",
        "--image",
        "tiny:nope",
    ]);
    assert_eq!(r.code, 1);
    assert_eq!(r.json["images"][0]["ok"], true);
    let img = &r.json["images"][1];
    assert_eq!(img["ok"], false);
    assert_eq!(img["served_by"], Value::Null);
    assert_eq!(img["attempts"][0]["outcome"], "missing");
    assert_eq!(img["attempts"][0]["status"], 404);
    assert_eq!(img["falls_back_to_upstream"], true);
    assert_eq!(
        img["upstream"],
        "https://registry-1.docker.io/v2/library/tiny/manifests/nope"
    );
    // Strict air-gap: nothing follows the mirror.
    let r = check(&[
        "--secret-file",
        f,
        "--image",
        "tiny:nope",
        "--strict-airgap",
    ]);
    assert_eq!(r.code, 1);
    assert_eq!(r.json["images"][0]["falls_back_to_upstream"], false);
    assert_eq!(r.json["images"][0]["upstream"], Value::Null);
    // Text output says the same.
    let out = Command::new(BIN)
        .args([
            "check",
            "--secret-file",
            f,
            "--image",
            "tiny:1",
            "--image",
            "tiny:nope",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("text output:\n{text}");
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("falls back to the upstream"), "{text}");
}

#[test]
fn tls_private_ca_ok_wrong_ca_and_no_ca_fail() {
    check_test!("tls_private_ca_ok_wrong_ca_and_no_ca_fail");
    let reg = Registry::start(Kind::Tls);
    reg.push_tiny(REPO);
    let dir = support::temp_dir("check");
    let tls = reg.tls.as_ref().unwrap();
    let mut s = Secret::new(&reg.host(), &mirrors("", &reg.host()));
    s.ca_cert = tls.ca_pem();
    let f = secret_file(dir.path(), &s);
    let r = check(&["--secret-file", f.to_str().unwrap(), "--image", "tiny:1"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let e = endpoint(&r, 0);
    assert_eq!(
        (e["tls_ok"].clone(), e["auth_ok"].clone()),
        (true.into(), true.into())
    );
    assert_eq!(e["ca"], true);
    assert_eq!(r.json["images"][0]["ok"], true);

    // Another CA: TLS fails, named as an unknown CA.
    let other = support::tls::ca_signed(&dir.path().join("other"));
    s.ca_cert = other.ca_pem();
    let f = secret_file(dir.path(), &s);
    let r = check(&["--secret-file", f.to_str().unwrap(), "--image", "tiny:1"]);
    assert_eq!(r.code, 1);
    let e = endpoint(&r, 0);
    assert_eq!(e["reachable"], true);
    assert_eq!(e["tls_ok"], false);
    assert!(e["error"].as_str().unwrap().contains("unknown CA"), "{e}");
    assert_eq!(r.json["images"][0]["attempts"][0]["outcome"], "failed");
    assert_eq!(r.json["images"][0]["falls_back_to_upstream"], true);

    // No CA_CERT: the system roots do not know the test CA either.
    s.ca_cert = String::new();
    let f = secret_file(dir.path(), &s);
    let r = check(&["--secret-file", f.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        endpoint(&r, 0)["error"]
            .as_str()
            .unwrap()
            .contains("unknown CA")
    );

    // INSECURE=true: https without verification first, and it answers.
    s.insecure = true;
    let f = secret_file(dir.path(), &s);
    let r = check(&["--secret-file", f.to_str().unwrap(), "--image", "tiny:1"]);
    let e = endpoint(&r, 0);
    assert_eq!(
        (e["skip_verify"].clone(), e["tls_ok"].clone()),
        (true.into(), true.into())
    );
    assert_eq!(r.json["images"][0]["attempts"][0]["outcome"], "served");
    // … and the http fallback endpoint is checked too: this port speaks https only.
    let e1 = endpoint(&r, 1);
    assert!(e1["url"].as_str().unwrap().starts_with("http://"));
    assert!(
        e1["error"].as_str().unwrap().contains("speaks https"),
        "{e1}"
    );
    assert_eq!(r.code, 1);
}

#[test]
fn htpasswd_basic_auth_right_and_wrong_password() {
    check_test!("htpasswd_basic_auth_right_and_wrong_password");
    let reg = Registry::start(Kind::TlsAuth);
    reg.push_tiny(REPO);
    let dir = support::temp_dir("check");
    let tls = reg.tls.as_ref().unwrap();
    let mut s = Secret::new(&reg.host(), &mirrors("", &reg.host()));
    s.ca_cert = tls.ca_pem();
    s.username = registry::USER.into();
    s.password = registry::PASSWORD.into();
    let f = secret_file(dir.path(), &s);
    let r = check(&["--secret-file", f.to_str().unwrap(), "--image", "tiny:1"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let e = endpoint(&r, 0);
    assert_eq!(e["auth_ok"], true);
    assert_eq!(e["credentials"], true);
    assert!(r.json["images"][0]["served_by"].as_str().is_some());

    s.password = "wrong-pass".into();
    let f = secret_file(dir.path(), &s);
    let r = check(&["--secret-file", f.to_str().unwrap(), "--image", "tiny:1"]);
    assert_eq!(r.code, 1);
    let e = endpoint(&r, 0);
    assert_eq!(
        (e["reachable"].clone(), e["tls_ok"].clone()),
        (true.into(), true.into())
    );
    assert_eq!(e["auth_ok"], false);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("authentication failed"),
        "{e}"
    );
    let a = &r.json["images"][0]["attempts"][0];
    assert_eq!(a["outcome"], "failed");
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("authentication failed")
    );

    // Credentials go to DOMAIN's host only: a mirror on another name for the same registry
    // gets none, and check says so.
    s.password = registry::PASSWORD.into();
    s.domain = "harbor.example.org".into();
    let f = secret_file(dir.path(), &s);
    let r = check(&["--secret-file", f.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    let e = endpoint(&r, 0);
    assert_eq!(e["credentials"], false);
    assert!(
        e["error"].as_str().unwrap().contains("none are configured"),
        "{e}"
    );
}

/// A token issuer for distribution's `auth.token`: RS256 JWTs with the signing certificate in
/// `x5c` (the registry trusts it through `rootcertbundle`), signed by `openssl dgst`. Grants
/// every requested action to USER / PASSWORD, answers 401 to anything else.
struct TokenServer {
    port: u16,
    dir: PathBuf,
}

fn b64url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl TokenServer {
    fn start(dir: &Path) -> TokenServer {
        let run = |args: &[&str]| {
            support::run(Command::new("openssl").current_dir(dir).args(args));
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "token.key",
            "-out",
            "token.crt",
            "-days",
            "2",
            "-subj",
            "/CN=regmirror token issuer",
        ]);
        run(&[
            "x509",
            "-in",
            "token.crt",
            "-outform",
            "DER",
            "-out",
            "token.der",
        ]);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let d = dir.to_path_buf();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = serve_token(conn, &d);
            }
        });
        TokenServer {
            port,
            dir: dir.to_path_buf(),
        }
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

fn query_values(query: &str, key: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| {
            let mut out = Vec::new();
            let b = v.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' && i + 2 < b.len() {
                    out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap_or(b'?'));
                    i += 3;
                } else {
                    out.push(if b[i] == b'+' { b' ' } else { b[i] });
                    i += 1;
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        })
        .collect()
}

fn serve_token(conn: TcpStream, dir: &Path) -> std::io::Result<()> {
    use base64::Engine;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut auth = None;
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l)? == 0 || l == "\r\n" {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            auth = Some(v.trim().to_string());
        }
    }
    let target = first.split(' ').nth(1).unwrap_or("/");
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            registry::USER,
            registry::PASSWORD
        ))
    );
    let mut conn = conn;
    if auth.as_deref() != Some(want.as_str()) {
        let body = r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#;
        write!(
            conn,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return Ok(());
    }
    let access: Vec<Value> = query_values(query, "scope")
        .iter()
        .filter_map(|s| {
            let mut p = s.splitn(3, ':');
            let (t, name, actions) = (p.next()?, p.next()?, p.next()?);
            Some(serde_json::json!({"type": t, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let der = std::fs::read(dir.join("token.der"))?;
    let header = serde_json::json!({
        "alg": "RS256", "typ": "JWT",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(der)],
    });
    let claims = serde_json::json!({
        "iss": "regmirror-issuer", "sub": registry::USER, "aud": "regmirror-registry",
        "exp": now + 300, "nbf": now - 30, "iat": now - 30, "jti": format!("{now}-{}", rand_id()),
        "access": access,
    });
    let signing = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let id = rand_id();
    let input = dir.join(format!("in.{id}"));
    let sig = dir.join(format!("sig.{id}"));
    std::fs::write(&input, &signing)?;
    let ok = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(dir.join("token.key"))
        .arg("-out")
        .arg(&sig)
        .arg(&input)
        .status()?
        .success();
    assert!(ok, "openssl dgst -sign failed");
    let jwt = format!("{signing}.{}", b64url(&std::fs::read(&sig)?));
    let body = serde_json::json!({"token": jwt, "expires_in": 300}).to_string();
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A docker-registry with `auth.token` (plain http, so the test needs no TLS here).
fn token_registry(dir: &Path, tokens: &TokenServer) -> (support::ChildGuard, u16) {
    let port = support::free_port();
    let cfg = dir.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n\
             auth:\n  token:\n    realm: {}\n    service: regmirror-registry\n    \
             issuer: regmirror-issuer\n    rootcertbundle: {}\n",
            dir.join("data").display(),
            tokens.realm(),
            tokens.dir.join("token.crt").display()
        ),
    )
    .unwrap();
    let err = dir.join("registry.err");
    let mut cmd = Command::new("docker-registry");
    cmd.arg("serve").arg(&cfg);
    let mut proc = support::ChildGuard::spawn(
        "docker-registry",
        cmd,
        dir.join("registry.out"),
        err.clone(),
    );
    let up = support::poll(Duration::from_secs(15), || {
        if proc.exited().is_some() {
            return Some(false);
        }
        let listening = std::fs::read_to_string(&err).is_ok_and(|t| t.contains("listening on"));
        (listening && support::tcp_open(port)).then_some(true)
    });
    assert_eq!(
        up,
        Some(true),
        "token registry did not start:\n{}",
        support::tail(&err, 20)
    );
    (proc, port)
}

#[test]
fn bearer_token_auth_against_docker_registry() {
    check_test!("bearer_token_auth_against_docker_registry");
    let dir = support::temp_dir("check-bearer");
    let tokens = TokenServer::start(dir.path());
    let (_reg, port) = token_registry(dir.path(), &tokens);
    let host = format!("127.0.0.1:{port}");
    // Seed through the same token flow (skopeo fetches a push token with the credentials).
    let layout = support::image::layout();
    support::run(
        Command::new("skopeo")
            .args([
                "copy",
                "--insecure-policy",
                "--dest-tls-verify=false",
                "--dest-creds",
            ])
            .arg(format!("{}:{}", registry::USER, registry::PASSWORD))
            .arg(format!("oci:{}:1", layout.display()))
            .arg(format!("docker://{host}/{REPO}:1")),
    );
    let mut s = Secret::new(&host, &mirrors("http://", &host));
    s.username = registry::USER.into();
    s.password = registry::PASSWORD.into();
    let f = secret_file(dir.path(), &s);
    let r = check(&[
        "--secret-file",
        f.to_str().unwrap(),
        "--image",
        "tiny:1",
        "--image",
        "tiny:nope",
    ]);
    let e = endpoint(&r, 0);
    assert_eq!(e["auth"], "bearer", "{e}");
    assert_eq!(e["auth_ok"], true, "{e}");
    let i = &r.json["images"];
    assert_eq!(i[0]["attempts"][0]["outcome"], "served", "{i}");
    assert_eq!(i[1]["attempts"][0]["outcome"], "missing", "{i}");
    assert_eq!(r.code, 1);

    s.password = "wrong-pass".into();
    let f = secret_file(dir.path(), &s);
    let r = check(&["--secret-file", f.to_str().unwrap(), "--image", "tiny:1"]);
    assert_eq!(r.code, 1);
    let e = endpoint(&r, 0);
    assert_eq!(e["auth_ok"], false);
    assert!(e["error"].as_str().unwrap().contains("token server"), "{e}");
    assert_eq!(r.json["images"][0]["falls_back_to_upstream"], true);
}

/// A mirror that accepts connections and never answers.
fn hanging_listener() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().flatten() {
            held.push(c);
        }
    });
    port
}

#[test]
fn hanging_mirror_is_bounded_by_the_timeout() {
    check_test!("hanging_mirror_is_bounded_by_the_timeout");
    let dir = support::temp_dir("check");
    let http = hanging_listener();
    let https = hanging_listener();
    let m = format!(
        "docker.io::http://127.0.0.1:{http}/airgap-images/docker.io,quay.io::https://127.0.0.1:{https}/airgap-images/quay.io"
    );
    let f = secret_file(dir.path(), &Secret::new("127.0.0.1", &m));
    let r = check(&[
        "--secret-file",
        f.to_str().unwrap(),
        "--timeout",
        "2s",
        "--image",
        "tiny:1",
        "--image",
        "quay.io/e2e/tiny:1",
    ]);
    assert_eq!(r.code, 1);
    // Endpoints and images are probed at once: the whole check takes about one timeout.
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);
    let by_port = |p: u16| {
        r.json["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["host"] == format!("127.0.0.1:{p}"))
            .unwrap()
            .clone()
    };
    let e = by_port(http);
    assert_eq!(e["reachable"], true);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("no answer within 2 s"),
        "{e}"
    );
    let e = by_port(https);
    assert_eq!(e["tls_ok"], false);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("TLS handshake did not finish within 2 s"),
        "{e}"
    );
    for i in r.json["images"].as_array().unwrap() {
        assert_eq!(i["attempts"][0]["outcome"], "failed");
        assert_eq!(i["falls_back_to_upstream"], true);
    }
    // Nothing listening at all: refused at once.
    let closed = support::free_port();
    let f = secret_file(
        dir.path(),
        &Secret::new(
            "127.0.0.1",
            &format!("docker.io::http://127.0.0.1:{closed}"),
        ),
    );
    let r = check(&["--secret-file", f.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert_eq!(endpoint(&r, 0)["reachable"], false);
    assert!(r.took < Duration::from_secs(2), "took {:?}", r.took);
}

#[test]
fn from_disk_after_apply_and_bad_input() {
    check_test!("from_disk_after_apply_and_bad_input");
    let reg = Registry::start(Kind::TlsAuth);
    reg.push_tiny(REPO);
    let dir = support::temp_dir("check");
    let d = dir.path();
    let mut s = Secret::new(&reg.host(), &mirrors("", &reg.host()));
    s.ca_cert = reg.tls.as_ref().unwrap().ca_pem();
    s.username = registry::USER.into();
    s.password = registry::PASSWORD.into();
    let f = secret_file(d, &s);
    let config = d.join("config.toml");
    std::fs::write(&config, "version = 3\n").unwrap();
    let certs = d.join("certs.d");
    let state = d.join("state");
    let paths = [
        "--config",
        config.to_str().unwrap(),
        "--certs-dir",
        certs.to_str().unwrap(),
        "--containerd-version",
        "2.1.9",
    ];
    let out = Command::new(BIN)
        .args([
            "apply",
            "--secret-file",
            f.to_str().unwrap(),
            "--reload",
            "none",
        ])
        .args(["--state-dir", state.to_str().unwrap()])
        .args(paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut args = vec!["--from-disk", "--image", "tiny:1"];
    args.extend(paths);
    let r = check(&args);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json["source"]["kind"], "disk");
    let e = endpoint(&r, 0);
    assert_eq!(
        e["auth"], "header",
        "hosts.toml's Authorization header is sent: {e}"
    );
    assert_eq!(
        (e["tls_ok"].clone(), e["auth_ok"].clone()),
        (true.into(), true.into())
    );
    assert_eq!(e["registries"], serde_json::json!(["docker.io"]));
    assert_eq!(r.json["images"][0]["ok"], true);

    // Bad input: exit 2.
    let r = check(&["--secret-file", "/nonexistent/secret.yaml"]);
    assert_eq!(r.code, 2);
    let mut args = vec!["--from-disk", "--image", "bad ref"];
    args.extend(paths);
    assert_eq!(check(&args).code, 2);
    assert_eq!(check(&["--from-disk", "--secret-file", "x"]).code, 2);
}
