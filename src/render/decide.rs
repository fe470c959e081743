//! Which way to configure mirrors, and in which table, for this containerd and this file: the
//! decision table of the README ("containerd version × config version"), in one place. Pure.
//!
//! | containerd | file v1 (no `version`) | file v2 | file v3 / v4 |
//! |---|---|---|---|
//! | ≥ 2.0 | hosts, `io.containerd.cri.v1.images` | hosts, `io.containerd.grpc.v1.cri` (2.x migrates it) | hosts, `io.containerd.cri.v1.images` |
//! | < 2.0 or unknown | legacy, `cri` (hosts if `config_path` is set) | legacy, `io.containerd.grpc.v1.cri` (hosts if `config_path` is set) | hosts, `io.containerd.cri.v1.images` |
//!
//! `--mode legacy` on ≥ 2.0 is refused when the spec needs what 2.x ignores (CA_CERT, INSECURE:
//! `configs.*.tls` is dropped) or the file is version 1 (2.x ignores `plugins.cri`); otherwise it
//! is written with a deprecation warning.

use toml_edit::DocumentMut;

use super::version::{self, ConfigVersion};
use super::{Mode, RenderError, WriteMode};
use crate::runtime::ContainerdVersion;
use crate::spec::RegistrySpec;

/// The CRI image plugin id of containerd ≥ 2.0 (and of version ≥ 3 files).
const IMAGES_PLUGIN: &str = "io.containerd.cri.v1.images";

/// What the renderer writes, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub resolved: WriteMode,
    /// The key path of the registry table the running containerd reads.
    pub registry: Vec<String>,
    pub warnings: Vec<String>,
}

/// The registry table containerd `runtime` reads for a file of `file` version.
pub fn registry_table(runtime: Option<ContainerdVersion>, file: ConfigVersion) -> Vec<String> {
    match (runtime.is_some_and(ContainerdVersion::is_2x), file) {
        (true, ConfigVersion::V1) => {
            vec!["plugins".into(), IMAGES_PLUGIN.into(), "registry".into()]
        }
        _ => version::registry_table(file),
    }
}

/// `config_path` as the running containerd reads it from this file (see [`version::config_path`]).
pub fn config_path(
    doc: &DocumentMut,
    runtime: Option<ContainerdVersion>,
    file: ConfigVersion,
) -> Option<Vec<String>> {
    let mut path = registry_table(runtime, file);
    path.push("config_path".into());
    version::split_config_path(version::lookup(doc, &path)?.as_str()?)
}

/// Decide mode and table. `Err` when the asked-for mode cannot work on this containerd.
pub fn decide(
    mode: Mode,
    runtime: Option<ContainerdVersion>,
    file: ConfigVersion,
    doc: &DocumentMut,
    spec: &RegistrySpec,
) -> Result<Decision, RenderError> {
    if let Some(v) = runtime {
        readable(v, file)?;
    }
    let registry = registry_table(runtime, file);
    let has_config_path = config_path(doc, runtime, file).is_some();
    let v3 = matches!(file, ConfigVersion::V3Plus(_));
    let mut warnings = Vec::new();
    let resolved = match (mode, runtime.filter(|v| v.is_2x())) {
        (Mode::Hosts, _) => WriteMode::Hosts,
        (Mode::Auto, Some(_)) => WriteMode::Hosts,
        (Mode::Auto, None) if v3 || has_config_path => WriteMode::Hosts,
        (Mode::Auto, None) => WriteMode::Legacy,
        (Mode::Legacy, None) => WriteMode::Legacy,
        (Mode::Legacy, Some(v)) => {
            legacy_on_2x(v, file, spec)?;
            warnings.push(format!(
                "containerd {v} deprecates the legacy registry.mirrors/configs (CRI pulls fall back to the local pull path, the Transfer Service ignores them); --mode hosts or auto writes config_path + hosts.toml instead"
            ));
            WriteMode::Legacy
        }
    };
    if resolved == WriteMode::Legacy && v3 {
        return Err(RenderError::LegacyNeedsV2);
    }
    Ok(Decision {
        resolved,
        registry,
        warnings,
    })
}

/// containerd ≥ 2.1 pulls through the transfer service, which does not split a
/// colon-separated `config_path` (it looks for hosts.toml under the literal `a:b` directory;
/// measured with 2.1.9, containerd issues #12415 and #12636): a list there is as good as no
/// `config_path` at all.
fn list_ignored(runtime: Option<ContainerdVersion>) -> bool {
    runtime.is_some_and(|v| v >= ContainerdVersion::new(2, 1, 0))
}

/// Whether hosts mode writes (owns) `config_path`: when the file sets none, or sets a list that
/// this containerd would not split (then the first directory alone is written while applied;
/// revert gives the list back).
pub fn writes_config_path(existing: Option<&[String]>, runtime: Option<ContainerdVersion>) -> bool {
    match existing {
        None => true,
        Some(dirs) => dirs.len() > 1 && list_ignored(runtime),
    }
}

/// The warning for [`writes_config_path`]'s second case.
pub fn split_list_warning(
    existing: Option<&[String]>,
    runtime: Option<ContainerdVersion>,
) -> Option<String> {
    let dirs = existing.filter(|d| d.len() > 1 && list_ignored(runtime))?;
    Some(format!(
        "config_path lists {} directories; containerd {} (transfer service) does not split the list and would find no hosts.toml at all, so regmirror sets config_path = {:?} while applied (revert restores the list)",
        dirs.len(),
        runtime.map(|v| v.to_string()).unwrap_or_default(),
        dirs[0]
    ))
}

/// The newest config version `v` reads: 2 before 2.0 (1.7 refuses to start on a version 3
/// file, 1.6 reads it as version 2 and ignores its `io.containerd.cri.v1.*` tables), 3 up to
/// 2.2, 4 from 2.3.
pub fn max_config_version(v: ContainerdVersion) -> i64 {
    match (v.major, v.minor) {
        (1, _) => 2,
        (2, 0..=2) => 3,
        _ => 4,
    }
}

/// Refuse a file the running containerd cannot read (or would read without its registry table).
fn readable(v: ContainerdVersion, file: ConfigVersion) -> Result<(), RenderError> {
    let n = match file {
        ConfigVersion::V1 => 1,
        ConfigVersion::V2 => 2,
        ConfigVersion::V3Plus(n) => n,
    };
    let max = max_config_version(v);
    if n <= max {
        return Ok(());
    }
    Err(RenderError::TooNewForRuntime {
        runtime: v,
        max,
        file: n,
    })
}

/// Refuse legacy mode on containerd ≥ 2.0 when what it would write is ignored there.
fn legacy_on_2x(
    v: ContainerdVersion,
    file: ConfigVersion,
    spec: &RegistrySpec,
) -> Result<(), RenderError> {
    let mut ignored = Vec::new();
    if file == ConfigVersion::V1 {
        ignored.push("a version 1 file's plugins.cri tables (all of them)");
    }
    if spec.ca.is_some() {
        ignored.push("CA_CERT (registry.configs.<host>.tls.ca_file)");
    }
    if spec.insecure {
        ignored.push("INSECURE (registry.configs.<host>.tls.insecure_skip_verify)");
    }
    if ignored.is_empty() {
        return Ok(());
    }
    Err(RenderError::LegacyIgnored {
        runtime: v,
        ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{SecretData, parse_spec};

    fn spec(extra: &[(&str, &str)]) -> RegistrySpec {
        let mut data = SecretData::default();
        for (k, v) in [
            ("DOMAIN", "harbor.example.org"),
            ("BASE_PATH", "airgap-images"),
            ("INSECURE", "false"),
            (
                "MIRROR_REGISTRIES",
                "docker.io::harbor.example.org/airgap-images/docker.io",
            ),
        ]
        .iter()
        .chain(extra)
        {
            data.insert(k.to_string(), v.as_bytes().to_vec());
        }
        parse_spec(&data).unwrap()
    }

    const V2: ContainerdVersion = ContainerdVersion::new(2, 1, 9);
    const V1_7: ContainerdVersion = ContainerdVersion::new(1, 7, 24);
    const V2_3: ContainerdVersion = ContainerdVersion::new(2, 3, 0);

    #[test]
    fn the_readme_table() {
        let s = spec(&[]);
        let empty = DocumentMut::new();
        let cases = [
            (Some(V2), ConfigVersion::V1, WriteMode::Hosts, IMAGES_PLUGIN),
            (
                Some(V2),
                ConfigVersion::V2,
                WriteMode::Hosts,
                "io.containerd.grpc.v1.cri",
            ),
            (
                Some(V2),
                ConfigVersion::V3Plus(3),
                WriteMode::Hosts,
                IMAGES_PLUGIN,
            ),
            (
                Some(V2_3),
                ConfigVersion::V3Plus(4),
                WriteMode::Hosts,
                IMAGES_PLUGIN,
            ),
            (Some(V1_7), ConfigVersion::V1, WriteMode::Legacy, "cri"),
            (
                Some(V1_7),
                ConfigVersion::V2,
                WriteMode::Legacy,
                "io.containerd.grpc.v1.cri",
            ),
            (
                None,
                ConfigVersion::V2,
                WriteMode::Legacy,
                "io.containerd.grpc.v1.cri",
            ),
            (
                None,
                ConfigVersion::V3Plus(3),
                WriteMode::Hosts,
                IMAGES_PLUGIN,
            ),
        ];
        for (rt, file, mode, plugin) in cases {
            let d = decide(Mode::Auto, rt, file, &empty, &s).unwrap();
            assert_eq!(
                (d.resolved, d.registry[1].as_str()),
                (mode, plugin),
                "{rt:?} {file:?}"
            );
        }
    }

    #[test]
    fn legacy_on_2x_refuses_what_2x_ignores() {
        let empty = DocumentMut::new();
        let plain = spec(&[]);
        let d = decide(Mode::Legacy, Some(V2), ConfigVersion::V2, &empty, &plain).unwrap();
        assert_eq!(d.resolved, WriteMode::Legacy);
        assert!(d.warnings[0].contains("deprecates"), "{:?}", d.warnings);
        let e = decide(Mode::Legacy, Some(V2), ConfigVersion::V1, &empty, &plain).unwrap_err();
        assert!(e.to_string().contains("version 1 file"), "{e}");
        let insecure = spec(&[]);
        let insecure = RegistrySpec {
            insecure: true,
            ..insecure
        };
        let e = decide(Mode::Legacy, Some(V2), ConfigVersion::V2, &empty, &insecure).unwrap_err();
        assert!(e.to_string().contains("INSECURE"), "{e}");
        // 1.7 takes all of it.
        decide(
            Mode::Legacy,
            Some(V1_7),
            ConfigVersion::V2,
            &empty,
            &insecure,
        )
        .unwrap();
    }

    #[test]
    fn files_newer_than_the_runtime_are_refused() {
        let empty = DocumentMut::new();
        let s = spec(&[]);
        let e = decide(Mode::Auto, Some(V1_7), ConfigVersion::V3Plus(3), &empty, &s).unwrap_err();
        assert!(
            e.to_string().contains("reads config versions up to 2"),
            "{e}"
        );
        let e = decide(Mode::Auto, Some(V2), ConfigVersion::V3Plus(4), &empty, &s).unwrap_err();
        assert!(e.to_string().contains("up to 3"), "{e}");
        let v2_3 = ContainerdVersion::new(2, 3, 0);
        decide(Mode::Auto, Some(v2_3), ConfigVersion::V3Plus(4), &empty, &s).unwrap();
        decide(Mode::Auto, None, ConfigVersion::V3Plus(4), &empty, &s).unwrap();
    }

    #[test]
    fn config_path_lists_are_replaced_where_containerd_would_not_split_them() {
        let list = vec!["/a".to_string(), "/b".to_string()];
        let one = vec!["/a".to_string()];
        assert!(writes_config_path(None, Some(V1_7)));
        assert!(!writes_config_path(Some(&list), Some(V1_7)));
        assert!(!writes_config_path(
            Some(&list),
            Some(ContainerdVersion::new(2, 0, 5))
        ));
        assert!(writes_config_path(Some(&list), Some(V2)));
        assert!(!writes_config_path(Some(&one), Some(V2)));
        assert!(!writes_config_path(Some(&list), None));
        assert!(split_list_warning(Some(&list), Some(V2)).is_some());
    }

    #[test]
    fn config_path_is_read_where_that_containerd_reads_it() {
        let doc: DocumentMut = "[plugins.cri.registry]\nconfig_path = '/a'\n"
            .parse()
            .unwrap();
        assert_eq!(
            config_path(&doc, Some(V1_7), ConfigVersion::V1),
            Some(vec!["/a".into()])
        );
        assert_eq!(config_path(&doc, Some(V2), ConfigVersion::V1), None);
    }
}
