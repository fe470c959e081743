//! CRI-O's documented reload after a registries.conf change: containers/image caches the
//! parsed files in the crio process, and CRI-O drops that cache on SIGHUP (what
//! `systemctl reload crio` sends). Podman needs none: each podman process reads the files.

use std::path::{Path, PathBuf};

/// How to make CRI-O read the files again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrioReload {
    /// Nothing (`--reload none`, the default of apply/revert): say that a reload is needed.
    None,
    /// `systemctl reload <unit>`, in the namespaces of `host_pid`.
    Systemd { unit: String, host_pid: i32 },
    /// SIGHUP to the PID in this file (`--crio-pid-file`).
    Signal { pid_file: PathBuf },
    /// The node's own command (`--reload command:…`), run with `sh -c` in the host's namespaces.
    Command { command: String, host_pid: i32 },
}

/// Why a reload failed (exit 2; the files stay written: they are valid).
#[derive(Debug, thiserror::Error)]
#[error("CRI-O reload: {0}")]
pub struct CrioError(pub String);

/// The PID in `pid_file` (a decimal number, whitespace around it allowed).
pub fn read_pid(pid_file: &Path) -> Result<i32, CrioError> {
    let text = std::fs::read_to_string(pid_file)
        .map_err(|e| CrioError(format!("read {}: {e}", pid_file.display())))?;
    match text.trim().parse::<i32>() {
        Ok(p) if p > 1 => Ok(p),
        _ => Err(CrioError(format!(
            "{}: {:?} is not a process id",
            pid_file.display(),
            text.trim()
        ))),
    }
}

/// Reload CRI-O when `changed`; `Ok(Some(message))` when something was done.
pub fn reload(how: &CrioReload, changed: bool) -> Result<Option<String>, CrioError> {
    if !changed || *how == CrioReload::None {
        return Ok(None);
    }
    let host = |pid: i32, program: &str, args: &[&str]| -> Result<(), CrioError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CrioError(e.to_string()))?;
        rt.block_on(crate::hostexec::run_host(pid, program, args))
            .map(|_| ())
            .map_err(|e| CrioError(e.to_string()))
    };
    match how {
        CrioReload::None => Ok(None),
        CrioReload::Systemd { unit, host_pid } => {
            host(*host_pid, "systemctl", &["reload", unit])?;
            Ok(Some(format!("reloaded CRI-O: systemctl reload {unit}")))
        }
        CrioReload::Signal { pid_file } => {
            let pid = read_pid(pid_file)?;
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGHUP,
            )
            .map_err(|e| CrioError(format!("SIGHUP to {pid} ({}): {e}", pid_file.display())))?;
            Ok(Some(format!(
                "reloaded CRI-O: SIGHUP to {pid} (from {})",
                pid_file.display()
            )))
        }
        CrioReload::Command { command, host_pid } => {
            host(*host_pid, "sh", &["-c", command])?;
            Ok(Some(format!("reloaded CRI-O: ran {command:?}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_must_hold_a_pid() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("crio.pid");
        std::fs::write(&p, " 4242\n").unwrap();
        assert_eq!(read_pid(&p).unwrap(), 4242);
        for bad in ["", "abc", "1", "-5"] {
            std::fs::write(&p, bad).unwrap();
            assert!(read_pid(&p).is_err(), "{bad:?}");
        }
        assert!(read_pid(&d.path().join("none")).is_err());
    }

    #[test]
    fn nothing_when_unchanged_or_none() {
        let s = CrioReload::Signal {
            pid_file: "/nonexistent/crio.pid".into(),
        };
        assert_eq!(reload(&s, false).unwrap(), None);
        assert_eq!(reload(&CrioReload::None, true).unwrap(), None);
        assert!(reload(&s, true).is_err());
    }
}
