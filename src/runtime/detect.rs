//! Asking the node which containerd runs: `--containerd-version` if given, else CRI
//! `RuntimeService/Version` over the socket (works on an edge host and in the DaemonSet), else
//! `containerd --version` (in the host's mount namespace from a hostPID pod). The only I/O of
//! this module's parent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ContainerdVersion, Runtime, VersionArg, VersionSource};
use crate::cri::CriClient;

/// How long the CRI Version call may take before the binary is asked instead.
const CRI_TIMEOUT: Duration = Duration::from_secs(3);

/// Where to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// An explicit version (or `unknown`): used as it is, nothing is asked.
    pub explicit: Option<VersionArg>,
    pub socket: PathBuf,
    /// Namespaces to run `containerd --version` in (1: the host's; 0: ours).
    pub host_pid: i32,
}

/// The node's containerd, or [`Runtime::unknown`] saying what was tried.
pub async fn detect(probe: &Probe) -> Runtime {
    if let Some(given) = explicit(probe) {
        return given;
    }
    let mut tried = Vec::new();
    match tokio::time::timeout(CRI_TIMEOUT, cri_version(&probe.socket)).await {
        Ok(Ok(v)) => {
            return Runtime::known(v, VersionSource::Cri(probe.socket.display().to_string()));
        }
        Ok(Err(e)) => tried.push(format!("CRI: {e}")),
        Err(_) => tried.push(format!(
            "CRI: no answer on {} within {CRI_TIMEOUT:?}",
            probe.socket.display()
        )),
    }
    match crate::hostexec::run_host(probe.host_pid, "containerd", &["--version"]).await {
        Ok(out) => match ContainerdVersion::find_in(&out) {
            Some(v) => return Runtime::known(v, VersionSource::Binary),
            None => tried.push(format!("containerd --version printed {:?}", out.trim())),
        },
        Err(e) => tried.push(e.to_string()),
    }
    Runtime::unknown(tried)
}

/// Blocking form of [`detect`] for the one-shot commands.
pub fn detect_blocking(probe: &Probe) -> Runtime {
    if let Some(given) = explicit(probe) {
        return given;
    }
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(detect(probe)),
        Err(e) => Runtime::unknown(vec![format!("no async runtime: {e}")]),
    }
}

fn explicit(probe: &Probe) -> Option<Runtime> {
    match probe.explicit? {
        VersionArg::Known(v) => Some(Runtime::known(v, VersionSource::Flag)),
        VersionArg::Unknown => Some(Runtime::unknown(vec![
            "--containerd-version unknown".into(),
        ])),
    }
}

async fn cri_version(socket: &Path) -> Result<ContainerdVersion, String> {
    let mut client = CriClient::connect(socket)
        .await
        .map_err(|e| e.to_string())?;
    let raw = client.version().await.map_err(|e| e.to_string())?;
    ContainerdVersion::find_in(&raw)
        .ok_or_else(|| format!("runtime_version {raw:?} is not a version"))
}
