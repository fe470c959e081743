//! The kubelet side of the CRI for one pod: `RunPodSandbox`, `CreateContainer`,
//! `StartContainer`, status, and the teardown, over a node's containerd socket (seen from the
//! host through `/proc/<leader>/root`). Every call is bounded by [`CALL_TIMEOUT`]; a fresh
//! connection is made per call, since the test restarts that containerd under it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::translate::PodPlan;

/// Upper bound for one CRI call (pod sandbox creation included).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A container as `ContainerStatus(verbose)` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: cri::ContainerState,
    pub started_at: i64,
    /// The init process, as a PID of the node's PID namespace.
    pub pid: u32,
    pub exit_code: i32,
    pub reason: String,
}

/// The CRI runtime service of the containerd at `socket`.
pub struct Runtime {
    socket: PathBuf,
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(socket: &Path) -> Result<RuntimeServiceClient<Channel>, String> {
    let path = socket.to_path_buf();
    let channel = Endpoint::from_static("http://localhost")
        .connect_timeout(Duration::from_secs(3))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move { UnixStream::connect(p).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|e| format!("connect {}: {e}", socket.display()))?;
    Ok(RuntimeServiceClient::new(channel))
}

impl Runtime {
    pub fn new(socket: PathBuf) -> Runtime {
        Runtime { socket }
    }

    /// Runs `call` on a fresh client, bounded by [`CALL_TIMEOUT`].
    fn call<T, F>(
        &self,
        what: &str,
        call: impl FnOnce(RuntimeServiceClient<Channel>) -> F,
    ) -> Result<T, String>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        rt().block_on(async {
            let client = connect(&self.socket).await?;
            match tokio::time::timeout(CALL_TIMEOUT, call(client)).await {
                Ok(Ok(r)) => Ok(r.into_inner()),
                Ok(Err(s)) => Err(format!("CRI {what}: {:?}: {}", s.code(), s.message())),
                Err(_) => Err(format!("CRI {what}: no answer within {CALL_TIMEOUT:?}")),
            }
        })
    }

    /// RunPodSandbox + CreateContainer + StartContainer: kubelet's steps for a new pod.
    /// Returns (sandbox id, container id).
    pub fn run_pod(&self, plan: &PodPlan) -> Result<(String, String), String> {
        let config = plan.sandbox.clone();
        let sandbox = self
            .call("RunPodSandbox", |mut c| async move {
                c.run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: String::new(),
                })
                .await
            })?
            .pod_sandbox_id;
        let (config, sandbox_config, id) = (
            plan.container.clone(),
            plan.sandbox.clone(),
            sandbox.clone(),
        );
        let container = self
            .call("CreateContainer", |mut c| async move {
                c.create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: id,
                    config: Some(config),
                    sandbox_config: Some(sandbox_config),
                })
                .await
            })?
            .container_id;
        let id = container.clone();
        self.call("StartContainer", |mut c| async move {
            c.start_container(cri::StartContainerRequest { container_id: id })
                .await
        })?;
        Ok((sandbox, container))
    }

    /// `ContainerStatus(verbose)`: state, start time, init PID (from `info["info"]`).
    pub fn container(&self, id: &str) -> Result<Status, String> {
        let id = id.to_string();
        let resp = self.call("ContainerStatus", |mut c| async move {
            c.container_status(cri::ContainerStatusRequest {
                container_id: id,
                verbose: true,
            })
            .await
        })?;
        let st = resp.status.ok_or("ContainerStatus without a status")?;
        let info: serde_json::Value = resp
            .info
            .get("info")
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or_default();
        Ok(Status {
            state: cri::ContainerState::try_from(st.state)
                .unwrap_or(cri::ContainerState::ContainerUnknown),
            started_at: st.started_at,
            pid: info["pid"].as_u64().unwrap_or(0) as u32,
            exit_code: st.exit_code,
            reason: st.reason,
        })
    }

    /// `PodSandboxStatus`: true when the sandbox is READY.
    pub fn sandbox_ready(&self, id: &str) -> Result<bool, String> {
        let id = id.to_string();
        let resp = self.call("PodSandboxStatus", |mut c| async move {
            c.pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id,
                verbose: false,
            })
            .await
        })?;
        Ok(resp.status.map(|s| s.state) == Some(cri::PodSandboxState::SandboxReady as i32))
    }

    /// StopContainer: SIGTERM, SIGKILL after `grace_secs`.
    pub fn stop_container(&self, container: &str, grace_secs: i64) -> Result<(), String> {
        let id = container.to_string();
        self.call("StopContainer", |mut c| async move {
            c.stop_container(cri::StopContainerRequest {
                container_id: id,
                timeout: grace_secs,
            })
            .await
        })?;
        Ok(())
    }

    /// StopContainer (SIGTERM, SIGKILL after `grace_secs`), then the sandbox's stop and
    /// removal (which removes its containers and cgroups too).
    pub fn remove_pod(
        &self,
        sandbox: &str,
        container: &str,
        grace_secs: i64,
    ) -> Result<(), String> {
        self.stop_container(container, grace_secs)?;
        let id = sandbox.to_string();
        self.call("StopPodSandbox", |mut c| async move {
            c.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id })
                .await
        })?;
        let id = sandbox.to_string();
        self.call("RemovePodSandbox", |mut c| async move {
            c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                .await
        })?;
        Ok(())
    }
}
