//! CRI `runtime.v1` client over containerd's unix socket: `Version`, `Status`, `PullImage`.
//!
//! This is how the agent proves that containerd really came back after a restart, and what it
//! really loaded: [`CriClient::status`] asks for `Status(verbose=true)`, whose `info["config"]`
//! is the effective CRI configuration as JSON (registry mirrors, `config_path`, ...), which is
//! the only trustworthy view (`containerd config dump` does not run the CRI plugin's checks).
//!
//! A containerd whose CRI plugin failed to load (for example `config_path` together with legacy
//! `mirrors`) still serves its own gRPC API on the same socket and answers every CRI call with
//! `UNIMPLEMENTED`: that is [`CriError::Unimplemented`], never healthy, and
//! [`wait_healthy`] gives up on it at once instead of polling until the deadline.
//!
//! Only `runtime.v1` is spoken (containerd ≥ 1.5); `v1alpha2` is gone from containerd 2.0.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{ImageSpec, PullImageRequest, StatusRequest, VersionRequest};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// The CRI condition type that says the container runtime is up.
const RUNTIME_READY: &str = "RuntimeReady";
/// The CRI condition type that says the pod network (CNI) is configured.
const NETWORK_READY: &str = "NetworkReady";
/// Upper bound for one attempt (connect + Version + Status) inside [`wait_healthy`].
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between two attempts of [`wait_healthy`].
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Errors of the CRI client. Every message names the socket it was talking to.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The unix socket could not be connected (missing, refused, permission...).
    #[error("cannot connect to the CRI socket {}: {detail}", socket.display())]
    Connect {
        /// The socket path.
        socket: PathBuf,
        /// The transport error with its whole cause chain.
        detail: String,
    },
    /// containerd answered `UNIMPLEMENTED`: the socket is served, but not the CRI API.
    #[error(
        "CRI {call} on {}: UNIMPLEMENTED ({message}): containerd runs but its CRI plugin is not \
         loaded (see containerd's log for the plugin error, e.g. `mirrors` together with `config_path`)",
        socket.display()
    )]
    Unimplemented {
        /// The socket path.
        socket: PathBuf,
        /// The RPC that was called, e.g. `RuntimeService/Version`.
        call: &'static str,
        /// The gRPC status message.
        message: String,
    },
    /// Any other gRPC error status.
    #[error("CRI {call} on {} failed: {code:?}: {message}", socket.display())]
    Rpc {
        /// The socket path.
        socket: PathBuf,
        /// The RPC that was called.
        call: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The gRPC status message.
        message: String,
    },
    /// The call did not finish in time.
    #[error("CRI {call} on {} did not answer within {timeout:?}", socket.display())]
    CallTimeout {
        /// The socket path.
        socket: PathBuf,
        /// The RPC (or `connect`) that timed out.
        call: &'static str,
        /// The bound that was exceeded.
        timeout: Duration,
    },
    /// `Status` answered, but the `RuntimeReady` condition is not true.
    #[error("CRI runtime on {} is not ready: {reason}", socket.display())]
    NotReady {
        /// The socket path.
        socket: PathBuf,
        /// The condition's reason and message, or why it is missing.
        reason: String,
    },
    /// `Status(verbose)` carried an `info["config"]` that is not JSON.
    #[error("CRI Status on {}: info[\"config\"] is not valid JSON: {source}", socket.display())]
    BadConfigJson {
        /// The socket path.
        socket: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// [`wait_healthy`] ran out of time; `last` is the last attempt's error.
    #[error("CRI on {} not healthy after {timeout:?}: {last}", socket.display())]
    Timeout {
        /// The socket path.
        socket: PathBuf,
        /// The overall bound.
        timeout: Duration,
        /// The last error seen.
        last: Box<CriError>,
    },
}

impl CriError {
    /// The gRPC status code, when the error came from a gRPC status.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            CriError::Unimplemented { .. } => Some(tonic::Code::Unimplemented),
            CriError::Rpc { code, .. } => Some(*code),
            CriError::Timeout { last, .. } => last.code(),
            _ => None,
        }
    }

    /// True when containerd answered but its CRI plugin is not loaded.
    pub fn is_unimplemented(&self) -> bool {
        self.code() == Some(tonic::Code::Unimplemented)
    }
}

/// What `Status(verbose=true)` reported.
#[derive(Debug, Clone, PartialEq)]
pub struct CriStatus {
    /// The `RuntimeReady` condition.
    pub runtime_ready: bool,
    /// The `NetworkReady` condition (false on a node without CNI configuration).
    pub network_ready: bool,
    /// `info["config"]` parsed: the effective CRI plugin configuration, if containerd sent it.
    pub config: Option<serde_json::Value>,
}

/// A connected CRI `runtime.v1` client (runtime and image services on one channel).
#[derive(Debug, Clone)]
pub struct CriClient {
    socket: PathBuf,
    runtime: RuntimeServiceClient<Channel>,
    image: ImageServiceClient<Channel>,
}

impl CriClient {
    /// Connects to the unix socket at `socket` (e.g. `/run/containerd/containerd.sock`).
    ///
    /// The connection is made eagerly: a missing socket or a refused connection is an error
    /// here, not at the first call.
    pub async fn connect(socket: &Path) -> Result<Self, CriError> {
        let path = socket.to_path_buf();
        // The URI is only used for the HTTP/2 `:authority`; the connector ignores it.
        let endpoint = Endpoint::from_static("http://localhost")
            .connect_timeout(ATTEMPT_TIMEOUT)
            .tcp_nodelay(true);
        let connector_path = path.clone();
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let p = connector_path.clone();
                async move { UnixStream::connect(p).await.map(TokioIo::new) }
            }))
            .await
            .map_err(|e| CriError::Connect {
                socket: path.clone(),
                detail: crate::errchain::chain(&e),
            })?;
        Ok(CriClient {
            socket: path,
            runtime: RuntimeServiceClient::new(channel.clone()),
            image: ImageServiceClient::new(channel),
        })
    }

    /// `RuntimeService/Version`: the runtime's version (e.g. `1.6.20~ds1`).
    pub async fn version(&mut self) -> Result<String, CriError> {
        const CALL: &str = "RuntimeService/Version";
        let resp = self
            .runtime
            .version(VersionRequest {
                version: String::new(),
            })
            .await
            .map_err(|s| self.rpc_error(CALL, s))?
            .into_inner();
        Ok(resp.runtime_version)
    }

    /// `RuntimeService/Status` with `verbose = true`.
    pub async fn status(&mut self) -> Result<CriStatus, CriError> {
        const CALL: &str = "RuntimeService/Status";
        let resp = self
            .runtime
            .status(StatusRequest { verbose: true })
            .await
            .map_err(|s| self.rpc_error(CALL, s))?
            .into_inner();
        let conditions = resp.status.map(|s| s.conditions).unwrap_or_default();
        let cond = |ty: &str| conditions.iter().any(|c| c.r#type == ty && c.status);
        let config = match resp.info.get("config") {
            None => None,
            Some(raw) => {
                Some(
                    serde_json::from_str(raw).map_err(|source| CriError::BadConfigJson {
                        socket: self.socket.clone(),
                        source,
                    })?,
                )
            }
        };
        Ok(CriStatus {
            runtime_ready: cond(RUNTIME_READY),
            network_ready: cond(NETWORK_READY),
            config,
        })
    }

    /// `ImageService/PullImage` of `image` (a reference as kubelet passes it: short names such
    /// as `nginx:1` are normalised by containerd). Returns the `image_ref` (the image ID).
    /// Not time-bounded here: wrap it in `tokio::time::timeout` if needed.
    pub async fn pull_image(&mut self, image: &str) -> Result<String, CriError> {
        const CALL: &str = "ImageService/PullImage";
        let req = PullImageRequest {
            image: Some(ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        };
        let resp = self
            .image
            .pull_image(req)
            .await
            .map_err(|s| self.rpc_error(CALL, s))?
            .into_inner();
        Ok(resp.image_ref)
    }

    fn rpc_error(&self, call: &'static str, status: tonic::Status) -> CriError {
        if status.code() == tonic::Code::Unimplemented {
            CriError::Unimplemented {
                socket: self.socket.clone(),
                call,
                message: status.message().to_string(),
            }
        } else {
            CriError::Rpc {
                socket: self.socket.clone(),
                call,
                code: status.code(),
                message: status.message().to_string(),
            }
        }
    }
}

/// One health probe: connect, `Version`, `Status`; healthy = `RuntimeReady` true.
async fn probe(socket: &Path) -> Result<String, CriError> {
    let mut client = CriClient::connect(socket).await?;
    let version = client.version().await?;
    let status = client.status().await?;
    if !status.runtime_ready {
        return Err(CriError::NotReady {
            socket: socket.to_path_buf(),
            reason: "condition RuntimeReady is not true".to_string(),
        });
    }
    Ok(version)
}

/// Polls `socket` until `Version` answers and `Status` says `RuntimeReady`, or `timeout` passes.
/// Each attempt is bounded (at most 3 s, and never past the deadline). Returns the runtime
/// version.
///
/// `UNIMPLEMENTED` ends the wait at once with [`CriError::Unimplemented`]: containerd only
/// starts serving its socket after every plugin was loaded, so a missing CRI service will not
/// appear later.
pub async fn wait_healthy(socket: &Path, timeout: Duration) -> Result<String, CriError> {
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let bound = remaining.min(ATTEMPT_TIMEOUT).max(Duration::from_millis(1));
        let err = match tokio::time::timeout(bound, probe(socket)).await {
            Ok(Ok(version)) => return Ok(version),
            Ok(Err(e)) if e.is_unimplemented() => return Err(e),
            Ok(Err(e)) => e,
            Err(_) => CriError::CallTimeout {
                socket: socket.to_path_buf(),
                call: "connect+Version+Status",
                timeout: bound,
            },
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(CriError::Timeout {
                socket: socket.to_path_buf(),
                timeout,
                last: Box::new(err),
            });
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_to_missing_socket_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("nope.sock");
        let err = CriClient::connect(&sock).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&sock.display().to_string()), "{msg}");
        assert!(matches!(err, CriError::Connect { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn wait_healthy_times_out_with_last_error() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("nope.sock");
        let started = Instant::now();
        let err = wait_healthy(&sock, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        match &err {
            CriError::Timeout { last, .. } => {
                assert!(matches!(**last, CriError::Connect { .. }), "{last:?}")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("nope.sock"), "{err}");
    }

    #[test]
    fn unimplemented_is_detected() {
        let err = CriError::Unimplemented {
            socket: PathBuf::from("/run/x.sock"),
            call: "RuntimeService/Version",
            message: "unknown service runtime.v1.RuntimeService".into(),
        };
        assert!(err.is_unimplemented());
        assert!(err.to_string().contains("/run/x.sock"));
        let wrapped = CriError::Timeout {
            socket: PathBuf::from("/run/x.sock"),
            timeout: Duration::from_secs(1),
            last: Box::new(err),
        };
        assert!(wrapped.is_unimplemented());
    }
}
