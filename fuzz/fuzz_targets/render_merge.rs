//! Arbitrary TOML as config.toml: render + merge never panics, and whenever it accepts a file,
//! taking regmirror's values back out gives the original bytes exactly.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use regmirror::render::{ConfigOwnership, Mode, RenderInput, render};
use regmirror::spec::{SecretData, parse_spec};

fuzz_target!(|data: &[u8]| {
    let Ok(config) = std::str::from_utf8(data) else { return };
    let mut secret = SecretData::new();
    for (k, v) in [
        ("DOMAIN", "harbor.example.org"),
        ("BASE_PATH", "p"),
        ("INSECURE", "true"),
        ("USERNAME", "u"),
        ("PASSWORD", "pw"),
        ("MIRROR_REGISTRIES", "docker.io::harbor.example.org/p/docker.io,*::harbor.example.org/p/all,quay.io::"),
    ] {
        secret.insert(k.into(), v.as_bytes().to_vec());
    }
    let spec = parse_spec(&secret).expect("fixed spec is valid");
    for mode in [Mode::Auto, Mode::Legacy, Mode::Hosts] {
        let input = RenderInput {
            config,
            prior: &ConfigOwnership::default(),
            spec: Some(&spec),
            mode,
            certs_dir: Path::new("/etc/containerd/certs.d"),
            containerd: None,
            hosts: Default::default(),
        };
        let Ok(applied) = render(&input) else { continue };
        let reverted = render(&RenderInput {
            config: &applied.config,
            prior: &applied.ownership,
            spec: None,
            mode,
            certs_dir: Path::new("/etc/containerd/certs.d"),
            containerd: None,
            hosts: Default::default(),
        })
        .expect("revert of an accepted render works");
        assert_eq!(reverted.config, config, "apply then revert is byte-identical");
        // The surgical path (the file was edited since): no panic, and the same document back.
        let mut surgical = applied.ownership.clone();
        surgical.snapshot = None;
        let back = render(&RenderInput {
            config: &applied.config,
            prior: &surgical,
            spec: None,
            mode,
            certs_dir: Path::new("/etc/containerd/certs.d"),
            containerd: None,
            hosts: Default::default(),
        })
        .expect("surgical revert of an accepted render works");
        assert_eq!(
            regmirror::render::canonical(&back.config),
            regmirror::render::canonical(config),
            "surgical revert gives the same document"
        );
    }
});
