//! `--runtime auto`: which runtime this node has, decided from what exists (pure
//! [`decide`] over a [`Seen`] that [`probe`] fills in).

use std::path::Path;

/// A runtime regmirror writes the configuration of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// containerd's config.toml / certs.d hosts.toml.
    Containerd,
    /// CRI-O: the containers-registries.conf files, and a reload after a change.
    Crio,
    /// Podman (also Buildah, Skopeo): the containers-registries.conf files, read at every pull.
    Podman,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::Crio => "crio",
            Runtime::Podman => "podman",
        }
    }
    /// Whether it reads the containers-registries.conf files.
    pub fn is_containers(self) -> bool {
        self != Runtime::Containerd
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What `auto` looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seen {
    /// containerd's CRI socket (`--containerd-socket`) exists.
    pub containerd_socket: bool,
    /// CRI-O's socket (`--crio-socket`) exists.
    pub crio_socket: bool,
    /// A `podman` binary is on PATH.
    pub podman_binary: bool,
}

/// containerd's socket, else CRI-O's socket, else a podman binary, else containerd; and why.
pub fn decide(seen: Seen) -> (Runtime, &'static str) {
    if seen.containerd_socket {
        (Runtime::Containerd, "containerd's CRI socket exists")
    } else if seen.crio_socket {
        (Runtime::Crio, "no containerd socket; CRI-O's socket exists")
    } else if seen.podman_binary {
        (
            Runtime::Podman,
            "no containerd or CRI-O socket; podman is on PATH",
        )
    } else {
        (
            Runtime::Containerd,
            "no containerd or CRI-O socket and no podman on PATH: the default",
        )
    }
}

/// Whether an executable `name` is in one of `path`'s directories.
pub fn on_path(name: &str, path: Option<&std::ffi::OsStr>) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = path else { return false };
    std::env::split_paths(path).any(|d| {
        std::fs::metadata(d.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Look at this machine.
pub fn probe(containerd_socket: &Path, crio_socket: &Path) -> Seen {
    Seen {
        containerd_socket: containerd_socket.exists(),
        crio_socket: crio_socket.exists(),
        podman_binary: on_path("podman", std::env::var_os("PATH").as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_order() {
        let s = |c, o, p| Seen {
            containerd_socket: c,
            crio_socket: o,
            podman_binary: p,
        };
        assert_eq!(decide(s(true, true, true)).0, Runtime::Containerd);
        assert_eq!(decide(s(false, true, true)).0, Runtime::Crio);
        assert_eq!(decide(s(false, false, true)).0, Runtime::Podman);
        let (r, why) = decide(s(false, false, false));
        assert_eq!(r, Runtime::Containerd);
        assert!(why.contains("default"));
    }

    #[test]
    fn path_lookup_needs_an_executable_file() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("podman");
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        let path = std::env::join_paths([d.path()]).unwrap();
        assert!(!on_path("podman", Some(&path)));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(on_path("podman", Some(&path)));
        assert!(!on_path("crio", Some(&path)));
        assert!(!on_path("podman", None));
    }
}
