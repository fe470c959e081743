//! The machine-readable outputs are a documented, versioned schema: `show` (`regmirror.show/v1`)
//! and `resolve -o json` (`regmirror.resolve/v1`), held as golden files (insta), plus
//! `resolve`'s text output. A change to any of them is a schema change: review the snapshot and
//! bump the schema name when it is incompatible. Header values (credentials) never appear.

mod common;

use common::{read_repo, run, show};

fn stdout(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn show_schema_v1() {
    let out = stdout(&[
        "show",
        "--secret-file",
        &common::root()
            .join("examples/registry-secret-auth.yaml")
            .to_string_lossy(),
        "--containerd-version",
        "2.1.9",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["schema"], "regmirror.show/v1");
    assert!(!out.contains(&password()), "PASSWORD in show");
    insta::assert_snapshot!("show_v1", out);
}

fn password() -> String {
    let text = read_repo("examples/registry-secret-auth.yaml");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("PASSWORD:"))
        .unwrap();
    line.split_once(':')
        .unwrap()
        .1
        .trim()
        .trim_matches('"')
        .to_string()
}

fn resolve(extra: &[&str]) -> String {
    let config = common::root().join("tests/fixtures/resolve/node/config.toml");
    let mut args = vec!["resolve", "docker.io/library/nginx:1.25", "--config"];
    let config = config.to_string_lossy().into_owned();
    args.push(&config);
    args.extend_from_slice(extra);
    let o = std::process::Command::new(common::BIN)
        .args(&args)
        .current_dir(common::root())
        .env("REGMIRROR_CONTAINERD_VERSION", "2.1.9")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn resolve_json_schema_v1() {
    let out = resolve(&["-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["schema"], "regmirror.resolve/v1");
    assert!(
        !out.contains("cm9ib3Q6c2VjcmV0"),
        "a header value was printed:\n{out}"
    );
    insta::assert_snapshot!("resolve_v1", out);
}

#[test]
fn resolve_text() {
    let out = resolve(&[]);
    assert!(
        !out.contains("cm9ib3Q6c2VjcmV0"),
        "a header value was printed:\n{out}"
    );
    insta::assert_snapshot!("resolve_text", out);
}
