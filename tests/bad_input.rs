//! The bad-input matrix: every way the Secret, the config.toml, the state or the file system can
//! be wrong. Each case runs the real binary (`regmirror apply`) in a temp dir and checks:
//! - exit code 2;
//! - stderr names what is wrong (the key or field, and the value or the rule);
//! - stderr never holds the PASSWORD value (nor its Basic token);
//! - every byte under the temp dir (config.toml, certs dir, state dir, the Secret) is unchanged:
//!   paths, types, modes and contents.
//!
//! The table (case, expected fragment, result) is printed and written to
//! `target/bad_input_table.md` for RELIABILITY.md.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use common::{base_pairs, ca_pem, manifest, read_repo, run, set, tree, tree_diff};

const PASSWORD: &str = "Tr0ub4dor&3-hunter2";
const USERNAME: &str = "robot$mirror";

/// A throwaway Ed25519 private key (made for this test with `openssl genpkey`): a PEM block that
/// is not a certificate.
const PRIVATE_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBhEGcm8GCcNa5sSf+Z+f9y0mkrHj3bK/t6J++G/U6EI\n-----END PRIVATE KEY-----\n";

/// The files of one case.
struct Env {
    root: PathBuf,
    secret: PathBuf,
    config: PathBuf,
    certs: PathBuf,
    state: PathBuf,
}

/// A file-system change made after the files are written.
type Prepare = Box<dyn Fn(&Env)>;

/// What a case changes before the run.
struct Input {
    pairs: Vec<(String, String)>,
    /// Raw Secret file bytes (instead of a manifest built from `pairs`).
    secret_raw: Option<Vec<u8>>,
    config: Vec<u8>,
    mode: &'static str,
    extra_args: Vec<String>,
    /// File-system changes after the files are written.
    prepare: Vec<Prepare>,
}

struct Case {
    name: &'static str,
    /// Every fragment must appear in stderr.
    expect: &'static [&'static str],
    build: Box<dyn Fn(&mut Input)>,
}

fn case(
    name: &'static str,
    expect: &'static [&'static str],
    build: impl Fn(&mut Input) + 'static,
) -> Case {
    Case {
        name,
        expect,
        build: Box::new(build),
    }
}

fn valid_pairs() -> Vec<(String, String)> {
    let mut p = base_pairs(
        "docker.io::harbor.example.org/airgap-images/docker.io,registry.k8s.io::harbor.example.org/airgap-images/k8s.io,quay.io::",
    );
    set(&mut p, "USERNAME", USERNAME);
    set(&mut p, "PASSWORD", PASSWORD);
    p
}

fn unset(pairs: &mut Vec<(String, String)>, key: &str) {
    pairs.retain(|(k, _)| k != key);
}

/// A manifest with base64 `data` for the given raw values (to carry bytes that are not UTF-8).
fn data_manifest(pairs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut y = String::from(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: registry-info\n  namespace: jet-system\ndata:\n",
    );
    for (k, v) in pairs {
        y.push_str(&format!(
            "  {k}: {}\n",
            base64::engine::general_purpose::STANDARD.encode(v)
        ));
    }
    y.into_bytes()
}

fn with_raw(pairs: &[(String, String)], key: &str, raw: &[u8]) -> Vec<u8> {
    let mut v: Vec<(String, Vec<u8>)> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    for p in v.iter_mut() {
        if p.0 == key {
            p.1 = raw.to_vec();
        }
    }
    data_manifest(&v)
}

fn seed_config() -> Vec<u8> {
    read_repo("examples/containerd/config.toml").into_bytes()
}

fn v3_config() -> Vec<u8> {
    read_repo("tests/fixtures/configs/containerd-2.0-v3.toml").into_bytes()
}

fn admin_config() -> Vec<u8> {
    read_repo("tests/fixtures/configs/admin-mirrors.toml").into_bytes()
}

fn cases() -> Vec<Case> {
    let mib = "a".repeat(1024 * 1024);
    let truncated_cert = {
        let pem = ca_pem();
        let body: Vec<&str> = pem.lines().collect();
        // Header, half of the base64 lines, footer: valid PEM framing, broken DER.
        let mut t = vec![body[0]];
        t.extend(&body[1..body.len() / 2]);
        t.push(body[body.len() - 1]);
        t.join("\n") + "\n"
    };
    let cut_cert = {
        let pem = ca_pem();
        pem[..pem.len() / 2].to_string()
    };
    vec![
        // ---- DOMAIN
        case("DOMAIN missing", &["DOMAIN is missing"], |i| {
            unset(&mut i.pairs, "DOMAIN")
        }),
        case("DOMAIN empty", &["DOMAIN is empty"], |i| {
            set(&mut i.pairs, "DOMAIN", "")
        }),
        case("DOMAIN only spaces", &["DOMAIN is empty"], |i| {
            set(&mut i.pairs, "DOMAIN", "   ")
        }),
        case(
            "DOMAIN with a path",
            &[
                "DOMAIN",
                "harbor.example.org/airgap-images",
                "without a path",
            ],
            |i| set(&mut i.pairs, "DOMAIN", "harbor.example.org/airgap-images"),
        ),
        case(
            "DOMAIN with an empty label",
            &["DOMAIN", "harbor..example.org", "empty label"],
            |i| set(&mut i.pairs, "DOMAIN", "harbor..example.org"),
        ),
        case(
            "DOMAIN with port 0",
            &["DOMAIN", "port 0 is out of range"],
            |i| set(&mut i.pairs, "DOMAIN", "harbor.example.org:0"),
        ),
        case(
            "DOMAIN with a control character",
            &["DOMAIN", "control character"],
            |i| set(&mut i.pairs, "DOMAIN", "harbor\u{7}.example.org"),
        ),
        case(
            "DOMAIN with an unsupported scheme",
            &["DOMAIN", "scheme \"ftp\" is not supported"],
            |i| set(&mut i.pairs, "DOMAIN", "ftp://harbor.example.org"),
        ),
        // ---- BASE_PATH
        case("BASE_PATH missing", &["BASE_PATH is missing"], |i| {
            unset(&mut i.pairs, "BASE_PATH")
        }),
        case(
            "BASE_PATH upper case",
            &["BASE_PATH", "Airgap-Images", "lower-case"],
            |i| set(&mut i.pairs, "BASE_PATH", "Airgap-Images"),
        ),
        case(
            "BASE_PATH starting with v2/",
            &["BASE_PATH", "starts with v2/"],
            |i| set(&mut i.pairs, "BASE_PATH", "v2/airgap-images"),
        ),
        // ---- INSECURE
        case(
            "INSECURE=yes",
            &["INSECURE = \"yes\"", "must be true or false"],
            |i| set(&mut i.pairs, "INSECURE", "yes"),
        ),
        case("INSECURE missing", &["INSECURE is missing"], |i| {
            unset(&mut i.pairs, "INSECURE")
        }),
        case(
            "INSECURE empty",
            &["INSECURE = \"\"", "must be true or false"],
            |i| set(&mut i.pairs, "INSECURE", ""),
        ),
        // ---- USERNAME / PASSWORD
        case(
            "USERNAME without PASSWORD",
            &["PASSWORD", "is empty while USERNAME is set"],
            |i| set(&mut i.pairs, "PASSWORD", ""),
        ),
        case(
            "PASSWORD without USERNAME",
            &["USERNAME", "is empty while PASSWORD is set"],
            |i| set(&mut i.pairs, "USERNAME", ""),
        ),
        case(
            "USERNAME with ':'",
            &["USERNAME", "robot:x", "must not contain ':'"],
            |i| set(&mut i.pairs, "USERNAME", "robot:x"),
        ),
        case(
            "PASSWORD with a newline",
            &["PASSWORD", "control character (value not shown)"],
            |i| set(&mut i.pairs, "PASSWORD", &format!("{PASSWORD}\n{PASSWORD}")),
        ),
        case(
            "PASSWORD of 1 MiB",
            &["PASSWORD is 1048577 bytes long (at most 4096)"],
            |i| {
                set(
                    &mut i.pairs,
                    "PASSWORD",
                    &format!("{PASSWORD}{}", "x".repeat(1024 * 1024 + 1 - PASSWORD.len())),
                )
            },
        ),
        case("PASSWORD not UTF-8", &["PASSWORD is not UTF-8 text"], |i| {
            let mut raw = PASSWORD.as_bytes().to_vec();
            raw.push(0xff);
            i.secret_raw = Some(with_raw(&i.pairs, "PASSWORD", &raw));
        }),
        // ---- CA_CERT
        case(
            "CA_CERT garbage",
            &["CA_CERT", "no PEM certificate found"],
            |i| set(&mut i.pairs, "CA_CERT", "this is not a certificate"),
        ),
        case(
            "CA_CERT a private key",
            &["CA_CERT", "\"PRIVATE KEY\"", "expected CERTIFICATE"],
            |i| set(&mut i.pairs, "CA_CERT", PRIVATE_KEY_PEM),
        ),
        {
            let t = truncated_cert.clone();
            case(
                "CA_CERT truncated DER",
                &["CA_CERT", "certificate 1 does not parse"],
                move |i| set(&mut i.pairs, "CA_CERT", &t),
            )
        },
        {
            let t = cut_cert.clone();
            case(
                "CA_CERT cut off (no END line)",
                &["CA_CERT", "PEM block 1 does not parse"],
                move |i| set(&mut i.pairs, "CA_CERT", &t),
            )
        },
        case(
            "CA_CERT good cert then a key",
            &["CA_CERT", "PEM block 2", "expected CERTIFICATE"],
            |i| {
                set(
                    &mut i.pairs,
                    "CA_CERT",
                    &format!("{}{PRIVATE_KEY_PEM}", ca_pem()),
                )
            },
        ),
        // ---- MIRROR_REGISTRIES grammar
        case(
            "MIRROR_REGISTRIES missing",
            &["MIRROR_REGISTRIES is missing"],
            |i| unset(&mut i.pairs, "MIRROR_REGISTRIES"),
        ),
        case(
            "MIRROR_REGISTRIES empty",
            &["MIRROR_REGISTRIES is empty"],
            |i| set(&mut i.pairs, "MIRROR_REGISTRIES", ""),
        ),
        case(
            "MIRROR_REGISTRIES only commas",
            &["MIRROR_REGISTRIES is empty"],
            |i| set(&mut i.pairs, "MIRROR_REGISTRIES", " , ,, "),
        ),
        case(
            "entry without ::",
            &[
                "entry 1",
                "docker.io:harbor.example.org",
                "expected source::target",
            ],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "docker.io:harbor.example.org",
                )
            },
        ),
        case("empty source", &["entry 1", "source is empty"], |i| {
            set(&mut i.pairs, "MIRROR_REGISTRIES", "::harbor.example.org/x")
        }),
        case(
            "bad source host",
            &["entry 2", "source \"docker..io\"", "empty label"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "quay.io::,docker..io::harbor.example.org/x",
                )
            },
        ),
        case(
            "source with a scheme",
            &["entry 1", "source \"https://docker.io\"", "without a path"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "https://docker.io::harbor.example.org/x",
                )
            },
        ),
        case(
            "bad target host",
            &["entry 1", "target \"harbor_x.example.org/x\"", "RFC 1123"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "docker.io::harbor_x.example.org/x",
                )
            },
        ),
        case(
            "target port 0",
            &["entry 1", "port 0 is out of range"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "docker.io::harbor.example.org:0/x",
                )
            },
        ),
        case(
            "target port 70000",
            &["entry 1", "port 70000 is out of range"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "docker.io::harbor.example.org:70000/x",
                )
            },
        ),
        case(
            "target port not a number",
            &["entry 1", "port \"http\" is not a number"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "docker.io::harbor.example.org:http/x",
                )
            },
        ),
        case(
            "uppercase path",
            &["entry 1", "component \"Docker.io\"", "lower-case"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "docker.io::harbor.example.org/airgap-images/Docker.io",
                )
            },
        ),
        case(
            "/v2/ twice in target (one /v2/ is the API root, the second is refused)",
            &["entry 1", "starts with v2/", "adds /v2 itself"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "docker.io::harbor.example.org/v2/v2/airgap-images/docker.io",
                )
            },
        ),
        case(
            "double slash in path",
            &["entry 1", "double or leading '/'"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "docker.io::harbor.example.org/airgap-images//docker.io",
                )
            },
        ),
        case(
            "quote in target",
            &["entry 1", "character '\"'", "not allowed"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "docker.io::harbor.example.org/a\"b",
                )
            },
        ),
        case(
            "# in target",
            &["entry 1", "character '#'", "not allowed"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "docker.io::harbor.example.org/a#b",
                )
            },
        ),
        case(
            "] in target",
            &[
                "entry 1",
                "brackets are only allowed around an IPv6 address",
            ],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "docker.io::harbor.example.org]",
                )
            },
        ),
        case(
            "newline inside an entry",
            &["entry 1", "'\\n' inside an entry is not allowed"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "docker.io::harbor.example\n.org/x",
                )
            },
        ),
        case(
            "TOML injection with a newline",
            &["entry 1", "inside an entry is not allowed"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "docker.io::h.example\"]\n[x]",
                )
            },
        ),
        case(
            "TOML injection in one line",
            &["entry 1", "character '\"'"],
            |i| set(&mut i.pairs, "MIRROR_REGISTRIES", "docker.io::h.example\"]"),
        ),
        case(
            "TOML injection in the source",
            &["entry 1", "source \"docker.io\\\".x]\"", "character '\"'"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "docker.io\".x]::h.example",
                )
            },
        ),
        case(
            "space inside an entry",
            &["entry 1", "' ' inside an entry is not allowed"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "docker.io:: harbor.example.org/x",
                )
            },
        ),
        case(
            "duplicate source",
            &["entries 1", "and 2", "both name source docker.io"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "docker.io::a.example,docker.io::b.example",
                )
            },
        ),
        case(
            "duplicate source, case differs",
            &["entries 1", "and 3", "both name source docker.io"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "Docker.IO::a.example,quay.io::,docker.io::b.example",
                )
            },
        ),
        case(
            "duplicate * and default",
            &["entries 1", "and 2", "both name source *"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "*::a.example,default::b.example",
                )
            },
        ),
        case(
            "unsupported scheme",
            &["entry 1", "scheme \"ftp\" is not supported"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "docker.io::ftp://harbor.example.org/x",
                )
            },
        ),
        case(
            "bad IPv6 literal",
            &["entry 1", "\"fd00::zz\" is not a valid IPv6 address"],
            |i| {
                set(
                    &mut i.pairs,
                    "MIRROR_REGISTRIES",
                    "docker.io::[fd00::zz]:5000/x",
                )
            },
        ),
        // ---- sizes and encodings
        {
            let m = mib.clone();
            case(
                "MIRROR_REGISTRIES of 1 MiB",
                &["MIRROR_REGISTRIES is 1048576 bytes long (at most 262144)"],
                move |i| set(&mut i.pairs, "MIRROR_REGISTRIES", &m),
            )
        },
        {
            let m = mib.clone();
            case(
                "DOMAIN of 1 MiB",
                &["DOMAIN is 1048576 bytes long (at most 4096)"],
                move |i| set(&mut i.pairs, "DOMAIN", &m),
            )
        },
        {
            let m = mib.clone();
            case(
                "CA_CERT of 1 MiB",
                &["CA_CERT is 1048576 bytes long (at most 262144)"],
                move |i| set(&mut i.pairs, "CA_CERT", &m),
            )
        },
        case(
            "Secret file over 4 MiB",
            &["secret.yaml", "larger than 4194304 bytes"],
            |i| {
                let mut m = manifest(&i.pairs).into_bytes();
                m.extend(format!("# {}\n", "x".repeat(4 * 1024 * 1024)).into_bytes());
                i.secret_raw = Some(m);
            },
        ),
        case("DOMAIN not UTF-8", &["DOMAIN is not UTF-8 text"], |i| {
            i.secret_raw = Some(with_raw(&i.pairs, "DOMAIN", b"harbor\xff.example.org"));
        }),
        case(
            "MIRROR_REGISTRIES not UTF-8",
            &["MIRROR_REGISTRIES is not UTF-8 text"],
            |i| {
                i.secret_raw = Some(with_raw(
                    &i.pairs,
                    "MIRROR_REGISTRIES",
                    b"docker.io::h\xc3.example",
                ));
            },
        ),
        case(
            "manifest file not UTF-8",
            &["DOMAIN", "character '\u{fffd}'", "not allowed"],
            |i| {
                // The file is read lossily: the stray byte becomes U+FFFD, which no host may hold.
                let m = manifest(&i.pairs);
                let needle = "DOMAIN: harbor.example.org";
                let at = m.find(needle).expect("plain scalar");
                let mut bytes = m.as_bytes()[..at].to_vec();
                bytes.extend_from_slice(b"DOMAIN: harbor\xff.example.org");
                bytes.extend_from_slice(&m.as_bytes()[at + needle.len()..]);
                i.secret_raw = Some(bytes);
            },
        ),
        // ---- the manifest itself
        case("invalid YAML", &["secret.yaml", "not valid YAML"], |i| {
            i.secret_raw = Some(b"apiVersion: v1\nkind: Secret\nmetadata: {name: registry-info\nstringData:\n  - [\n".to_vec());
        }),
        case(
            "no Secret of that name",
            &[
                "no Secret named \"jet-system/registry-info\"",
                "jet-system/other",
            ],
            |i| {
                i.secret_raw = Some(
                    manifest(&i.pairs)
                        .replace("name: registry-info", "name: other")
                        .into_bytes(),
                );
            },
        ),
        case(
            "Secret in another namespace",
            &[
                "no Secret named \"jet-system/registry-info\"",
                "kube-system/registry-info",
            ],
            |i| {
                i.secret_raw = Some(
                    manifest(&i.pairs)
                        .replace("namespace: jet-system", "namespace: kube-system")
                        .into_bytes(),
                );
            },
        ),
        case(
            "no Secret at all",
            &["no Secret named", "no Secret documents"],
            |i| {
                i.secret_raw = Some(
                    b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: registry-info}\n".to_vec(),
                );
            },
        ),
        case(
            "Secret present twice",
            &["Secret \"registry-info\" is present 2 times"],
            |i| {
                let m = manifest(&i.pairs);
                i.secret_raw = Some(format!("{m}---\n{m}").into_bytes());
            },
        ),
        case(
            "data value not base64",
            &["data key \"PASSWORD\" is not valid base64"],
            |i| {
                i.secret_raw = Some(
                format!(
                    "apiVersion: v1\nkind: Secret\nmetadata: {{name: registry-info, namespace: jet-system}}\ndata:\n  PASSWORD: \"{PASSWORD}!!\"\n"
                )
                .into_bytes(),
            );
            },
        ),
        case(
            "stringData value is a map",
            &["stringData key \"DOMAIN\"", "must be a string"],
            |i| {
                i.secret_raw = Some(
                    manifest(&i.pairs)
                        .replace(
                            "DOMAIN: harbor.example.org",
                            "DOMAIN: {host: harbor.example.org}",
                        )
                        .into_bytes(),
                );
            },
        ),
        case(
            "Secret file missing",
            &["secret.yaml", "No such file"],
            |i| {
                i.prepare
                    .push(Box::new(|e: &Env| fs::remove_file(&e.secret).unwrap()));
            },
        ),
        // ---- config.toml
        case(
            "config.toml syntax error",
            &[
                "config.toml does not parse",
                "line 2, column 9",
                "unclosed table",
            ],
            |i| {
                i.config = b"version = 2\n[plugins\nx = 1\n".to_vec();
            },
        ),
        case(
            "config.toml duplicate key",
            &["config.toml does not parse", "duplicate key"],
            |i| {
                i.config = b"version = 2\nroot = \"/a\"\nroot = \"/b\"\n".to_vec();
            },
        ),
        case(
            "config.toml syntax error on an applied password line",
            &[
                "config.toml does not parse",
                "line 4, column 32",
                "invalid basic string",
            ],
            |i| {
                // The admin broke the line holding the applied credentials: the error must not echo it.
                i.config = format!(
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"harbor.example.org\".auth]\nusername = \"{USERNAME}\"\npassword = \"{PASSWORD}\n"
            )
            .into_bytes();
            },
        ),
        case(
            "version = \"x\"",
            &[
                "config.toml",
                "version = \"x\"",
                "is not a containerd config version",
            ],
            |i| {
                i.config = b"version = \"x\"\n".to_vec();
            },
        ),
        case(
            "version = 2.5",
            &[
                "config.toml",
                "version = 2.5",
                "is not a containerd config version",
            ],
            |i| {
                i.config = b"version = 2.5\n".to_vec();
            },
        ),
        case(
            "version = 0",
            &[
                "config.toml",
                "version = 0",
                "is not a containerd config version",
            ],
            |i| {
                i.config = b"version = 0\n".to_vec();
            },
        ),
        case(
            "version is a table",
            &["config.toml", "version must be an integer"],
            |i| {
                i.config = b"[version]\nx = 1\n".to_vec();
            },
        ),
        case(
            "plugins as a string",
            &[
                "config.toml",
                "plugins is a value",
                "can only add to a [table]",
            ],
            |i| {
                i.config = b"version = 2\nplugins = \"x\"\n".to_vec();
            },
        ),
        case(
            "CRI plugin as an inline table",
            &[
                "config.toml",
                "plugins.\"io.containerd.grpc.v1.cri\" is an inline table",
            ],
            |i| {
                i.config = b"version = 2\n[plugins]\n\"io.containerd.grpc.v1.cri\" = { sandbox_image = \"x\" }\n".to_vec();
            },
        ),
        case(
            "mirror endpoint is a table",
            &[
                "config.toml",
                "mirrors.\"docker.io\".endpoint is a table, expected a value",
            ],
            |i| {
                i.config = b"version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\".endpoint]\nx = 1\n".to_vec();
                i.mode = "legacy";
            },
        ),
        case(
            "config.toml not UTF-8",
            &["config.toml is not UTF-8 text"],
            |i| {
                i.config = b"version = 2\n# caf\xe9\n".to_vec();
            },
        ),
        case(
            "version 3 with --mode legacy",
            &["legacy mode needs config version 1 or 2", "--mode hosts"],
            |i| {
                i.config = v3_config();
                i.mode = "legacy";
            },
        ),
        case(
            "config_path set with --mode legacy",
            &[
                "config_path = \"/etc/containerd/certs.d\"",
                "refuses legacy mirrors next to config_path",
            ],
            |i| {
                i.config = b"version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/containerd/certs.d\"\n".to_vec();
                i.mode = "legacy";
            },
        ),
        case(
            "admin mirrors with --mode hosts",
            &[
                "mirrors.\"docker.io\"",
                "mirrors.\"registry.corp.example:5000\"",
                "not owned by regmirror",
            ],
            |i| {
                i.config = admin_config();
                i.mode = "hosts";
            },
        ),
        case(
            "admin TLS config with --mode hosts",
            &["configs.\"h.example\".tls", "not owned by regmirror"],
            |i| {
                i.config = b"version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"h.example\".tls]\ninsecure_skip_verify = true\n".to_vec();
                i.mode = "hosts";
            },
        ),
        case(
            "admin mirrors when config_path is set (auto)",
            &["mirrors.\"x.example\"", "not owned by regmirror"],
            |i| {
                i.config = b"version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/containerd/certs.d\"\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"x.example\"]\nendpoint = [\"https://m\"]\n".to_vec();
            },
        ),
        // ---- files and directories
        case(
            "config.toml is a directory",
            &["read", "config.toml", "is a directory, not a regular file"],
            |i| {
                i.prepare.push(Box::new(|e: &Env| {
                    fs::remove_file(&e.config).unwrap();
                    fs::create_dir(&e.config).unwrap();
                }));
            },
        ),
        case(
            "certs dir is a regular file (hosts mode)",
            &["certs.d", "Not a directory"],
            |i| {
                i.mode = "hosts";
                i.prepare.push(Box::new(|e: &Env| {
                    fs::write(&e.certs, "not a directory\n").unwrap()
                }));
            },
        ),
        case(
            "certs dir is a regular file (CA_CERT, legacy)",
            &["certs.d", "Not a directory"],
            |i| {
                set(&mut i.pairs, "CA_CERT", &ca_pem());
                i.prepare.push(Box::new(|e: &Env| {
                    fs::write(&e.certs, "not a directory\n").unwrap()
                }));
            },
        ),
        case(
            "config_path names a regular file (auto → hosts)",
            &["not-a-dir", "Not a directory"],
            |i| {
                i.prepare.push(Box::new(|e: &Env| {
                let f = e.root.join("not-a-dir");
                fs::write(&f, "x\n").unwrap();
                fs::write(
                    &e.config,
                    format!(
                        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"{}\"\n",
                        f.display()
                    ),
                )
                .unwrap();
            }));
            },
        ),
        case(
            "state dir is a regular file",
            &["var/lib/regmirror/state.json", "Not a directory"],
            |i| {
                i.prepare.push(Box::new(|e: &Env| {
                    fs::remove_dir_all(&e.state).unwrap();
                    fs::write(&e.state, "not a directory\n").unwrap();
                }));
            },
        ),
        case(
            "state file corrupt",
            &["state file", "state.json", "does not parse"],
            |i| {
                i.prepare.push(Box::new(|e: &Env| {
                    fs::write(e.state.join("state.json"), "{ not json").unwrap()
                }));
            },
        ),
        case(
            "state file of the wrong shape",
            &["state file", "state.json", "does not parse"],
            |i| {
                i.prepare.push(Box::new(|e: &Env| {
                    fs::write(e.state.join("state.json"), "[1, 2, 3]\n").unwrap()
                }));
            },
        ),
        case(
            "state file with a previous value that does not parse",
            &[
                "previous value of plugins.\"io.containerd.grpc.v1.cri\".registry.config_path does not parse",
            ],
            |i| {
                i.config = b"version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/x\"\n".to_vec();
                i.prepare.push(Box::new(|e: &Env| {
                let state = serde_json::json!({
                    "config": e.config,
                    "config_created": false,
                    "config_mode_before": 420,
                    "mode": "hosts",
                    "spec_hash": "0",
                    "ownership": {
                        "values": [{
                            "path": ["plugins", "io.containerd.grpc.v1.cri", "registry", "config_path"],
                            "previous": {"prefix": " ", "repr": "[[[", "suffix": ""}
                        }],
                        "created_tables": []
                    },
                    "files": [],
                    "created_dirs": [],
                    "in_flight": false,
                    "bad_spec_hash": null
                });
                fs::write(e.state.join("state.json"), serde_json::to_vec_pretty(&state).unwrap()).unwrap();
            }));
            },
        ),
        // ---- flags
        case(
            "unknown --mode",
            &["invalid value 'mirror'", "--mode"],
            |i| i.mode = "mirror",
        ),
        case(
            "bad --reload",
            &["--reload", "expected none, auto, systemd or command"],
            |i| {
                i.extra_args = vec!["--reload".into(), "sometimes".into()];
            },
        ),
    ]
}

/// One case's outcome, for the table.
struct Row {
    name: &'static str,
    expect: String,
    result: String,
    problems: Vec<String>,
}

fn run_case(c: &Case) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let etc = root.join("etc/containerd");
    fs::create_dir_all(&etc).unwrap();
    let env = Env {
        secret: root.join("secret.yaml"),
        config: etc.join("config.toml"),
        certs: etc.join("certs.d"),
        state: root.join("var/lib/regmirror"),
        root: root.clone(),
    };
    fs::create_dir_all(&env.state).unwrap();
    let mut input = Input {
        pairs: valid_pairs(),
        secret_raw: None,
        config: seed_config(),
        mode: "auto",
        extra_args: Vec::new(),
        prepare: Vec::new(),
    };
    (c.build)(&mut input);
    let secret = input
        .secret_raw
        .clone()
        .unwrap_or_else(|| manifest(&input.pairs).into_bytes());
    fs::write(&env.secret, secret).unwrap();
    fs::write(&env.config, &input.config).unwrap();
    fs::set_permissions(&env.config, fs::Permissions::from_mode(0o644)).unwrap();
    for p in &input.prepare {
        p(&env);
    }

    let before = tree(&root);
    let mut args: Vec<String> = vec![
        "apply".into(),
        "--secret-file".into(),
        env.secret.display().to_string(),
        "--config".into(),
        env.config.display().to_string(),
        "--certs-dir".into(),
        env.certs.display().to_string(),
        "--state-dir".into(),
        env.state.display().to_string(),
        "--mode".into(),
        input.mode.into(),
    ];
    if input.extra_args.is_empty() {
        args.extend(["--reload".to_string(), "none".to_string()]);
    } else {
        args.extend(input.extra_args.iter().cloned());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&refs);
    let after = tree(&root);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();

    let mut problems = Vec::new();
    if out.status.code() != Some(2) {
        problems.push(format!("exit {:?}, expected 2", out.status.code()));
    }
    for f in c.expect {
        if !stderr.contains(f) {
            problems.push(format!("stderr lacks {f:?}"));
        }
    }
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{USERNAME}:{PASSWORD}"));
    if stderr.contains(PASSWORD)
        || stderr.contains(&token)
        || String::from_utf8_lossy(&out.stdout).contains(PASSWORD)
    {
        problems.push("output holds the PASSWORD".into());
    }
    let changed = tree_diff(&before, &after);
    if !changed.is_empty() {
        problems.push(format!("files changed: {}", changed.join(", ")));
    }
    // The first line of the message, with the temp dir shortened, for the table.
    let first = stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .replace(&root.display().to_string(), "$T");
    let first: String = if first.chars().count() > 220 {
        format!("{}…", first.chars().take(220).collect::<String>())
    } else {
        first
    };
    Row {
        name: c.name,
        expect: c.expect.join(" … "),
        result: format!(
            "exit {}: {}",
            out.status.code().map_or("signal".into(), |c| c.to_string()),
            first
        ),
        problems,
    }
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', "\\n")
}

#[test]
fn bad_input_matrix() {
    let cases = cases();
    assert!(cases.len() >= 50, "only {} cases", cases.len());
    let rows: Vec<Row> = cases.iter().map(run_case).collect();

    let mut table = String::from(
        "| # | case | expected in stderr | result (exit code: first line of stderr) | ok |\n|---|---|---|---|---|\n",
    );
    for (n, r) in rows.iter().enumerate() {
        table.push_str(&format!(
            "| {} | {} | `{}` | {} | {} |\n",
            n + 1,
            md_escape(r.name),
            md_escape(&r.expect).replace('`', "'"),
            md_escape(&r.result),
            if r.problems.is_empty() {
                "✔".to_string()
            } else {
                format!("✘ {}", md_escape(&r.problems.join("; ")))
            }
        ));
    }
    println!("{table}");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("bad_input_table.md");
    if let Ok(mut f) = fs::File::create(&target) {
        let _ = writeln!(
            f,
            "<!-- generated by tests/bad_input.rs: every case exits 2, names the problem, never prints PASSWORD, and changes no file -->\n{table}"
        );
    }
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| !r.problems.is_empty())
        .map(|r| format!("{}: {} [{}]", r.name, r.problems.join("; "), r.result))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n{}",
        failed.len(),
        rows.len(),
        failed.join("\n")
    );
}
