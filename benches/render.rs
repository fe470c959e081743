//! Criterion benchmarks of regmirror's pure merge (`render::render`) and of `apply::plan`
//! (render plus the file reads `diff`/`apply` do), on generated inputs (see `common`).
//!
//! - `merge/*`: a ~1 MiB containerd v2 config.toml and a Secret with 1,000 mirrors, next to the
//!   toml_edit parse/print floor every surgical TOML edit pays.
//! - `scale/*`: render latency for 10 / 100 / 1,000 mirrors, on the stock 1.7 default file
//!   (~9 KiB) and on the 1 MiB file.
//! - `steady/*`: the agent's resync/no-op cost: re-rendering the same spec over its own output
//!   (takes the previous entries back out, writes them again, no change).
//!
//! Run: `cargo bench --bench render` (or `scripts/bench.sh`). Not run by CI.

mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use regmirror::apply::{self, Paths};
use regmirror::render::{ConfigOwnership, Mode, RenderInput, render};
use toml_edit::DocumentMut;

const CERTS: &str = "/etc/containerd/certs.d";

fn render_once(config: &str, prior: &ConfigOwnership, spec: &regmirror::spec::RegistrySpec) {
    let out = render(&RenderInput {
        config,
        prior,
        spec: Some(spec),
        mode: Mode::Auto,
        certs_dir: Path::new(CERTS),
        containerd: None,
        hosts: Default::default(),
    })
    .expect("render");
    black_box(out);
}

fn merge(c: &mut Criterion) {
    let config = common::config_1mib();
    let spec = common::spec(1000);
    let none = ConfigOwnership::default();
    let mut g = c.benchmark_group("merge");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6))
        .throughput(Throughput::Bytes(config.len() as u64));
    g.bench_function("toml_edit_parse_print/1mib", |b| {
        b.iter(|| {
            let doc: DocumentMut = black_box(&config).parse().expect("parse");
            black_box(doc.to_string());
        })
    });
    g.bench_function("render/1mib_1000", |b| {
        b.iter(|| render_once(black_box(&config), &none, &spec))
    });
    // apply::plan = what `regmirror diff` computes and `apply` writes: reads state and
    // config.toml, renders, checks `imports`, compares with the disk.
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = Paths {
        config: dir.path().join("config.toml"),
        certs_dir: dir.path().join("certs.d"),
        state_dir: dir.path().join("state"),
    };
    std::fs::write(&paths.config, &config).expect("write config");
    g.bench_function("plan/1mib_1000", |b| {
        b.iter(|| black_box(apply::plan(&paths, Some(&spec), Mode::Auto).expect("plan")))
    });
    g.finish();
}

fn scale(c: &mut Criterion) {
    let big = common::config_1mib();
    let none = ConfigOwnership::default();
    let mut g = c.benchmark_group("scale");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (name, config) in [("default", common::DEFAULT_CONFIG), ("1mib", big.as_str())] {
        for n in [10usize, 100, 1000] {
            let spec = common::spec(n);
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| render_once(black_box(config), &none, &spec))
            });
        }
    }
    g.finish();
}

fn steady(c: &mut Criterion) {
    let mut g = c.benchmark_group("steady");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let big = common::config_1mib();
    for (name, config) in [("default", common::DEFAULT_CONFIG), ("1mib", big.as_str())] {
        let spec = common::spec(1000);
        let first = render(&RenderInput {
            config,
            prior: &ConfigOwnership::default(),
            spec: Some(&spec),
            mode: Mode::Auto,
            certs_dir: Path::new(CERTS),
            containerd: None,
            hosts: Default::default(),
        })
        .expect("first render");
        g.bench_function(BenchmarkId::new(name, 1000), |b| {
            b.iter(|| render_once(black_box(&first.config), &first.ownership, &spec))
        });
    }
    g.bench_function("parse_spec/1000", |b| {
        let data = common::secret_data(&common::mirror_list(1000));
        b.iter(|| black_box(regmirror::spec::parse_spec(black_box(&data)).expect("spec")))
    });
    g.finish();
}

criterion_group!(benches, merge, scale, steady);
criterion_main!(benches);
