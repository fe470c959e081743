//! Arbitrary MIRROR_REGISTRIES values: the parser never panics, and whatever it accepts renders
//! into config.toml and hosts.toml texts that parse back with exactly the mirrors it accepted
//! (no input can inject TOML structure).
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use regmirror::render::{ConfigOwnership, Mode, RenderInput, render};
use regmirror::spec::{SecretData, parse_spec};

fuzz_target!(|data: &[u8]| {
    let Ok(list) = std::str::from_utf8(data) else { return };
    let mut secret = SecretData::new();
    for (k, v) in [("DOMAIN", "harbor.example.org"), ("BASE_PATH", "p"), ("INSECURE", "false")] {
        secret.insert(k.into(), v.as_bytes().to_vec());
    }
    secret.insert("MIRROR_REGISTRIES".into(), list.as_bytes().to_vec());
    let Ok(spec) = parse_spec(&secret) else { return };
    for mode in [Mode::Legacy, Mode::Hosts] {
        let r = render(&RenderInput {
            config: "version = 2\n",
            prior: &ConfigOwnership::default(),
            spec: Some(&spec),
            mode,
            certs_dir: Path::new("/etc/containerd/certs.d"),
            containerd: None,
            hosts: Default::default(),
        })
        .expect("a valid spec renders");
        let doc: toml_edit::DocumentMut = r.config.parse().expect("config parses");
        if mode == Mode::Legacy {
            let mirrors = doc["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["mirrors"]
                .as_table()
                .expect("mirrors table");
            assert_eq!(mirrors.len(), spec.mirrors.len(), "one mirror table per entry");
        } else {
            assert_eq!(r.files.len(), spec.mirrors.len());
            for f in &r.files {
                let t = String::from_utf8(f.contents.clone()).unwrap();
                t.parse::<toml_edit::DocumentMut>().expect("hosts.toml parses");
            }
        }
    }
});
