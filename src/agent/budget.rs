//! The fleet's restart budget: at most N nodes restart containerd at once, and a node whose
//! restart failed its health check halts the rollout of that spec for the whole fleet.
//!
//! Design (documented in the README):
//! - **Slots.** N `coordination.k8s.io/v1` Leases `regmirror-restart-0 … N-1` in the agent's
//!   namespace. A node takes a slot by creating a missing Lease, or by replacing one that is
//!   free (no holder, or its `renewTime + leaseDurationSeconds` has passed), with the Lease's
//!   `resourceVersion` (optimistic concurrency: a 409 Conflict means another node won; try the
//!   next). It renews the Lease every third of its duration while it restarts, health-checks and
//!   verifies, then clears the holder. A holder that dies frees its slot when the Lease expires.
//! - **Halt.** A rollback writes the Lease `regmirror-restart-halt` with the annotations
//!   `regmirror.io/halted-spec` (the public spec hash, PASSWORD excluded), `…/halted-by` (the
//!   node) and `…/halt-reason`. No node takes a slot for that spec hash; a changed Secret (a
//!   new hash) is free to roll out. Deleting the halt Lease releases it by hand.
//! - Only restarts take slots: a hosts-mode change that needs no restart never waits.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

/// The Lease that records a halted rollout.
pub const HALT_LEASE: &str = "regmirror-restart-halt";
const HALTED_SPEC: &str = "regmirror.io/halted-spec";
const HALTED_BY: &str = "regmirror.io/halted-by";
const HALT_REASON: &str = "regmirror.io/halt-reason";

/// The restart budget of one node.
#[derive(Clone)]
pub struct Budget {
    api: Api<Lease>,
    node: String,
    slots: u32,
    lease: Duration,
    /// How often a waiting node looks for a free slot again.
    pub poll: Duration,
}

/// Why no slot was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoSlot {
    /// Another node rolled this spec back.
    Halted { by: String, reason: String },
    /// The wait ended first (a newer Secret, or shutdown).
    Interrupted,
}

/// A held slot; [`Slot::release`] gives it back (else it expires).
pub struct Slot {
    name: String,
    api: Api<Lease>,
    renew: tokio::task::JoinHandle<()>,
}

fn name_of(i: u32) -> String {
    format!("regmirror-restart-{i}")
}

/// True when `lease` may be taken by `me` at `now`: no holder, `me`, or expired.
pub fn is_free(lease: &Lease, me: &str, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else {
        return true;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == me {
        return true;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    match &spec.renew_time {
        Some(MicroTime(t)) => now.as_second() > t.as_second() + duration,
        None => true,
    }
}

/// The halt recorded for `spec`, if any.
pub fn halt_for(lease: &Lease, spec: &str) -> Option<NoSlot> {
    let a = lease.metadata.annotations.as_ref()?;
    (a.get(HALTED_SPEC).map(String::as_str) == Some(spec)).then(|| NoSlot::Halted {
        by: a.get(HALTED_BY).cloned().unwrap_or_default(),
        reason: a.get(HALT_REASON).cloned().unwrap_or_default(),
    })
}

fn held_spec(me: &str, lease: Duration) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(lease.as_secs().max(1) as i32),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        ..LeaseSpec::default()
    }
}

impl Budget {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        node: &str,
        slots: u32,
        lease: Duration,
    ) -> Budget {
        Budget {
            api: Api::namespaced(client, namespace),
            node: node.to_string(),
            slots,
            lease,
            poll: (lease / 3).min(Duration::from_secs(2)),
        }
    }

    /// The halt for `spec` on the API server, if any (errors count as "not halted").
    async fn halted(&self, spec: &str) -> Option<NoSlot> {
        let lease = self.api.get_opt(HALT_LEASE).await.ok()??;
        halt_for(&lease, spec)
    }

    /// Try each slot once; the one taken.
    async fn try_take(&self) -> Option<String> {
        for i in 0..self.slots {
            let name = name_of(i);
            let taken = match self.api.get_opt(&name).await {
                Ok(None) => {
                    let lease = Lease {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            ..ObjectMeta::default()
                        },
                        spec: Some(held_spec(&self.node, self.lease)),
                    };
                    self.api
                        .create(&PostParams::default(), &lease)
                        .await
                        .is_ok()
                }
                Ok(Some(mut lease)) if is_free(&lease, &self.node, Timestamp::now()) => {
                    lease.spec = Some(held_spec(&self.node, self.lease));
                    // Carries metadata.resourceVersion: a 409 means another node won.
                    self.api
                        .replace(&name, &PostParams::default(), &lease)
                        .await
                        .is_ok()
                }
                Ok(Some(_)) => false,
                Err(e) => {
                    tracing::warn!("restart budget: GET Lease {name}: {e}");
                    false
                }
            };
            if taken {
                return Some(name);
            }
        }
        None
    }

    /// Wait for a slot for `spec` (not while it is halted); `interrupted` is asked between
    /// tries (a newer Secret, shutdown).
    pub async fn acquire(
        &self,
        spec: &str,
        interrupted: impl Fn() -> bool,
    ) -> Result<Slot, NoSlot> {
        let mut said = false;
        loop {
            if let Some(h) = self.halted(spec).await {
                return Err(h);
            }
            if let Some(name) = self.try_take().await {
                tracing::info!("restart budget: took slot {name}");
                return Ok(self.hold(name));
            }
            if !said {
                tracing::info!("restart budget: all {} slot(s) taken; waiting", self.slots);
                said = true;
            }
            tokio::time::sleep(self.poll).await;
            if interrupted() {
                return Err(NoSlot::Interrupted);
            }
        }
    }

    /// Keep `name` renewed until released.
    fn hold(&self, name: String) -> Slot {
        let (api, me, lease, n) = (
            self.api.clone(),
            self.node.clone(),
            self.lease,
            name.clone(),
        );
        let renew = tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let Ok(Some(mut l)) = api.get_opt(&n).await else {
                    continue;
                };
                if l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(me.as_str()) {
                    tracing::warn!("restart budget: lost slot {n}");
                    return;
                }
                if let Some(s) = l.spec.as_mut() {
                    s.renew_time = Some(MicroTime(Timestamp::now()));
                }
                let _ = api.replace(&n, &PostParams::default(), &l).await;
            }
        });
        Slot {
            name,
            api: self.api.clone(),
            renew,
        }
    }

    /// Record that `spec` failed here: the fleet stops taking slots for it.
    pub async fn halt(&self, spec: &str, reason: &str) {
        let annotations: std::collections::BTreeMap<String, String> = [
            (HALTED_SPEC, spec.to_string()),
            (HALTED_BY, self.node.clone()),
            (HALT_REASON, reason.chars().take(500).collect()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // Another node may halt at the same moment: a conflict means "read again and retry".
        let mut last = String::new();
        for _ in 0..5 {
            let result = match self.api.get_opt(HALT_LEASE).await {
                Ok(Some(mut l)) => {
                    l.metadata.annotations = Some(annotations.clone());
                    self.api
                        .replace(HALT_LEASE, &PostParams::default(), &l)
                        .await
                }
                _ => {
                    let l = Lease {
                        metadata: ObjectMeta {
                            name: Some(HALT_LEASE.into()),
                            annotations: Some(annotations.clone()),
                            ..ObjectMeta::default()
                        },
                        spec: Some(LeaseSpec::default()),
                    };
                    self.api.create(&PostParams::default(), &l).await
                }
            };
            match result {
                Ok(_) => {
                    tracing::warn!("restart budget: rollout of spec {spec} halted for the fleet");
                    return;
                }
                Err(e) => last = e.to_string(),
            }
        }
        tracing::error!("restart budget: could not record the halt of spec {spec}: {last}");
    }
}

impl Slot {
    /// Give the slot back (clear the holder); on failure it expires by itself.
    pub async fn release(self) {
        self.renew.abort();
        if let Ok(Some(mut l)) = self.api.get_opt(&self.name).await {
            if let Some(s) = l.spec.as_mut() {
                s.holder_identity = None;
                s.renew_time = None;
            }
            match self
                .api
                .replace(&self.name, &PostParams::default(), &l)
                .await
            {
                Ok(_) => tracing::info!("restart budget: released slot {}", self.name),
                Err(e) => tracing::warn!("restart budget: release {}: {e} (it expires)", self.name),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_secs_ago: i64, duration: i32) -> Lease {
        let t = Timestamp::from_second(Timestamp::now().as_second() - renewed_secs_ago).unwrap();
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(String::from),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(t)),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn free_slots() {
        let now = Timestamp::now();
        assert!(is_free(&lease(None, 0, 15), "a", now));
        assert!(is_free(&lease(Some("a"), 0, 15), "a", now));
        assert!(!is_free(&lease(Some("b"), 5, 15), "a", now));
        assert!(is_free(&lease(Some("b"), 30, 15), "a", now), "expired");
    }

    #[test]
    fn halts_name_their_spec() {
        let mut l = lease(None, 0, 15);
        l.metadata.annotations = Some(
            [
                (HALTED_SPEC, "abc"),
                (HALTED_BY, "node-3"),
                (HALT_REASON, "UNIMPLEMENTED"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        assert_eq!(
            halt_for(&l, "abc"),
            Some(NoSlot::Halted {
                by: "node-3".into(),
                reason: "UNIMPLEMENTED".into()
            })
        );
        assert_eq!(halt_for(&l, "def"), None);
    }
}
