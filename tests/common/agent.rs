//! The one runner for `regmirror run` as a child process, shared by the agent tests
//! (`daemon_file`, `daemon_kube`, `daemon_containerd`) and the agent benchmark (`benches/`, by
//! `#[path]`): spawn with stderr to a log file, `--listen` on a free 127.0.0.1 port (retried when
//! another process took it first), wait for `/healthz`, read `/metrics` and `/readyz`, wait for a
//! condition, and stop with SIGTERM (killed after 10 s, and always on drop). Self-contained: it
//! uses only std and nix, so every harness can include it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago (the caller retries if it is taken by
/// the time it binds).
pub fn free_port() -> u16 {
    let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// HTTP/1.1 GET on 127.0.0.1:`port` → (status, body); None when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let mut s = TcpStream::connect_timeout(&addr.into(), Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split(' ').nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// The value of `series` (name plus labels, exactly as printed) in a Prometheus text body.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        if k == series { v.parse().ok() } else { None }
    })
}

/// A running agent.
pub struct AgentProcess {
    child: Option<Child>,
    /// Its stderr (the log).
    pub log_path: PathBuf,
    /// The HTTP port, when it listens.
    pub port: Option<u16>,
    pub started: Instant,
}

impl AgentProcess {
    /// Spawn `cmd` (a `regmirror run …` command) with stderr to `log_path`. With `listen`, it
    /// gets `--listen 127.0.0.1:<free port>` and the call returns once `/healthz` answers.
    pub fn spawn(mut make: impl FnMut() -> Command, log_path: &Path, listen: bool) -> AgentProcess {
        for attempt in 0..3 {
            let mut cmd = make();
            let port = listen.then(free_port);
            match port {
                Some(p) => cmd.args(["--listen", &format!("127.0.0.1:{p}")]),
                None => cmd.args(["--listen", "off"]),
            };
            let log = std::fs::File::create(log_path).unwrap();
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
            let mut agent = AgentProcess {
                child: Some(
                    cmd.spawn()
                        .unwrap_or_else(|e| panic!("cannot run regmirror: {e}")),
                ),
                log_path: log_path.to_path_buf(),
                port,
                started: Instant::now(),
            };
            if port.is_none() || agent.wait_healthy() {
                return agent;
            }
            let log = agent.log();
            agent.stop();
            if !log.contains("cannot listen") || attempt == 2 {
                panic!("regmirror run did not come up:\n{log}");
            }
        }
        unreachable!()
    }

    /// Wait (≤ 10 s) for `/healthz`; false when the process exited first or it timed out.
    fn wait_healthy(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.exited() {
                return false;
            }
            if self.get("/healthz").is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `GET path` on the agent's port: (status, body), (0, "") when it does not answer.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port?, path)
    }

    pub fn metrics(&self) -> String {
        self.get("/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    /// A sample of /metrics (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        metric(&self.metrics(), series).unwrap_or(0.0)
    }

    /// (HTTP status, body) of /readyz.
    pub fn readyz(&self) -> (u16, String) {
        self.get("/readyz").unwrap_or((0, String::new()))
    }

    /// Waits (≤ `timeout`) until `cond` holds; panics with the log's tail otherwise.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut() -> bool,
    ) -> Duration {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if cond() {
                return t.elapsed();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        panic!(
            "timed out after {timeout:?} waiting for {what}\n/readyz: {:?}\nagent log (last lines):\n{}",
            self.readyz(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }

    /// SIGTERM; wait ≤ 10 s, then kill. The exit status (`None`: it had to be killed).
    /// SIGKILL (a node that dies without cleaning up), and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
