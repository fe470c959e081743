//! Running a program on the host: in the namespaces of `--host-pid` (1 = the host, from a
//! hostPID pod: the host's own `systemctl` and `containerd` binaries), or in ours when they are
//! the same (the systemd unit on an edge host). Used for restarts and for `containerd --version`.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::time::Duration;

/// A program that could not be run, or failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} failed: {detail}")]
pub struct ExecError {
    /// The command line.
    pub what: String,
    /// Why, with stderr or the hint about missing privileges.
    pub detail: String,
}

/// Namespaces entered to run a command on the host (the mount namespace is what matters for
/// finding the host's systemctl and systemd's socket; the others make it the host's view).
const NAMESPACES: [&str; 5] = ["ipc", "uts", "net", "cgroup", "mnt"];

/// Whether `pid` shares our namespace `ns`: `Some(true/false)`, or `None` when
/// `/proc/<pid>/ns/<ns>` cannot be read (no CAP_SYS_PTRACE, e.g. inside the hardened unit).
fn same_namespace(pid: i32, ns: &str) -> Option<bool> {
    let a = std::fs::metadata(format!("/proc/{pid}/ns/{ns}")).ok()?;
    let b = std::fs::metadata(format!("/proc/self/ns/{ns}")).ok()?;
    Some(a.ino() == b.ino() && a.dev() == b.dev())
}

/// Make `cmd` enter the namespaces of `pid` that differ from ours, before it execs.
fn enter_namespaces(
    cmd: &mut std::process::Command,
    pid: i32,
    what: &str,
) -> Result<(), ExecError> {
    let mut fds = Vec::new();
    for ns in NAMESPACES
        .into_iter()
        .filter(|ns| same_namespace(pid, ns) == Some(false))
    {
        let path = format!("/proc/{pid}/ns/{ns}");
        let f = File::open(&path).map_err(|e| ExecError {
            what: what.to_string(),
            detail: format!("open {path}: {e} (needs hostPID and CAP_SYS_ADMIN)"),
        })?;
        fds.push(f);
    }
    // SAFETY: setns is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for f in &fds {
                nix::sched::setns(f, nix::sched::CloneFlags::empty())
                    .map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
    Ok(())
}

/// Run `program args` in the namespaces of `pid` (no setns when they are ours already).
/// Returns its standard output.
pub async fn run_host(pid: i32, program: &str, args: &[&str]) -> Result<String, ExecError> {
    let what = format!("{program} {}", args.join(" "));
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    let mnt = if pid == 0 {
        Some(true)
    } else {
        same_namespace(pid, "mnt")
    };
    // Unreadable: we cannot enter it anyway; run here and say so if that fails.
    let hint = match mnt {
        None => format!(
            " (could not read /proc/{pid}/ns/mnt, so {program} ran in regmirror's own namespaces; a pod needs hostPID and CAP_SYS_PTRACE + CAP_SYS_ADMIN + CAP_SYS_CHROOT)"
        ),
        _ => String::new(),
    };
    if mnt == Some(false) {
        enter_namespaces(&mut cmd, pid, &what)?;
    }
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .map_err(|_| ExecError {
            what: what.clone(),
            detail: "timed out after 120 s".into(),
        })?
        .map_err(|e| ExecError {
            what: what.clone(),
            detail: format!("{e}{hint}"),
        })?;
    if !out.status.success() {
        return Err(ExecError {
            what,
            detail: format!(
                "{}: {}{hint}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
