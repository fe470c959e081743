//! After a restart: did the running containerd really load what regmirror wrote?
//!
//! - containerd 1.x: CRI `Status(verbose)` carries the effective CRI config; its `registry`
//!   object must hold the written `config_path` (hosts mode) or exactly the written mirror
//!   endpoints (legacy mode).
//! - containerd 2.x: `Status` no longer carries the registry config (the image service moved to
//!   `io.containerd.cri.v1.images`, and neither introspection nor `ctr` exposes it). Hosts mode is
//!   proven by a canary pull instead: a throw-away `hosts.toml` for the reserved name
//!   `regmirror-canary.invalid` (RFC 6761: never resolves) whose only server is
//!   `http://127.0.0.1:9` (no fallback). A CRI pull of
//!   `regmirror-canary.invalid/probe-<nonce>:latest` then fails either naming
//!   `http://127.0.0.1:9/v2/probe-<nonce>/…` (config_path is loaded: containerd read the hosts
//!   directory) or naming the unresolvable host (it is not).
//!   Nothing leaves the node, no listener is needed (the refused connection is the answer), and
//!   the canary directory is removed again. Legacy mirrors on 2.x cannot be verified this way;
//!   that is reported, not hidden.

use std::path::Path;
use std::time::Duration;

use rand::Rng;

use crate::cri::{CriClient, CriError};
use crate::render::Expectation;

/// The registry name of the canary pull (a `.invalid` name: it never resolves).
pub const CANARY_HOST: &str = "regmirror-canary.invalid";
/// Bound for the canary pull (it fails at once when containerd is healthy).
const CANARY_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the loaded configuration is not the written one.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("containerd runs but did not load the registry configuration: {0}")]
    NotLoaded(String),
    #[error("cannot verify what containerd loaded: {0}")]
    Cri(#[from] CriError),
    #[error("cannot verify what containerd loaded: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Check `expect` against the containerd on `socket`. `Ok` says how it was proven.
pub async fn verify_loaded(socket: &Path, expect: &Expectation) -> Result<String, VerifyError> {
    let status = CriClient::connect(socket).await?.status().await?;
    let registry = status.config.as_ref().and_then(|c| c.get("registry"));
    match (registry, expect) {
        (Some(r), Expectation::ConfigPath(dir)) => check_config_path(r, dir),
        (Some(r), Expectation::Mirrors(want)) => check_mirrors(r, want),
        (None, Expectation::ConfigPath(dir)) => canary(socket, dir).await,
        (None, Expectation::Mirrors(_)) => Ok(
            "not verified: this containerd's CRI Status does not show legacy mirrors (2.x)".into(),
        ),
    }
}

fn check_config_path(registry: &serde_json::Value, dir: &Path) -> Result<String, VerifyError> {
    let loaded = registry["configPath"].as_str().unwrap_or("");
    let first = loaded.split(':').find(|d| !d.is_empty()).unwrap_or("");
    if Path::new(first) == dir {
        Ok(format!("CRI Status: config_path = {loaded:?}"))
    } else {
        Err(VerifyError::NotLoaded(format!(
            "CRI Status shows config_path = {loaded:?}, expected {}",
            dir.display()
        )))
    }
}

fn check_mirrors(
    registry: &serde_json::Value,
    want: &[(String, Vec<String>)],
) -> Result<String, VerifyError> {
    for (key, endpoints) in want {
        let loaded = &registry["mirrors"][key.as_str()]["endpoint"];
        let same = loaded.as_array().is_some_and(|a| {
            a.len() == endpoints.len()
                && a.iter().zip(endpoints).all(|(x, y)| x.as_str() == Some(y))
        }) || (endpoints.is_empty()
            && loaded.is_null()
            && registry["mirrors"].get(key).is_some());
        if !same {
            return Err(VerifyError::NotLoaded(format!(
                "CRI Status shows mirrors.{key:?}.endpoint = {loaded}, expected {endpoints:?}"
            )));
        }
    }
    Ok(format!("CRI Status: {} mirror(s) loaded", want.len()))
}

/// The canary pull (see the module docs).
async fn canary(socket: &Path, dir: &Path) -> Result<String, VerifyError> {
    let nonce = format!("{:012x}", rand::rng().random::<u64>() & 0xffff_ffff_ffff);
    let canary_dir = dir.join(CANARY_HOST);
    let file = canary_dir.join("hosts.toml");
    let io = |op: &'static str, p: &Path| {
        let path = p.display().to_string();
        move |source| VerifyError::Io { op, path, source }
    };
    std::fs::create_dir_all(&canary_dir).map_err(io("create", &canary_dir))?;
    let text =
        format!("# regmirror load check, removed right after it\nserver = \"{CANARY_SERVER}\"\n");
    let written = std::fs::write(&file, text).map_err(io("write", &file));
    let result = match written {
        Ok(()) => canary_pull(socket, &nonce).await,
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir(&canary_dir);
    result.map(|how| format!("{how} (config_path {})", dir.display()))
}

/// Where the canary's hosts.toml sends pulls: a closed local port (the refusal is the answer).
const CANARY_SERVER: &str = "http://127.0.0.1:9";

async fn canary_pull(socket: &Path, nonce: &str) -> Result<String, VerifyError> {
    let image = format!("{CANARY_HOST}/probe-{nonce}:latest");
    let marker = format!("{CANARY_SERVER}/v2/probe-{nonce}/");
    let mut client = CriClient::connect(socket).await?;
    let pulled = tokio::time::timeout(CANARY_TIMEOUT, client.pull_image(&image)).await;
    match pulled {
        Ok(Err(e)) if e.to_string().contains(&marker) => {
            Ok("canary pull used the hosts directory".into())
        }
        Ok(Err(e)) if e.is_unimplemented() => Err(VerifyError::Cri(e)),
        Ok(Err(e)) => Err(VerifyError::NotLoaded(format!(
            "a canary pull of {image} did not use {CANARY_HOST}/hosts.toml, so config_path is not in effect: {e}"
        ))),
        Ok(Ok(_)) => Ok("canary pull answered".into()),
        Err(_) => Err(VerifyError::NotLoaded(format!(
            "a canary pull of {image} did not finish within {CANARY_TIMEOUT:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_checks() {
        let r = json!({"configPath": "/etc/containerd/certs.d:/etc/docker/certs.d", "mirrors": {}});
        assert!(check_config_path(&r, Path::new("/etc/containerd/certs.d")).is_ok());
        assert!(check_config_path(&r, Path::new("/x")).is_err());
        assert!(check_config_path(&json!({"configPath": ""}), Path::new("/x")).is_err());
        let r = json!({"mirrors": {"docker.io": {"endpoint": ["https://h/v2/p"]}}});
        let want = vec![("docker.io".to_string(), vec!["https://h/v2/p".to_string()])];
        assert!(check_mirrors(&r, &want).is_ok());
        let other = vec![("docker.io".to_string(), vec!["https://h/v2/q".to_string()])];
        assert!(check_mirrors(&r, &other).is_err());
        let missing = vec![("quay.io".to_string(), vec!["https://h/v2/q".to_string()])];
        assert!(check_mirrors(&r, &missing).is_err());
    }
}
