//! The Kubernetes source: a kube-rs watcher on exactly one Secret (field selector
//! `metadata.name`), with backoff, relist on 410 Gone, and bookmarks. An API error, a timeout or
//! a missing kubeconfig never counts as a deletion: only a successful list without the Secret,
//! or a DELETED event, does.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::watch;

use super::Desired;
use crate::spec::secret_data_from_object;

/// Build a client: `--kubeconfig` if given, else in-cluster, else `$KUBECONFIG`/`~/.kube/config`.
pub async fn client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// A Secret read once from the cluster, and where from.
pub struct FetchedSecret {
    pub secret: Secret,
    /// The API server's URL.
    pub server: String,
}

/// One read-only GET of `namespace/name` (for `diff --from-cluster` on an admin's machine):
/// `--kubeconfig` with `context` if given, else `$KUBECONFIG`/`~/.kube/config` (its current
/// context, or `context`), else in-cluster. Bounded by `timeout`; `Ok(None)` when it is absent.
pub async fn get_secret(
    kubeconfig: Option<&PathBuf>,
    context: Option<&str>,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<Option<FetchedSecret>> {
    use anyhow::Context as _;
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = match (kubeconfig, context) {
        (Some(path), _) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &options).await?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options).await?,
        (None, None) => kube::Config::infer().await?,
    };
    let server = config.cluster_url.to_string();
    let api: Api<Secret> = Api::namespaced(Client::try_from(config)?, namespace);
    let got = tokio::time::timeout(timeout, api.get_opt(name))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "GET Secret {namespace}/{name} from {server}: no answer within {timeout:?}"
            )
        })?
        .with_context(|| format!("GET Secret {namespace}/{name} from {server}"))?;
    Ok(got.map(|secret| FetchedSecret { secret, server }))
}

/// Watch `namespace/name` and publish every change to `tx` until `tx` has no receivers.
pub async fn watch_secret(
    client: Client,
    namespace: String,
    name: String,
    tx: watch::Sender<Desired>,
) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let cfg = watcher::Config::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(290);
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    // During a (re)list, remember whether the Secret was seen.
    let mut seen_in_init = false;
    while let Some(item) = stream.next().await {
        let next = match item {
            Ok(Event::Init) => {
                seen_in_init = false;
                None
            }
            Ok(Event::InitApply(s)) | Ok(Event::Apply(s)) => {
                seen_in_init = true;
                if s.metadata.name.as_deref() != Some(name.as_str()) {
                    continue;
                }
                tracing::debug!(resource_version = ?s.metadata.resource_version, "Secret {namespace}/{name} seen");
                Some(Desired::Present(Ok(secret_data_from_object(&s))))
            }
            Ok(Event::InitDone) => (!seen_in_init).then_some(Desired::Deleted),
            Ok(Event::Delete(_)) => Some(Desired::Deleted),
            Err(e) => {
                tracing::warn!(error = %e, "watching Secret {namespace}/{name} failed; keeping the last applied state, retrying");
                None
            }
        };
        if let Some(d) = next
            && tx.send(d).is_err()
        {
            return;
        }
    }
}

/// Create the client (retrying with backoff: a missing kubeconfig is not a deletion) and watch.
pub async fn run(
    kubeconfig: Option<PathBuf>,
    namespace: String,
    name: String,
    tx: watch::Sender<Desired>,
) {
    let mut delay = Duration::from_secs(1);
    let client = loop {
        match client(kubeconfig.as_ref()).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "no Kubernetes client; keeping the last applied state, retrying in {delay:?}");
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        }
    };
    watch_secret(client, namespace, name, tx).await;
}
