//! Config version → plugin table, and the `config_path` lookup. The one place that knows which
//! table containerd reads registry settings from.

use toml_edit::{DocumentMut, Item};

use super::RenderError;

/// The `version` of a config.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigVersion {
    /// No `version` key: containerd reads the file as version 1.
    V1,
    V2,
    /// Version 3 and later (4 exists from containerd 2.3).
    V3Plus(i64),
}

/// Read `version`: absent → 1; an integer 1, 2 or ≥ 3; anything else is an error.
pub fn detect(doc: &DocumentMut) -> Result<ConfigVersion, RenderError> {
    match doc.get("version") {
        None => Ok(ConfigVersion::V1),
        Some(Item::Value(v)) => match v.as_integer() {
            Some(1) => Ok(ConfigVersion::V1),
            Some(2) => Ok(ConfigVersion::V2),
            Some(n) if n >= 3 => Ok(ConfigVersion::V3Plus(n)),
            _ => Err(RenderError::BadVersion {
                value: v.to_string().trim().to_string(),
            }),
        },
        Some(_) => Err(RenderError::VersionNotInteger),
    }
}

/// The key path of the CRI registry table for this version.
pub fn registry_table(version: ConfigVersion) -> Vec<String> {
    let plugin = match version {
        ConfigVersion::V1 => "cri",
        ConfigVersion::V2 => "io.containerd.grpc.v1.cri",
        ConfigVersion::V3Plus(_) => "io.containerd.cri.v1.images",
    };
    vec!["plugins".into(), plugin.into(), "registry".into()]
}

/// The item at `path`, if every step is a table (standard, dotted or inline).
pub fn lookup<'a>(doc: &'a DocumentMut, path: &[String]) -> Option<&'a Item> {
    let mut item = doc.as_item();
    for seg in path {
        item = item.as_table_like()?.get(seg)?;
    }
    Some(item)
}

/// `config_path` as containerd reads it: `""` is unset; a colon-separated list names several
/// directories, the first of which is where hosts.toml files are written.
pub fn config_path(doc: &DocumentMut, version: ConfigVersion) -> Option<Vec<String>> {
    let mut path = registry_table(version);
    path.push("config_path".into());
    split_config_path(lookup(doc, &path)?.as_str()?)
}

/// A `config_path` value as containerd reads it: `""` is unset, `a:b` names two directories.
pub fn split_config_path(s: &str) -> Option<Vec<String>> {
    let dirs: Vec<String> = s
        .split(':')
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect();
    (!dirs.is_empty()).then_some(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_config_path() {
        let d: DocumentMut = "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\nconfig_path = '/a:/b'\n".parse().unwrap();
        let v = detect(&d).unwrap();
        assert_eq!(v, ConfigVersion::V3Plus(3));
        assert_eq!(config_path(&d, v).unwrap(), vec!["/a", "/b"]);
        let d: DocumentMut = "[plugins.cri.registry]\nconfig_path = ''\n"
            .parse()
            .unwrap();
        assert_eq!(detect(&d).unwrap(), ConfigVersion::V1);
        assert_eq!(config_path(&d, ConfigVersion::V1), None);
        let d: DocumentMut = "version = 'x'\n".parse().unwrap();
        assert!(detect(&d).is_err());
    }
}
