//! The Node condition `RegistryMirrorReady` (True/False, a reason, a message naming the spec),
//! kept next to the Events, which expire: `kubectl get node -o wide` / `describe node` shows
//! where each node stands. Patched on the Node's status only when it changes.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::outcome::Outcome;

/// The condition's type.
pub const TYPE: &str = "RegistryMirrorReady";

/// The condition for `outcome`: (ready, reason). `None`: nothing to say (no Secret yet, stopping).
pub fn of(outcome: &Outcome) -> Option<(bool, &'static str)> {
    Some(match outcome {
        Outcome::Applied(a) if a.reverted => (true, "Reverted"),
        Outcome::Applied(a) if a.restart_pending => (false, "RestartPending"),
        Outcome::Applied(_) => (true, "Applied"),
        Outcome::UpToDate { .. } => (true, "UpToDate"),
        Outcome::Kept => (true, "SecretDeletedKept"),
        Outcome::Rejected { .. } => (false, "SecretRejected"),
        Outcome::Held { .. } => (false, "SpecHeld"),
        Outcome::WriteFailed { .. } => (false, "WriteFailed"),
        Outcome::RolledBack(_) => (false, "RolledBack"),
        Outcome::Halted { .. } => (false, "RolloutHalted"),
        Outcome::Waiting | Outcome::Stopping => return None,
    })
}

/// The status patch (strategic merge: conditions merge by `type`).
pub fn patch(ready: bool, reason: &str, message: &str, transition: Timestamp) -> serde_json::Value {
    serde_json::json!({"status": {"conditions": [{
        "type": TYPE,
        "status": if ready { "True" } else { "False" },
        "reason": reason,
        "message": message.chars().take(1000).collect::<String>(),
        "lastHeartbeatTime": Timestamp::now().to_string(),
        "lastTransitionTime": transition.to_string(),
    }]}})
}

/// Keeps the condition of one Node.
pub struct NodeCondition {
    api: Api<Node>,
    node: String,
    /// What was last published, and when its status last changed.
    last: std::sync::Mutex<Option<Published>>,
}

type Published = (bool, String, String, Timestamp);

impl NodeCondition {
    pub fn new(client: kube::Client, node: &str) -> NodeCondition {
        NodeCondition {
            api: Api::all(client),
            node: node.to_string(),
            last: std::sync::Mutex::new(None),
        }
    }

    /// Publish (ready, reason, message) unless it is what the Node already shows.
    pub async fn set(&self, ready: bool, reason: &str, message: &str) {
        let last = self.last.lock().expect("lock").clone();
        let since = match &last {
            Some((r, why, msg, _)) if *r == ready && why == reason && msg == message => return,
            Some((r, _, _, t)) if *r == ready => *t,
            _ => Timestamp::now(),
        };
        let body = patch(ready, reason, message, since);
        let sent = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            self.api.patch_status(
                &self.node,
                &PatchParams::default(),
                &Patch::Strategic(&body),
            ),
        )
        .await;
        match sent {
            Ok(Ok(_)) => {
                *self.last.lock().expect("lock") =
                    Some((ready, reason.into(), message.into(), since))
            }
            Ok(Err(e)) => {
                tracing::warn!("could not set condition {TYPE} on Node {}: {e}", self.node)
            }
            Err(_) => tracing::warn!(
                "could not set condition {TYPE} on Node {}: timed out",
                self.node
            ),
        }
    }
}
