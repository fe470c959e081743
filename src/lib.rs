//! regmirror: turns the `jet-system/registry-info` Secret into the containerd registry
//! configuration that really makes pulls go to the mirror, merges it surgically into
//! `config.toml` (or writes `certs.d/<host>/hosts.toml`), and reloads containerd safely.
//!
//! Data flow: [`source`] → [`spec`] (pure) → [`render`] (pure, decided for the [`runtime`]) →
//! [`apply`] → [`reload`] (restart, health, load verification) → [`agent`], with [`cli`] on top;
//! [`resolve`] models what containerd does with the files, [`show`] the spec's schema.

pub mod agent;
pub mod apply;
pub mod check;
pub mod cli;
pub mod cri;
pub mod errchain;
pub mod hostexec;
pub mod memory;
pub mod observe;
pub mod podman;
pub mod redact;
pub mod reload;
pub mod render;
pub mod resolve;
pub mod runtime;
pub mod show;
pub mod source;
pub mod spec;
