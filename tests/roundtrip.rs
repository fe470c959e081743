//! Round trips. Part 1 (proptest, pure API): random config.toml documents (tables, comments,
//! blank lines, indentation, quoting styles, dotted keys, inline tables, arrays, arrays of
//! tables, an existing `registry` table with `config_path = ""`, admin mirrors and credentials for
//! other hosts and for the same source) and random valid Secrets. Properties:
//! - render, then render(spec = None, prior = ownership) gives the original text byte for byte;
//! - rendering again from the output with its ownership changes nothing (idempotent);
//! - switching to another spec and reverting gives the original; switching back gives the first
//!   output again.
//!
//! Part 2 (the real binary on real-world files in tests/fixtures/configs/): apply → revert is
//! byte-identical, a second apply writes nothing (inode and mtime unchanged), diff exits 1 then 0,
//! and a later Secret without one source removes only that entry.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{
    base_pairs, ca_pem, manifest, render, render_at, run, set, show, spec_of, stamp, tree,
    tree_diff,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use regmirror::render::{ConfigOwnership, Mode, Rendered, WriteMode};
use regmirror::spec::RegistrySpec;

// ---------------------------------------------------------------------------------------------
// Part 1: generated documents and Secrets.

/// Which config version a generated document declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ver {
    V1,
    V2,
    V3,
}

impl Ver {
    fn plugin(self) -> &'static str {
        match self {
            Ver::V1 => "cri",
            Ver::V2 => "io.containerd.grpc.v1.cri",
            Ver::V3 => "io.containerd.cri.v1.images",
        }
    }
}

fn indent() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        2 => Just("  ".to_string()),
        1 => Just("    ".to_string()),
        1 => Just("\t".to_string()),
    ]
}

fn eq() -> impl Strategy<Value = &'static str> {
    prop_oneof![4 => Just(" = "), 1 => Just("="), 1 => Just("   =  "), 1 => Just(" =\t")]
}

fn trailing_comment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(String::new()),
        1 => Just("  # note".to_string()),
        1 => Just(" #no space, \"quotes\" and 'ticks' [brackets]".to_string()),
        1 => Just("\t\t# tab before".to_string()),
    ]
}

/// A key segment, bare when TOML allows it, else double- or single-quoted.
fn segment(name: &str) -> impl Strategy<Value = String> + use<> {
    let bare_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let dq = format!("\"{name}\"");
    let sq = format!("'{name}'");
    if bare_ok {
        prop_oneof![3 => Just(name.to_string()), 1 => Just(dq), 1 => Just(sq)].boxed()
    } else {
        prop_oneof![Just(dq), Just(sq)].boxed()
    }
}

/// A dotted key path: segments joined by `.`, with optional spaces around the dots.
fn key_path(path: Vec<String>) -> impl Strategy<Value = String> {
    let segs: Vec<_> = path.iter().map(|s| segment(s)).collect();
    (segs, prop_oneof![4 => Just("."), 1 => Just(" . ")]).prop_map(|(s, dot)| s.join(dot))
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-999".to_string()),
        Just("1_000_000".to_string()),
        Just("0x1f".to_string()),
        Just("0o755".to_string()),
        Just("0.02".to_string()),
        Just("1e3".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        Just("\"\"".to_string()),
        Just("''".to_string()),
        Just("\"/var/lib/containerd\"".to_string()),
        Just("'/run/containerd'".to_string()),
        Just("\"tab\\tand \\\"quotes\\\" and \\u00e9\"".to_string()),
        Just("'C:\\no\\escapes'".to_string()),
        Just("\"\"\"\nmulti\nline \\\n  continued\"\"\"".to_string()),
        Just("'''\nraw\nmulti'''".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("07:32:00".to_string()),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => scalar(),
        1 => prop::collection::vec(scalar(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
        1 => prop::collection::vec(scalar(), 1..4)
            .prop_map(|v| format!("[\n  {},   # comment inside an array\n]", v.join(",\n  "))),
        1 => (scalar(), scalar()).prop_map(|(a, b)| format!("{{ a = {a}, \"b c\" = {b} }}")),
        1 => Just("{ bin_dir = \"/usr/lib/cni\", conf_dir = \"/etc/cni/net.d\" }".to_string()),
        1 => Just("{}".to_string()),
    ]
}

/// One `key = value` line (the key is `k<tag>` in a random quoting style).
fn kv(tag: String) -> impl Strategy<Value = String> {
    (
        indent(),
        segment(&format!("k{tag}")),
        eq(),
        value(),
        trailing_comment(),
    )
        .prop_map(|(i, k, e, v, c)| format!("{i}{k}{e}{v}{c}\n"))
}

/// A dotted key line (`d<tag>.x.y-z = value`): defines tables via dotted keys.
fn dotted_kv(tag: String) -> impl Strategy<Value = String> {
    dotted_kv_leaf(tag, "y-z")
}

fn dotted_kv_leaf(tag: String, leaf: &str) -> impl Strategy<Value = String> + use<> {
    (
        indent(),
        key_path(vec![format!("d{tag}"), "x".into(), leaf.into()]),
        eq(),
        value(),
    )
        .prop_map(|(i, k, e, v)| format!("{i}{k}{e}{v}\n"))
}

fn filler() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(String::new()),
        2 => Just("\n".to_string()),
        1 => Just("\n\n\n".to_string()),
        1 => indent().prop_map(|i| format!("{i}# a comment line [with] \"brackets\" = and equals\n")),
        1 => Just("#\n".to_string()),
    ]
}

/// A `[table]` header for `path`.
fn header(path: Vec<String>) -> impl Strategy<Value = String> {
    (
        indent(),
        key_path(path),
        prop_oneof![4 => Just(("[", "]")), 1 => Just(("[ ", " ]"))],
        trailing_comment(),
    )
        .prop_map(|(i, k, (o, c), tc)| format!("{i}{o}{k}{c}{tc}\n"))
}

/// A standard table: header, then key/values, dotted keys, comments and blank lines.
fn table(path: Vec<String>, tag: usize) -> BoxedStrategy<String> {
    (
        header(path),
        prop::collection::vec((filler(), 0..3usize), 0..4),
        any::<bool>(),
    )
        .prop_flat_map(move |(h, lines, dotted)| {
            let mut parts: Vec<BoxedStrategy<String>> = vec![Just(h).boxed()];
            for (j, (f, kind)) in lines.into_iter().enumerate() {
                parts.push(Just(f).boxed());
                parts.push(match kind {
                    0 | 1 => kv(format!("{tag}_{j}")).boxed(),
                    _ => dotted_kv(format!("{tag}_{j}")).boxed(),
                });
            }
            if dotted {
                // Interleaved dotted keys with one prefix (toml_edit regroups them when printing).
                parts.push(dotted_kv(format!("{tag}_z")).boxed());
                parts.push(kv(format!("{tag}_y")).boxed());
                parts.push(dotted_kv_leaf(format!("{tag}_z"), "w").boxed());
            }
            parts.prop_map(|p| p.concat())
        })
        .boxed()
}

/// `[[name]]` repeated.
fn array_of_tables(tag: usize) -> BoxedStrategy<String> {
    (1..3usize, filler())
        .prop_flat_map(move |(n, f)| {
            let items: Vec<_> = (0..n)
                .map(|j| {
                    (indent(), kv(format!("{tag}_{j}")))
                        .prop_map(|(i, kv)| format!("{i}[[proxy_list]]   # array of tables\n{kv}"))
                })
                .collect();
            (Just(f), items).prop_map(|(f, v)| format!("{f}{}", v.concat()))
        })
        .boxed()
}

/// How the generated document holds registry settings before regmirror.
#[derive(Debug, Clone)]
struct RegistryParts {
    /// `config_path` in `[plugins.P.registry]`: None, `""`, `''`, or a directory list.
    config_path: Option<&'static str>,
    /// Write config_path as a dotted key in `[plugins.P]` instead of a registry table.
    dotted: bool,
    /// Empty `mirrors`/`configs`/`auths`/`headers` tables, as `containerd config default` prints.
    empty_tables: bool,
    /// An admin mirror for another registry (legacy only).
    other_mirror: bool,
    /// An admin mirror for docker.io, which the Secret usually names too (legacy only).
    same_mirror: bool,
    /// Admin credentials for another host and for the mirror DOMAIN.
    other_auth: bool,
    domain_auth: bool,
    /// An admin TLS table for another host (legacy only).
    other_tls: bool,
}

fn registry_parts(legacy: bool) -> impl Strategy<Value = RegistryParts> {
    let cp = if legacy {
        prop_oneof![Just(None), Just(Some("\"\"")), Just(Some("''"))].boxed()
    } else {
        prop_oneof![
            Just(None),
            Just(Some("\"\"")),
            Just(Some("''")),
            Just(Some("\"/etc/containerd/certs.d:/etc/docker/certs.d\"")),
            Just(Some("'/etc/containerd/certs.d'")),
        ]
        .boxed()
    };
    (cp, any::<bool>(), any::<bool>(), any::<[bool; 5]>()).prop_map(
        move |(config_path, dotted, empty_tables, b)| RegistryParts {
            config_path,
            dotted,
            empty_tables,
            other_mirror: legacy && b[0],
            same_mirror: legacy && b[1],
            other_auth: b[2],
            domain_auth: b[3],
            other_tls: legacy && b[4],
        },
    )
}

/// Registry blocks (each a separate chunk, shuffled with the rest).
fn registry_blocks(ver: Ver, parts: &RegistryParts) -> BoxedStrategy<Vec<String>> {
    let p = ver.plugin();
    let reg = |more: &[&str]| -> Vec<String> {
        let mut v = vec!["plugins".to_string(), p.to_string(), "registry".to_string()];
        v.extend(more.iter().map(|s| s.to_string()));
        v
    };
    let mut blocks: Vec<BoxedStrategy<String>> = Vec::new();
    match (parts.config_path, parts.dotted) {
        (Some(cp), false) => blocks.push(
            (
                header(reg(&[])),
                indent(),
                eq(),
                trailing_comment(),
                filler(),
            )
                .prop_map(move |(h, i, e, c, f)| format!("{h}{i}config_path{e}{cp}{c}\n{f}"))
                .boxed(),
        ),
        (Some(cp), true) => blocks.push(
            (
                header(vec!["plugins".into(), p.into()]),
                indent(),
                kv("reg".into()),
            )
                .prop_map(move |(h, i, kv)| format!("{h}{kv}{i}registry.config_path = {cp}\n"))
                .boxed(),
        ),
        (None, _) => {}
    }
    if parts.empty_tables {
        for t in ["auths", "configs", "headers", "mirrors"] {
            blocks.push(
                (filler(), header(reg(&[t])))
                    .prop_map(|(f, h)| format!("{f}{h}"))
                    .boxed(),
            );
        }
    }
    let kv_block = |path: Vec<String>, body: &'static str| {
        (header(path), indent(), filler())
            .prop_map(move |(h, i, f)| {
                format!(
                    "{f}{h}{}",
                    body.lines()
                        .map(|l| format!("{i}{l}\n"))
                        .collect::<String>()
                )
            })
            .boxed()
    };
    if parts.other_mirror {
        blocks.push(kv_block(
            reg(&["mirrors", "registry.corp.example:5000"]),
            "endpoint = [\"https://cache.corp.example\", 'https://registry.corp.example:5000']  # keep",
        ));
    }
    if parts.same_mirror {
        blocks.push(kv_block(
            reg(&["mirrors", "docker.io"]),
            "endpoint = [ 'https://dockerhub-cache.corp.example' ]   # pull-through cache",
        ));
    }
    if parts.other_auth {
        blocks.push(kv_block(
            reg(&["configs", "other.example", "auth"]),
            "username = \"admin\"\npassword = 'admin-pass'",
        ));
    }
    if parts.domain_auth {
        blocks.push(kv_block(
            reg(&["configs", "harbor.example.org", "auth"]),
            "username = \"old-robot\"\npassword = \"old-password\" # rotated yearly",
        ));
    }
    if parts.other_tls {
        blocks.push(kv_block(
            reg(&["configs", "registry.corp.example:5000", "tls"]),
            "ca_file = \"/etc/pki/corp.pem\"\ninsecure_skip_verify = false",
        ));
    }
    blocks.boxed()
}

/// A generated case: the document, its version, the mode to render with.
#[derive(Debug, Clone)]
struct DocCase {
    text: String,
    mode: Mode,
}

fn document() -> impl Strategy<Value = DocCase> {
    let ver = prop_oneof![Just(Ver::V1), Just(Ver::V2), Just(Ver::V3)];
    (ver, any::<u8>())
        .prop_flat_map(|(ver, m)| {
            let mode = match (ver, m % 3) {
                (Ver::V3, 0) => Mode::Hosts,
                (Ver::V3, _) => Mode::Auto,
                (_, 0) => Mode::Legacy,
                (_, 1) => Mode::Hosts,
                _ => Mode::Auto,
            };
            let legacy = ver != Ver::V3 && mode != Mode::Hosts;
            (Just(ver), Just(mode), registry_parts(legacy))
        })
        .prop_flat_map(|(ver, mode, parts)| {
            // Auto with a non-empty config_path means hosts; a legacy-only part then conflicts,
            // and registry_parts never generates both.
            let p = ver.plugin();
            let pool: Vec<Vec<String>> = vec![
                vec!["grpc".into()],
                vec!["debug".into()],
                vec!["metrics".into()],
                vec!["timeouts".into()],
                vec!["plugins".into()],
                vec!["plugins".into(), "io.containerd.internal.v1.opt".into()],
                vec!["plugins".into(), p.into(), "containerd".into()],
                vec!["plugins".into(), p.into(), "cni".into()],
                vec![
                    "plugins".into(),
                    p.into(),
                    "containerd".into(),
                    "runtimes".into(),
                    "runc".into(),
                    "options".into(),
                ],
                vec!["stream_processors".into(), "io.containerd.ocicrypt.decoder.v1.tar".into()],
            ];
            // The plugin table itself, unless the dotted registry form defines it.
            let dotted_registry = parts.dotted && parts.config_path.is_some();
            let plugin_table = !dotted_registry;
            let chosen = prop::sample::subsequence(pool, 0..8);
            let version_line = match ver {
                Ver::V1 => prop_oneof![Just(String::new()), Just("version = 1\n".to_string())].boxed(),
                Ver::V2 => (eq(), trailing_comment()).prop_map(|(e, c)| format!("version{e}2{c}\n")).boxed(),
                Ver::V3 => (eq(), trailing_comment()).prop_map(|(e, c)| format!("version{e}3{c}\n")).boxed(),
            };
            let top = prop::collection::vec((filler(), 0..3usize), 0..3).prop_flat_map(|v| {
                v.into_iter()
                    .enumerate()
                    .map(|(j, (f, k))| {
                        let line = if k == 2 { dotted_kv(format!("top{j}")).boxed() } else { kv(format!("top{j}")).boxed() };
                        (Just(f), line).prop_map(|(f, l)| format!("{f}{l}"))
                    })
                    .collect::<Vec<_>>()
            });
            (
                Just(mode),
                filler(),
                version_line,
                top,
                chosen,
                any::<bool>(),
                any::<bool>(),
                registry_blocks(ver, &parts),
                prop_oneof![3 => Just(""), 1 => Just("\n"), 1 => Just("# trailing comment, no newline")],
                Just(dotted_registry),
                Just(plugin_table).prop_flat_map(move |want| {
                    if want {
                        prop::option::of(table(vec!["plugins".into(), p.into()], 99)).boxed()
                    } else {
                        Just(None).boxed()
                    }
                }),
            )
        })
        .prop_flat_map(|(mode, lead, version_line, top, chosen, aot, strip_nl, mut reg, tail, dotted_registry, plugin)| {
            let mut blocks: Vec<BoxedStrategy<String>> = chosen
                .into_iter()
                .enumerate()
                .map(|(i, path)| table(path, i))
                .collect();
            if aot {
                blocks.push(array_of_tables(50));
            }
            // TOML forbids adding to `registry` with dotted keys once a `[..registry.x]` header
            // made it exist, so the dotted form goes before every other block.
            let front = if dotted_registry { reg.remove(0) } else { String::new() };
            blocks.extend(reg.into_iter().map(|r| Just(r).boxed()));
            if let Some(pt) = plugin {
                blocks.push(Just(pt).boxed());
            }
            let head = format!("{lead}{version_line}{}{front}", top.concat());
            (Just(blocks).prop_flat_map(|b| b).prop_shuffle(), Just(head), Just(tail), Just(strip_nl), Just(mode))
        })
        .prop_map(|(blocks, head, tail, strip_nl, mode)| {
            let mut text = format!("{head}{}{tail}", blocks.concat());
            if strip_nl && tail.is_empty() {
                while text.ends_with('\n') {
                    text.pop();
                }
            }
            DocCase { text, mode }
        })
}

/// A random valid Secret (as key/value pairs).
fn secret() -> impl Strategy<Value = Vec<(String, String)>> {
    let sources = prop::sample::subsequence(
        vec![
            "docker.io",
            "registry.k8s.io",
            "quay.io",
            "gcr.io",
            "ghcr.io",
            "registry.corp.example:5000",
            "10.1.2.3:5000",
            "[fd00::1]:5000",
            "*",
        ],
        1..6,
    );
    let target = prop_oneof![
        Just(""),
        Just("harbor.example.org/airgap-images/X"),
        Just("harbor.example.org/airgap-images"),
        Just("harbor.example.org"),
        Just("http://h2.example:5000/p/X"),
        Just("https://[fd00::2]:8443/m"),
        Just("HARBOR.Example.ORG/airgap-images/X"),
    ];
    (
        sources,
        prop::collection::vec(target, 6),
        any::<bool>(),
        prop::option::of(prop_oneof![
            Just(("robot$ci", "pa55")),
            Just(("u", r#"p"a\ss#wo'rd"#)),
            Just(("user.name", "päss wörd ☃"))
        ]),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(", "), Just(","), Just(",\n  "), Just(" ,")],
        any::<bool>(),
    )
        .prop_map(
            |(srcs, targets, insecure, creds, ca, default_word, sep, trailing)| {
                let entries: Vec<String> = srcs
                    .iter()
                    .zip(targets)
                    .map(|(s, t)| {
                        let name = match *s {
                            "*" => "all".to_string(),
                            _ => s
                                .split(':')
                                .next()
                                .unwrap_or(s)
                                .trim_matches('[')
                                .replace('.', "-"),
                        };
                        let s = if *s == "*" && default_word {
                            "default"
                        } else {
                            s
                        };
                        format!("{s}::{}", t.replace('X', &name.to_ascii_lowercase()))
                    })
                    .collect();
                let mut list = entries.join(sep);
                if trailing {
                    list.push(',');
                }
                let mut p = base_pairs(&list);
                set(&mut p, "INSECURE", if insecure { "TRUE" } else { "false" });
                if let Some((u, pw)) = creds {
                    set(&mut p, "USERNAME", u);
                    set(&mut p, "PASSWORD", pw);
                }
                if ca {
                    set(&mut p, "CA_CERT", &ca_pem());
                }
                p
            },
        )
}

fn ok(
    config: &str,
    prior: &ConfigOwnership,
    spec: Option<&RegistrySpec>,
    mode: Mode,
) -> Result<Rendered, TestCaseError> {
    render(config, prior, spec, mode)
        .map_err(|e| TestCaseError::fail(format!("render refused: {e}\n--- config\n{config}")))
}

fn check_roundtrip(
    case: &DocCase,
    s1: &RegistrySpec,
    s2: &RegistrySpec,
) -> Result<(), TestCaseError> {
    let orig = case.text.as_str();
    let none = ConfigOwnership::default();
    // The generator only makes documents containerd (and toml_edit) accept.
    prop_assert!(
        orig.parse::<toml_edit::DocumentMut>().is_ok(),
        "generated TOML does not parse:\n{orig}"
    );

    let r1 = ok(orig, &none, Some(s1), case.mode)?;
    prop_assert!(r1.config.parse::<toml_edit::DocumentMut>().is_ok());
    // Revert: byte for byte.
    let back = ok(&r1.config, &r1.ownership, None, Mode::Auto)?;
    prop_assert_eq!(
        &back.config,
        orig,
        "revert differs\n--- rendered\n{}",
        r1.config
    );
    prop_assert!(back.files.is_empty() && back.ownership.is_empty());
    // The surgical path alone (what runs once someone else edited the file since regmirror
    // wrote it: the snapshot no longer matches): byte for byte too on these documents.
    let mut surgical = r1.ownership.clone();
    surgical.snapshot = None;
    let back_s = ok(&r1.config, &surgical, None, Mode::Auto)?;
    prop_assert_eq!(
        &back_s.config,
        orig,
        "surgical revert differs\n--- rendered\n{}",
        r1.config
    );
    let again_s = ok(&r1.config, &surgical, Some(s1), case.mode)?;
    prop_assert_eq!(&again_s.config, &r1.config, "surgical re-render differs");
    // Idempotent.
    let again = ok(&r1.config, &r1.ownership, Some(s1), case.mode)?;
    prop_assert_eq!(&again.config, &r1.config, "second render differs");
    prop_assert_eq!(&again.ownership, &r1.ownership);
    prop_assert_eq!(&again.files, &r1.files);
    // Another spec, then revert; and back to the first spec.
    let r2 = ok(&r1.config, &r1.ownership, Some(s2), case.mode)?;
    prop_assert_eq!(
        r2.mode,
        r1.mode,
        "the mode follows the document, not the spec"
    );
    let back2 = ok(&r2.config, &r2.ownership, None, Mode::Auto)?;
    prop_assert_eq!(
        &back2.config,
        orig,
        "revert after a spec change differs\n--- rendered\n{}",
        r2.config
    );
    let r1b = ok(&r2.config, &r2.ownership, Some(s1), case.mode)?;
    prop_assert_eq!(&r1b.config, &r1.config, "back to the first spec differs");
    prop_assert_eq!(&r1b.files, &r1.files);

    // What the render says it owns is really there, with the spec's values.
    let doc: toml_edit::DocumentMut = r1.config.parse().unwrap();
    for v in &r1.ownership.values {
        prop_assert!(
            regmirror::render::owned::value_at(&doc, &v.path).is_some(),
            "owned {:?} missing",
            v.path
        );
    }
    if r1.mode == Some(WriteMode::Legacy) {
        for m in &s1.mirrors {
            let mut path = regmirror::render::version::registry_table(r1.version);
            path.push("mirrors".into());
            path.push(regmirror::render::legacy::mirror_key(&m.source));
            path.push("endpoint".into());
            let got: Vec<String> = regmirror::render::owned::value_at(&doc, &path)
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            prop_assert_eq!(
                got,
                regmirror::render::legacy::endpoint_list(s1, m.target.as_ref())
            );
        }
    } else {
        let cp = regmirror::render::version::config_path(&doc, r1.version);
        prop_assert!(cp.is_some(), "hosts mode without config_path");
        let dir = PathBuf::from(&cp.unwrap()[0]);
        let hosts = r1
            .files
            .iter()
            .filter(|f| f.path.ends_with("hosts.toml"))
            .count();
        prop_assert_eq!(hosts, s1.mirrors.len());
        for f in &r1.files {
            prop_assert!(
                f.path.starts_with(&dir),
                "{} outside config_path",
                f.path.display()
            );
        }
    }
    Ok(())
}

#[test]
fn render_revert_idempotent_and_spec_change_roundtrip() {
    let cases: u32 = std::env::var("ROUNDTRIP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (document(), secret(), secret());
    let result = runner.run(&strategy, |(case, p1, p2)| {
        let s1 = spec_of(&p1);
        let s2 = spec_of(&p2);
        check_roundtrip(&case, &s1, &s2)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Documents that broke byte-identity before (each was found by the property above).
#[test]
fn regressions_found_by_the_property() {
    let docs: &[(&str, &str, Mode)] = &[
        (
            // toml_edit re-spells a header's segments the way the first header spelled them.
            "mixed quoting of one table name",
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\nsnapshotter = \"overlayfs\"\n[plugins.'io.containerd.grpc.v1.cri'.registry]\nconfig_path = ''\n[ plugins . \"io.containerd.internal.v1.opt\" ]\npath = \"/opt\"\n",
            Mode::Auto,
        ),
        (
            // The registry table exists only implicitly (credentials of another registry):
            // setting config_path makes its header appear; revert must hide it again.
            "implicit registry table, hosts mode",
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"other.example\".auth]\nusername = \"admin\"\npassword = \"admin-pass\"\n",
            Mode::Hosts,
        ),
        (
            "implicit registry table, version 3",
            "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry.configs.'other.example'.auth]\nusername = 'admin'\n",
            Mode::Auto,
        ),
        (
            // No newline after the last key: regmirror's tables need one, revert takes it away.
            "no final newline after a key",
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"registry.k8s.io/pause:3.9\"",
            Mode::Legacy,
        ),
        (
            // toml_edit regroups dotted keys with one prefix when printing.
            "interleaved dotted keys",
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\ncni.bin_dir = \"/usr/lib/cni\"\nsandbox_image = \"x\"\ncni.conf_dir = \"/etc/cni/net.d\"\n[plugins.'io.containerd.grpc.v1.cri'.containerd]\nsnapshotter = 'overlayfs'\n",
            Mode::Legacy,
        ),
        (
            "dotted registry key, then an admin mirror header",
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nregistry.config_path = \"\"\n[plugins.'io.containerd.grpc.v1.cri'.registry.mirrors.\"quay.io\"]\nendpoint = [\"https://q\"]\n",
            Mode::Legacy,
        ),
    ];
    let mut p1 = base_pairs(
        "docker.io::harbor.example.org/airgap-images/docker.io,*::harbor.example.org/airgap-images/all",
    );
    set(&mut p1, "USERNAME", "u");
    set(&mut p1, "PASSWORD", "p");
    set(&mut p1, "CA_CERT", &ca_pem());
    let mut p2 = base_pairs("quay.io::,ghcr.io::harbor.example.org/airgap-images/ghcr.io");
    set(&mut p2, "INSECURE", "true");
    let (s1, s2) = (spec_of(&p1), spec_of(&p2));
    for (name, text, mode) in docs {
        let case = DocCase {
            text: text.to_string(),
            mode: *mode,
        };
        for (a, b) in [(&s1, &s2), (&s2, &s1)] {
            if let Err(e) = check_roundtrip(&case, a, b) {
                panic!("{name}: {e}");
            }
        }
        // Untouched admin lines keep their bytes: every original line is still there, in order.
        let r = render(text, &ConfigOwnership::default(), Some(&s1), *mode).unwrap();
        let mut rest = r.config.as_str();
        for line in text.lines() {
            let at = rest
                .find(line)
                .unwrap_or_else(|| panic!("{name}: line {line:?} lost or changed:\n{}", r.config));
            rest = &rest[at + line.len()..];
        }
    }
}

#[test]
fn generator_covers_the_interesting_shapes() {
    // A quick look that the generator does produce what the property needs to be meaningful.
    let mut runner = TestRunner::deterministic();
    let mut seen = [0usize; 8];
    for _ in 0..300 {
        let case = document().new_tree(&mut runner).unwrap().current();
        let t = &case.text;
        let flags = [
            t.contains("config_path"),
            t.contains("mirrors.\"docker.io\"") || t.contains("mirrors.'docker.io'"),
            t.contains("[[proxy_list]]"),
            t.contains("{ "),
            t.contains("d1_") || t.contains(".x."),
            t.contains("registry.config_path"),
            !t.contains("version"),
            !t.ends_with('\n'),
        ];
        for (i, f) in flags.iter().enumerate() {
            seen[i] += usize::from(*f);
        }
    }
    assert!(
        seen.iter().all(|&n| n > 5),
        "generator misses a shape: {seen:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Part 2: the binary on real files.

const FIXTURES: &[&str] = &[
    "seed.toml",
    "containerd-1.6-default.toml",
    "debian-packaged.toml",
    "containerd-1.7-default.toml",
    "containerd-2.0-v3.toml",
    "admin-mirrors.toml",
    "odd-formatting.toml",
    "v1-no-version.toml",
];

/// One temp dir: config.toml, the Secret, certs dir and state dir.
struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
    certs: PathBuf,
    state: PathBuf,
    secret: PathBuf,
}

impl Sandbox {
    fn new(config_text: &str) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let etc = root.join("etc/containerd");
        fs::create_dir_all(&etc).unwrap();
        let config = etc.join("config.toml");
        fs::write(&config, config_text).unwrap();
        fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        Sandbox {
            config,
            certs: etc.join("certs.d"),
            state: root.join("var/lib/regmirror"),
            secret: root.join("secret.yaml"),
            root,
            _dir: dir,
        }
    }

    fn write_secret(&self, pairs: &[(String, String)]) {
        fs::write(&self.secret, manifest(pairs)).unwrap();
    }

    fn args<'a>(&'a self, cmd: &'a str, mode: &'a str) -> Vec<&'a str> {
        let mut a = vec![cmd];
        if cmd != "revert" {
            a.extend([
                "--secret-file",
                self.secret.to_str().unwrap(),
                "--mode",
                mode,
            ]);
        }
        a.extend([
            "--config",
            self.config.to_str().unwrap(),
            "--certs-dir",
            self.certs.to_str().unwrap(),
            "--state-dir",
            self.state.to_str().unwrap(),
        ]);
        if cmd != "diff" {
            a.extend(["--reload", "none"]);
        }
        a
    }

    fn run(&self, cmd: &str, mode: &str, want: i32) -> String {
        let o = run(&self.args(cmd, mode));
        assert_eq!(
            o.status.code(),
            Some(want),
            "{cmd} --mode {mode}: {}",
            show(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Every file regmirror may touch: config.toml, its backup, everything under certs.d.
    fn managed_files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.config.clone()];
        v.extend(
            tree(&self.certs)
                .into_iter()
                .filter(|(_, n)| matches!(n, common::Node::File { .. }))
                .map(|(p, _)| self.certs.join(p)),
        );
        v.push(self.state.join("state.json"));
        v
    }
}

const E2E_MIRRORS: &str = "docker.io::harbor.example.org/airgap-images/docker.io,registry.k8s.io::harbor.example.org/airgap-images/k8s.io,quay.io::,ghcr.io::harbor.example.org/airgap-images/ghcr.io";

fn e2e_pairs(creds: bool, ca: bool) -> Vec<(String, String)> {
    let mut p = base_pairs(E2E_MIRRORS);
    if creds {
        set(&mut p, "USERNAME", "robot$e2e");
        set(&mut p, "PASSWORD", "e2e-Pa55-word");
    }
    if ca {
        set(&mut p, "CA_CERT", &ca_pem());
    }
    p
}

/// The full cycle on one fixture and mode. Returns the resolved mode.
fn cycle(fixture: &str, mode: &str, creds: bool, ca: bool) -> WriteMode {
    let original =
        fs::read_to_string(common::root().join("tests/fixtures/configs").join(fixture)).unwrap();
    let sb = Sandbox::new(&original);
    let pairs = e2e_pairs(creds, ca);
    sb.write_secret(&pairs);
    let before = tree(&sb.root);
    let ctx = format!("{fixture} --mode {mode} creds={creds} ca={ca}");

    // diff: changes → 1; apply; diff: none → 0.
    let d = sb.run("diff", mode, 1);
    if creds {
        assert!(
            !d.contains("e2e-Pa55-word"),
            "{ctx}: diff shows the password"
        );
    }
    let out = sb.run("apply", mode, 0);
    assert!(out.contains("restart needed: yes"), "{ctx}: {out}");
    let resolved = if out.contains("(mode hosts)") {
        WriteMode::Hosts
    } else {
        WriteMode::Legacy
    };
    let applied = fs::read_to_string(&sb.config).unwrap();
    assert_ne!(applied, original, "{ctx}");
    assert_eq!(sb.run("diff", mode, 0), "", "{ctx}: diff after apply");
    let spec = spec_of(&pairs);
    let expected = render_at(
        &original,
        &ConfigOwnership::default(),
        Some(&spec),
        mode.parse_mode(),
        &sb.certs,
    )
    .unwrap();
    assert_eq!(
        applied, expected.config,
        "{ctx}: apply wrote what the pure render says"
    );
    // Config mode: 0600 when it holds the password.
    let cmode = fs::metadata(&sb.config)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    if creds && resolved == WriteMode::Legacy {
        assert_eq!(cmode, 0o600, "{ctx}: config.toml holds the password");
    } else {
        assert_eq!(cmode, 0o644, "{ctx}");
    }
    // The rendered files are on disk as the pure render says (modulo the certs dir).
    for f in &expected.files {
        assert_eq!(
            fs::read(&f.path).unwrap(),
            f.contents,
            "{ctx}: {}",
            f.path.display()
        );
        let m = fs::metadata(&f.path).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777,
            f.mode,
            "{ctx}: {}",
            f.path.display()
        );
    }

    // A second apply writes nothing: same inode and mtime everywhere.
    let files = sb.managed_files();
    let stamps: Vec<_> = files.iter().map(|p| stamp(p)).collect();
    let tree_applied = tree(&sb.root);
    let out = sb.run("apply", mode, 0);
    assert!(
        out.contains("nothing to change") && out.contains("restart needed: no"),
        "{ctx}: {out}"
    );
    assert_eq!(
        files.iter().map(|p| stamp(p)).collect::<Vec<_>>(),
        stamps,
        "{ctx}: second apply wrote"
    );
    assert_eq!(
        tree_diff(&tree_applied, &tree(&sb.root)),
        Vec::<String>::new(),
        "{ctx}"
    );

    // A later Secret without ghcr.io: only that entry goes.
    let fewer: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| {
            if k == "MIRROR_REGISTRIES" {
                (
                    k.clone(),
                    v.replace(",ghcr.io::harbor.example.org/airgap-images/ghcr.io", ""),
                )
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    sb.write_secret(&fewer);
    sb.run("diff", mode, 1);
    sb.run("apply", mode, 0);
    let now = fs::read_to_string(&sb.config).unwrap();
    let ghcr_hosts = sb.certs.join("ghcr.io/hosts.toml");
    match resolved {
        WriteMode::Legacy => {
            // Exactly the ghcr.io mirror table (marker comment, header, endpoint) disappeared.
            let diff = similar::TextDiff::from_lines(&applied, &now);
            let mut removed = Vec::new();
            for c in diff.iter_all_changes() {
                match c.tag() {
                    similar::ChangeTag::Insert => {
                        panic!("{ctx}: later apply inserted {:?}", c.value())
                    }
                    similar::ChangeTag::Delete => removed.push(c.value().to_string()),
                    similar::ChangeTag::Equal => {}
                }
            }
            let joined = removed.concat();
            assert!(
                joined.contains("mirrors.\"ghcr.io\"]") && joined.contains("airgap-images/ghcr.io"),
                "{ctx}: removed {joined:?}"
            );
            assert!(
                removed.len() <= 4,
                "{ctx}: removed more than the ghcr.io table: {joined:?}"
            );
            assert!(!now.contains("ghcr.io"), "{ctx}");
        }
        WriteMode::Hosts => {
            assert_eq!(now, applied, "{ctx}: hosts mode changes only files");
            assert!(
                !ghcr_hosts.exists() && !ghcr_hosts.parent().unwrap().exists(),
                "{ctx}"
            );
            for s in ["docker.io", "registry.k8s.io", "quay.io"] {
                assert!(sb.certs.join(s).join("hosts.toml").exists(), "{ctx}: {s}");
            }
        }
    }
    let expected_fewer = render_at(
        &original,
        &ConfigOwnership::default(),
        Some(&spec_of(&fewer)),
        mode.parse_mode(),
        &sb.certs,
    )
    .unwrap();
    assert_eq!(
        now, expected_fewer.config,
        "{ctx}: later apply equals a fresh render"
    );

    // Revert: every byte as before (the lock file is regmirror's own and may stay).
    let out = sb.run("revert", mode, 0);
    assert!(out.contains("restart needed: yes"), "{ctx}: {out}");
    assert_eq!(
        fs::read_to_string(&sb.config).unwrap(),
        original,
        "{ctx}: revert not byte-identical"
    );
    let mut after = tree(&sb.root);
    after.retain(|p, _| !p.starts_with("var"));
    let mut before = before;
    before.remove(Path::new("secret.yaml"));
    after.remove(Path::new("secret.yaml"));
    assert_eq!(
        tree_diff(&before, &after),
        Vec::<String>::new(),
        "{ctx}: revert left files"
    );
    assert!(
        !sb.state.join("state.json").exists(),
        "{ctx}: state after a full revert"
    );
    // And a second revert is a no-op.
    let out = sb.run("revert", mode, 0);
    assert!(out.contains("nothing to change"), "{ctx}: {out}");
    resolved
}

trait ParseMode {
    fn parse_mode(&self) -> Mode;
}

impl ParseMode for str {
    fn parse_mode(&self) -> Mode {
        match self {
            "legacy" => Mode::Legacy,
            "hosts" => Mode::Hosts,
            _ => Mode::Auto,
        }
    }
}

#[test]
fn cli_cycle_on_real_world_configs_auto_mode() {
    for f in FIXTURES {
        let resolved = cycle(f, "auto", false, false);
        let want = if *f == "containerd-2.0-v3.toml" {
            WriteMode::Hosts
        } else {
            WriteMode::Legacy
        };
        assert_eq!(resolved, want, "{f}");
    }
}

#[test]
fn cli_cycle_on_real_world_configs_with_credentials_and_ca() {
    for f in FIXTURES {
        cycle(f, "auto", true, true);
    }
}

#[test]
fn cli_cycle_hosts_mode_on_version_2_files() {
    for f in FIXTURES {
        if matches!(*f, "admin-mirrors.toml" | "containerd-2.0-v3.toml") {
            continue; // admin mirrors conflict with config_path; v3 is hosts already
        }
        assert_eq!(cycle(f, "hosts", true, false), WriteMode::Hosts, "{f}");
    }
}

#[test]
fn admin_mirror_for_the_same_source_comes_back_on_revert() {
    let original =
        fs::read_to_string(common::root().join("tests/fixtures/configs/admin-mirrors.toml"))
            .unwrap();
    let sb = Sandbox::new(&original);
    // The Secret names docker.io (the admin's pull-through cache) and harbor.example.org gets
    // credentials (the admin had old ones there).
    let mut pairs = base_pairs("docker.io::harbor.example.org/airgap-images/docker.io");
    set(&mut pairs, "USERNAME", "robot$new");
    set(&mut pairs, "PASSWORD", "new-Pa55");
    sb.write_secret(&pairs);
    let cache = "endpoint = [ 'https://dockerhub-cache.corp.example' ]   # pull-through cache (ticket OPS-1234)";
    assert!(original.contains(cache));
    let o = run(&sb.args("apply", "auto"));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("already has a mirror for docker.io"),
        "{stderr}"
    );
    let applied = fs::read_to_string(&sb.config).unwrap();
    assert!(!applied.contains("dockerhub-cache"), "{applied}");
    // The value is replaced in place: same key, same trailing comment.
    assert!(applied.contains(
        "      endpoint = [\"https://harbor.example.org/v2/airgap-images/docker.io\"]   # pull-through cache (ticket OPS-1234)"
    ), "{applied}");
    assert!(
        applied.contains("password = \"new-Pa55\"")
            && !applied.contains("old-password-kept-by-admin")
    );
    // The other admin mirror is untouched.
    assert!(applied.contains(
        "endpoint = [\"https://cache.corp.example:5000\", \"https://registry.corp.example:5000\"]"
    ));
    // A later Secret without docker.io gives the admin's value back while still applied.
    let mut later = base_pairs("registry.k8s.io::harbor.example.org/airgap-images/k8s.io");
    set(&mut later, "USERNAME", "robot$new");
    set(&mut later, "PASSWORD", "new-Pa55");
    sb.write_secret(&later);
    let o = run(&sb.args("apply", "auto"));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let now = fs::read_to_string(&sb.config).unwrap();
    assert!(now.contains(cache), "{now}");
    // Revert: the admin's mirror and credentials, byte for byte.
    let o = run(&sb.args("revert", "auto"));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(fs::read_to_string(&sb.config).unwrap(), original);
    assert!(!PathBuf::from(format!("{}.regmirror.bak", sb.config.display())).exists());
}
