//! Where the desired state comes from: a kube-rs watch on one Secret, or a file / Secret volume
//! watched with notify. Every source publishes a [`Desired`] on a `watch` channel; the daemon
//! reconciles the latest one.

pub mod file;
pub mod kube;
pub mod watch;

use crate::spec::SecretData;

/// What a source last said about the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Desired {
    /// No answer from the source yet: change nothing.
    Unknown,
    /// The Secret exists; `Err` when it could not be read or parsed (the message names why).
    Present(Result<SecretData, String>),
    /// The Secret does not exist (deleted, or absent from a successful list / the file is gone).
    Deleted,
}
