//! What one reconcile did, as data: [`super::reconcile`] and [`super::recover`] return it,
//! [`super::report`] tells about it.

use crate::runtime::ContainerdVersion;

/// What a reconcile did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No answer from the source yet.
    Waiting,
    /// The Secret (or config.toml) cannot be used; nothing changed on disk.
    Rejected { why: String },
    /// The spec failed the health check before; held until the Secret changes.
    Held { label: String, why: String },
    /// Nothing to change.
    UpToDate { label: String, hash: Option<String> },
    /// The Secret is gone and `--on-delete keep`.
    Kept,
    /// Shutdown arrived during the jitter wait; nothing written.
    Stopping,
    /// Writing failed (the files are whole: every write is atomic).
    WriteFailed { error: String },
    /// Written, and reloaded when needed.
    Applied(Applied),
    /// The reload or its verification failed: the previous files are back.
    RolledBack(RolledBack),
    /// Another node rolled this spec back: the fleet's rollout of it is halted (nothing
    /// written here) until the Secret changes.
    Halted {
        label: String,
        by: String,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub label: String,
    pub hash: Option<String>,
    pub reverted: bool,
    pub files: Vec<String>,
    /// The change repaired a hand edit of regmirror's entries.
    pub drift: bool,
    pub restarted: bool,
    /// What the reload said (restart, health, verification).
    pub done: Option<String>,
    /// A restart is needed but the strategy does not restart.
    pub restart_pending: bool,
    pub containerd: Option<ContainerdVersion>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    pub label: String,
    pub hash: Option<String>,
    pub restarted: bool,
    pub error: String,
    /// The restart on the previous files: containerd's version, or why it failed.
    pub back: Result<String, String>,
    pub restarted_again: bool,
}
