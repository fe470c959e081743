//! Helpers for the end-to-end suite against a real containerd and a real docker-registry.
//!
//! - [`prerequisites`]: root + the Debian binaries, else skip (or panic under `REGMIRROR_E2E=1`);
//!   `e2e!(name)` (or `skip_unless!` with another check) skips a test that way and times it
//!   ([`Timer`]).
//! - [`ChildGuard`]: a started process, killed by PID on drop (also when a test panics).
//! - [`registry`], [`containerd`], [`image`], [`tls`], [`cli`], [`jail`]: the pieces a test puts
//!   together.
//! - Small helpers, shared with `tests/node_support` too: [`which`], [`run`] / [`run_output`],
//!   [`poll`] / [`poll_every`], [`http_get`] and [`metric`] for the agent's endpoints.
//!
//! Every process binds on 127.0.0.1 only, every file lives in a per-test temp dir (removed on
//! drop; set `REGMIRROR_E2E_KEEP=1` to keep them for a post-mortem).

#![allow(dead_code)]

#[path = "../common/agent.rs"]
pub mod agent;
pub mod cli;
pub mod containerd;
pub mod image;
pub mod jail;
pub mod matrix;
pub mod registry;
pub mod tls;

#[allow(unused_imports)]
pub use agent::{free_port, http_get, metric};

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The binaries the suite runs, with the Debian package that ships each.
pub const REQUIRED: &[(&str, &str)] = &[
    ("containerd", "containerd"),
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("htpasswd", "apache2-utils"),
    ("openssl", "openssl"),
];

/// `REGMIRROR_E2E=1`: a missing prerequisite is a failure, not a skip.
pub fn e2e() -> bool {
    std::env::var("REGMIRROR_E2E").is_ok_and(|v| v == "1")
}

/// True when the suite can run. Otherwise: with `REGMIRROR_E2E=1` it panics naming what to
/// install; without it, prints `skipped: …` to stderr and returns false.
pub fn prerequisites(test: &str) -> bool {
    let mut problems = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        problems.push("must run as root (containerd needs it)".to_string());
    }
    problems.extend(missing_binaries(REQUIRED.iter().copied()));
    prerequisites_verdict(test, "end-to-end", &problems)
}

/// Of `needed` (binary, Debian package), the binaries not on `PATH` and how to install them:
/// `missing B1, B2: apt-get install -y P1 P2`, or `None` when all are there.
pub fn missing_binaries<'a>(
    needed: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<String> {
    let missing: Vec<(&str, &str)> = needed
        .into_iter()
        .filter(|(bin, _)| which(bin).is_none())
        .collect();
    if missing.is_empty() {
        return None;
    }
    let bins: Vec<&str> = missing.iter().map(|(b, _)| *b).collect();
    let mut pkgs: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    pkgs.sort_unstable();
    pkgs.dedup();
    Some(format!(
        "missing {}: apt-get install -y {}",
        bins.join(", "),
        pkgs.join(" ")
    ))
}

/// True when `problems` is empty. Otherwise: under `REGMIRROR_E2E=1` panics with them (`{test}:
/// {what} prerequisites not met …`); without it, prints `skipped: …` and returns false.
pub fn prerequisites_verdict(test: &str, what: &str, problems: &[String]) -> bool {
    if problems.is_empty() {
        return true;
    }
    let msg = problems.join("; ");
    if e2e() {
        panic!("{test}: {what} prerequisites not met (REGMIRROR_E2E=1): {msg}");
    }
    eprintln!("skipped: {test}: {msg} (set REGMIRROR_E2E=1 to make this a failure)");
    false
}

/// Prints a test's wall time when it ends (also on panic): `{label} {name}: ok|FAILED in …`.
pub struct Timer {
    label: &'static str,
    name: &'static str,
    started: Instant,
}

impl Timer {
    pub fn new(label: &'static str, name: &'static str) -> Timer {
        Timer {
            label,
            name,
            started: Instant::now(),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let outcome = if std::thread::panicking() {
            "FAILED"
        } else {
            "ok"
        };
        eprintln!(
            "{} {}: {outcome} in {:.2?}",
            self.label,
            self.name,
            self.started.elapsed()
        );
    }
}

/// `skip_unless!(READY, LABEL, NAME)`: returns from the calling test unless `READY` (a
/// prerequisites check, which says why it skips), then times the rest of the test with a
/// [`Timer`] (`LABEL NAME: ok in …`).
#[macro_export]
macro_rules! skip_unless {
    ($ready:expr, $label:expr, $name:expr) => {
        if !$ready {
            return;
        }
        let _timer = $crate::support::Timer::new($label, $name);
    };
}

/// `e2e!(NAME)`: skips the test (returns) when [`prerequisites`] are missing, else times it.
#[macro_export]
macro_rules! e2e {
    ($name:expr) => {
        $crate::skip_unless!($crate::support::prerequisites($name), "e2e", $name)
    };
}

/// The first executable `name` on `PATH` (where the tests' `Command`s will look too).
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A per-test temp dir under the system temp dir (short path: unix sockets live in it).
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("rm-e2e-{prefix}-"))
        .tempdir()
        .expect("create temp dir");
    if std::env::var("REGMIRROR_E2E_KEEP").is_ok_and(|v| v == "1") {
        eprintln!("keeping {}", dir.path().display());
        dir.disable_cleanup(true);
    }
    dir
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub fn tcp_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into(),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Polls `f` every 50 ms until it returns `Some`, or `timeout` passes.
pub fn poll<T>(timeout: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    poll_every(timeout, Duration::from_millis(50), f)
}

/// Polls `f` every `every` until it returns `Some`, or `timeout` passes.
pub fn poll_every<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Runs `cmd` to completion; panics with its output unless it succeeds.
pub fn run_output(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd` to completion; panics with its output if it fails. Returns stdout.
pub fn run(cmd: &mut Command) -> String {
    stdout(&run_output(cmd))
}

/// A command's stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The last `n` lines of a text file (empty if unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    last_lines(&std::fs::read_to_string(path).unwrap_or_default(), n)
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A started process, stopped by PID when dropped: SIGTERM, then SIGKILL after a grace period.
/// Its stdout and stderr go to files. The child also gets SIGKILL if the thread that started
/// it dies (`PR_SET_PDEATHSIG`), so even an aborted test run leaves nothing behind.
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl ChildGuard {
    /// Starts `cmd` with stdout/stderr appended to `stdout` / `stderr`.
    pub fn spawn(name: &str, mut cmd: Command, stdout: PathBuf, stderr: PathBuf) -> ChildGuard {
        let open = |p: &Path| {
            File::options()
                .create(true)
                .append(true)
                .open(p)
                .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
        };
        cmd.stdin(Stdio::null())
            .stdout(open(&stdout))
            .stderr(open(&stderr));
        // SAFETY: set_pdeathsig is a single prctl(2) call, async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        ChildGuard {
            name: name.to_string(),
            child: Some(child),
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{}: pid {} ignored SIGTERM, killing", self.name, pid);
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}
