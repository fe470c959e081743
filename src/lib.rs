//! regmirror: turns the `jet-system/registry-info` Secret into the containerd registry
//! configuration that really makes pulls go to the mirror, merges it surgically into
//! `config.toml` (or writes `certs.d/<host>/hosts.toml`), and reloads containerd safely.
//!
//! Data flow: [`source`] → [`spec`] (pure) → [`render`] (pure) → [`apply`] → [`reload`] →
//! [`daemon`], with [`cli`] on top.

pub mod apply;
pub mod cli;
pub mod daemon;
pub mod hostexec;
pub mod observe;
pub mod redact;
pub mod reload;
pub mod render;
pub mod resolve;
pub mod runtime;
pub mod show;
pub mod source;
pub mod spec;
