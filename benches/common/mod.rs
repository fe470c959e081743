//! Benchmark inputs, shared by `benches/render.rs` (criterion) and `benches/agent/` (the
//! end-to-end drivers). Everything is generated deterministically, so the Rust benchmarks, the
//! CLI runs and the Python tomlkit comparison all see the very same bytes (`agent fixtures DIR`
//! writes them out).

#![allow(dead_code)]

use std::fmt::Write as _;

use regmirror::spec::{RegistrySpec, SecretData, parse_spec};

/// A real `containerd config default` (1.7, config version 2), as shipped by the test fixtures.
pub const DEFAULT_CONFIG: &str =
    include_str!("../../tests/fixtures/configs/containerd-1.7-default.toml");

/// The mirror registry every generated entry points at.
pub const DOMAIN: &str = "harbor.example.org";
pub const BASE_PATH: &str = "airgap-images";

/// `reg1.example::harbor.example.org/airgap-images/reg1,…` with `n` entries.
pub fn mirror_list(n: usize) -> String {
    (1..=n)
        .map(|i| format!("reg{i}.example::{DOMAIN}/{BASE_PATH}/reg{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The endpoint containerd needs for entry `i` of [`mirror_list`] (what both the regmirror
/// render and the tomlkit script must write).
pub fn endpoint(i: usize) -> String {
    format!("https://{DOMAIN}/v2/{BASE_PATH}/reg{i}")
}

/// The Secret's data for a MIRROR_REGISTRIES list (no credentials, no CA, INSECURE=false, so
/// that the only edit is the `mirrors."<src>".endpoint` arrays, as in the tomlkit script).
pub fn secret_data(list: &str) -> SecretData {
    [
        ("DOMAIN", DOMAIN),
        ("BASE_PATH", BASE_PATH),
        ("INSECURE", "false"),
        ("MIRROR_REGISTRIES", list),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect()
}

/// The same data as a plain `BTreeMap<String, String>` (the fake API server's input).
pub fn secret_strings(list: &str) -> std::collections::BTreeMap<String, String> {
    secret_data(list)
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v).expect("ascii")))
        .collect()
}

/// A validated spec with `n` mirrors.
pub fn spec(n: usize) -> RegistrySpec {
    parse_spec(&secret_data(&mirror_list(n))).expect("generated spec is valid")
}

/// The Secret manifest (`--secret-file`) for a MIRROR_REGISTRIES list.
pub fn secret_yaml(list: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: registry-info\n  namespace: jet-system\ntype: Opaque\nstringData:\n  DOMAIN: \"{DOMAIN}\"\n  BASE_PATH: \"{BASE_PATH}\"\n  INSECURE: \"false\"\n  MIRROR_REGISTRIES: \"{list}\"\n"
    )
}

/// One padding plugin table (~600 bytes): comments, strings of every kind, numbers, arrays, an
/// inline table, a sub-table and an array of tables, i.e. what admin-written plugin sections
/// look like. Not a real containerd plugin (containerd ignores unknown plugin tables' keys).
fn pad_table(out: &mut String, i: usize) {
    let id = format!("io.containerd.bench.v1.pad{i:05}");
    let _ = write!(
        out,
        r#"
  # Plugin pad{i:05}: site-specific settings kept by the node team (ticket OPS-{i}).
  # Do not edit by hand; regenerate with the fleet tooling.
  [plugins."{id}"]
    enabled = {enabled}
    address = "/run/containerd/bench/pad{i:05}.sock" # socket
    root = '/var/lib/containerd/{id}'
    timeout = "{t}s"
    max_concurrent = {mc}
    ratio = 0.{r:02}
    labels = ["zone-{z}", "rack-{rk}", "tier-gold", "pool-{i}"]
    limits = {{ cpu = "{c}m", memory = "{m}Mi", pids = {p} }}

    [plugins."{id}".options]
      BinaryName = ""
      SystemdCgroup = true
      Root = """/run/containerd/
pad{i:05}"""

    [[plugins."{id}".hooks]]
      name = "pre-{i}"
      args = ["--id", "{i}", "--verbose"]
"#,
        enabled = !i.is_multiple_of(3),
        t = 5 + i % 55,
        mc = 1 + i % 32,
        r = i % 100,
        z = i % 7,
        rk = i % 41,
        c = 100 + i % 900,
        m = 64 + i % 4000,
        p = 100 + i % 1000,
    );
}

/// A realistic containerd v2 config.toml grown to at least `target` bytes: the 1.7 default file
/// with padding plugin tables, half of them before the CRI plugin table and half after it (so
/// the registry table sits in the middle of the file).
pub fn padded_config(target: usize) -> String {
    let cri = "\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n";
    let tail = "\n[proxy_plugins]\n";
    let (a, rest) = DEFAULT_CONFIG.split_at(DEFAULT_CONFIG.find(cri).expect("CRI table"));
    let (b, c) = rest.split_at(rest.find(tail).expect("[proxy_plugins]"));
    let mut one = String::new();
    pad_table(&mut one, 0);
    let per = one.len();
    let n = (target.saturating_sub(DEFAULT_CONFIG.len())).div_ceil(per) + 1;
    let mut out = String::with_capacity(target + 2 * per);
    out.push_str(a);
    for i in 1..=n / 2 {
        pad_table(&mut out, i);
    }
    out.push_str(b);
    for i in n / 2 + 1..=n {
        pad_table(&mut out, i);
    }
    out.push_str(c);
    out
}

/// The ~1 MiB config of the merge benchmark.
pub fn config_1mib() -> String {
    padded_config(1 << 20)
}

/// The 1.7 default file with `n` admin-written `mirrors."regN.example"` tables (not regmirror's:
/// no state names them), as a node image that predates regmirror may carry. 1,000 of them make
/// the 165 KB config of issue 13's floor comparison; with such mirrors `auto` picks legacy mode
/// on containerd 1.7, so the Secret's mirrors are added as tables next to them.
pub fn admin_mirrors_config(n: usize) -> String {
    let head = "      [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors]\n";
    let at = DEFAULT_CONFIG.find(head).expect("registry.mirrors table") + head.len();
    let mut out = String::with_capacity(DEFAULT_CONFIG.len() + n * 160);
    out.push_str(&DEFAULT_CONFIG[..at]);
    for i in 1..=n {
        let _ = write!(
            out,
            "\n        [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"reg{i}.example\"]\n          endpoint = [\"{}\"]\n",
            endpoint(i)
        );
    }
    out.push_str(&DEFAULT_CONFIG[at..]);
    out
}

/// The seed's Secret manifest (`examples/registry-secret.yaml`: 7 mirrors, no credentials).
pub const SEED_SECRET: &str = include_str!("../../examples/registry-secret.yaml");

/// The MIRROR_REGISTRIES value of [`SEED_SECRET`].
pub fn seed_mirror_list() -> String {
    SEED_SECRET
        .lines()
        .find_map(|l| l.trim().strip_prefix("MIRROR_REGISTRIES:"))
        .expect("MIRROR_REGISTRIES in the seed Secret")
        .trim()
        .trim_matches('"')
        .to_string()
}

/// Median of a sample (sorted copy).
pub fn median(xs: &[f64]) -> f64 {
    percentile(xs, 50.0)
}

/// Nearest-rank percentile of a sample.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}
