//! A real `docker-registry` (distribution 2.8) on 127.0.0.1 with a free port: plain HTTP, TLS
//! (CA-signed or self-signed), or TLS + htpasswd basic auth. Its access log (combined log
//! format on stdout) is parsed so tests can prove which paths containerd really requested.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::tls::{self, TlsFiles};
use super::{ChildGuard, free_port, poll, run, tail, tcp_open, temp_dir};

/// How the registry is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Plain HTTP.
    Plain,
    /// HTTPS with a server certificate signed by a test CA.
    Tls,
    /// HTTPS with a self-signed server certificate (no CA to trust).
    SelfSigned,
    /// HTTPS (CA-signed) plus htpasswd basic auth; see [`USER`] / [`PASSWORD`].
    TlsAuth,
}

/// The user of a [`Kind::TlsAuth`] registry.
pub const USER: &str = "e2e-user";
/// Its password: with characters that need quoting in TOML and that contain the Basic
/// separator `:` (only the user name may not hold one).
pub const PASSWORD: &str = "pa$$:w0rd#\"1";

/// One line of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub user_agent: String,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} ({})",
            self.method, self.path, self.status, self.user_agent
        )
    }
}

/// Parses one combined-log-format line:
/// `127.0.0.1 - - [date] "HEAD /v2/x HTTP/1.1" 200 0 "" "containerd/1.6.20"`.
pub fn parse_access_line(line: &str) -> Option<Request> {
    let start = line.find("] \"")? + 3;
    let rest = &line[start..];
    let end = rest.find('"')?;
    let mut req = rest[..end].split(' ');
    let method = req.next()?.to_string();
    let target = req.next()?;
    // containerd adds `?ns=docker.io`: keep the path only.
    let path = target.split('?').next().unwrap_or(target).to_string();
    let after = rest[end + 1..].trim_start();
    let status: u16 = after.split(' ').next()?.parse().ok()?;
    let user_agent = after
        .rsplit('"')
        .nth(1)
        .map(str::to_string)
        .unwrap_or_default();
    Some(Request {
        method,
        path,
        status,
        user_agent,
    })
}

/// A running registry, stopped and deleted on drop.
pub struct Registry {
    pub kind: Kind,
    pub port: u16,
    pub tls: Option<TlsFiles>,
    proc: ChildGuard,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry of `kind` on a free port of 127.0.0.1 (retrying with another port if
    /// the chosen one was taken meanwhile) and waits until it accepts connections.
    pub fn start(kind: Kind) -> Registry {
        let dir = temp_dir("reg");
        let tls = match kind {
            Kind::Plain => None,
            Kind::Tls | Kind::TlsAuth => Some(tls::ca_signed(&dir.path().join("tls"))),
            Kind::SelfSigned => Some(tls::self_signed(&dir.path().join("tls"))),
        };
        if kind == Kind::TlsAuth {
            let line = run(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
            std::fs::write(
                dir.path().join("htpasswd"),
                line.trim_end().to_string() + "\n",
            )
            .unwrap();
        }
        let mut last_err = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let cfg = dir.path().join("config.yml");
            std::fs::write(&cfg, config_yaml(dir.path(), port, tls.as_ref(), kind)).unwrap();
            let out = dir.path().join(format!("stdout.{attempt}.log"));
            let err = dir.path().join(format!("stderr.{attempt}.log"));
            let mut cmd = Command::new("docker-registry");
            cmd.arg("serve").arg(&cfg);
            let mut proc = ChildGuard::spawn("docker-registry", cmd, out, err.clone());
            let ready = poll(Duration::from_secs(15), || {
                if proc.exited().is_some() {
                    return Some(false);
                }
                let listening =
                    std::fs::read_to_string(&err).is_ok_and(|t| t.contains("listening on"));
                (listening && tcp_open(port)).then_some(true)
            });
            match ready {
                Some(true) => {
                    return Registry {
                        kind,
                        port,
                        tls,
                        proc,
                        dir,
                    };
                }
                _ => {
                    proc.stop(Duration::from_secs(2));
                    last_err = tail(&err, 20);
                }
            }
        }
        panic!("docker-registry ({kind:?}) did not start after 5 attempts; last log:\n{last_err}");
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Credentials for [`Kind::TlsAuth`].
    pub fn creds(&self) -> Option<(&'static str, &'static str)> {
        (self.kind == Kind::TlsAuth).then_some((USER, PASSWORD))
    }

    /// Copies the tiny image into repository `repo` (e.g.
    /// `airgap-images/docker.io/library/tiny`) as tag `1`.
    pub fn push_tiny(&self, repo: &str) {
        let layout = super::image::layout();
        let src = format!("oci:{}:1", layout.display());
        let dst = format!("docker://{}/{repo}:1", self.host());
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--insecure-policy", "--dest-tls-verify=false"]);
        if let Some((u, p)) = self.creds() {
            cmd.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        cmd.arg(&src).arg(&dst);
        run(&mut cmd);
    }

    /// `skopeo inspect` without credentials: true when the registry let it through.
    pub fn anonymous_inspect_succeeds(&self, repo: &str) -> bool {
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--raw"])
            .arg(format!("docker://{}/{repo}:1", self.host()))
            .output()
            .expect("run skopeo")
            .status
            .success()
    }

    /// Every request in the access log so far.
    pub fn requests(&self) -> Vec<Request> {
        std::fs::read_to_string(&self.proc.stdout)
            .unwrap_or_default()
            .lines()
            .filter_map(parse_access_line)
            .collect()
    }

    /// A position in the access log: pass it to [`Registry::requests_since`].
    pub fn mark(&self) -> usize {
        self.requests().len()
    }

    /// Requests logged after `mark`.
    pub fn requests_since(&self, mark: usize) -> Vec<Request> {
        self.requests().into_iter().skip(mark).collect()
    }

    /// Requests after `mark` for `path` (GET or HEAD), e.g.
    /// `/v2/airgap-images/docker.io/library/tiny/manifests/1`.
    pub fn hits(&self, mark: usize, path: &str) -> Vec<Request> {
        self.requests_since(mark)
            .into_iter()
            .filter(|r| r.path == path && (r.method == "GET" || r.method == "HEAD"))
            .collect()
    }

    /// The access log after `mark`, one request a line (for failure messages).
    pub fn log_since(&self, mark: usize) -> String {
        let reqs = self.requests_since(mark);
        if reqs.is_empty() {
            return format!("    (registry {} saw no request)", self.host());
        }
        reqs.iter()
            .map(|r| format!("    {r}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The registry's own (stderr) log, last `n` lines.
    pub fn error_log(&self, n: usize) -> String {
        tail(&self.proc.stderr, n)
    }
}

fn config_yaml(dir: &Path, port: u16, tls: Option<&TlsFiles>, kind: Kind) -> String {
    let data: PathBuf = dir.join("data");
    let mut y = format!(
        "version: 0.1\n\
         log:\n  level: info\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n",
        data.display()
    );
    if let Some(t) = tls {
        y.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            t.server_cert.display(),
            t.server_key.display()
        ));
    }
    if kind == Kind::TlsAuth {
        y.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: regmirror-e2e\n    path: {}\n",
            dir.join("htpasswd").display()
        ));
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_combined_log_line() {
        let r = parse_access_line(
            "127.0.0.1 - - [23/Nov/2026:09:04:29 +0000] \"HEAD /v2/a/b/manifests/1?ns=x HTTP/1.1\" \
             200 0 \"\" \"containerd/1.6.20~ds1\"",
        )
        .unwrap();
        assert_eq!(r.method, "HEAD");
        assert_eq!(r.path, "/v2/a/b/manifests/1");
        assert_eq!(r.status, 200);
        assert_eq!(r.user_agent, "containerd/1.6.20~ds1");
        assert!(parse_access_line("time=\"x\" level=info msg=\"listening on\"").is_none());
    }
}
