//! A real containerd started by hand, isolated in a temp dir: its own `root`, `state`, gRPC and
//! ttrpc sockets (and `opt` plugin path), never the machine's `/run/containerd` or
//! `/var/lib/containerd`. The starting config.toml is Debian's packaged one or
//! `containerd config default`, with only those keys changed (via toml_edit) before regmirror
//! ever sees it. Talks CRI through the crate's own [`regmirror::cri`] client.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use regmirror::cri::{self, CriClient, CriError, CriStatus};
use toml_edit::{DocumentMut, Item, Table, value};

use super::{ChildGuard, run, tail, temp_dir};

/// Debian 12's packaged `/etc/containerd/config.toml` (containerd 1.6.20~ds1-1+deb12u3).
pub const DEBIAN_CONFIG: &str = include_str!("../fixtures/debian-config.toml");

/// How long a CRI pull may take before the test calls it failed.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long containerd may take to answer CRI after a (re)start.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A config.toml with no `version` key (read as version 1), as older installers write it.
pub const V1_CONFIG: &str = "# containerd config version 1 (no version key)\n\
[plugins.cri]\n  sandbox_image = \"registry.k8s.io/pause:3.9\"\n\
[plugins.cri.containerd]\n  snapshotter = \"overlayfs\"\n";

/// The registry settings a containerd took (see [`Containerd::loaded`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// `""` when unset.
    pub config_path: String,
    pub mirrors: std::collections::BTreeMap<String, Vec<String>>,
    pub from: &'static str,
}

/// A containerd release of the test matrix: Debian 12's own (`/usr/bin/containerd`), or one
/// that `scripts/fetch-containerd.sh` unpacked from Debian's newer suites into
/// `target/containerd/<version>/usr/bin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Debian 12 (bookworm): 1.6.20.
    V1_6,
    /// Debian 13 (trixie): 1.7.24.
    V1_7,
    /// Debian unstable (sid): 2.1.9.
    V2_1,
}

impl Release {
    pub const ALL: [Release; 3] = [Release::V1_6, Release::V1_7, Release::V2_1];

    /// The version as regmirror's `--containerd-version` spells it.
    pub fn version(self) -> &'static str {
        match self {
            Release::V1_6 => "1.6.20",
            Release::V1_7 => "1.7.24",
            Release::V2_1 => "2.1.9",
        }
    }

    pub fn is_2x(self) -> bool {
        self == Release::V2_1
    }

    /// The directory holding this release's `containerd` and `ctr`.
    pub fn bin_dir(self) -> PathBuf {
        match self {
            Release::V1_6 => PathBuf::from("/usr/bin"),
            _ => {
                let cache = std::env::var_os("REGMIRROR_CONTAINERD_CACHE")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/containerd")
                    });
                cache.join(self.version()).join("usr/bin")
            }
        }
    }

    pub fn binary(self) -> PathBuf {
        self.bin_dir().join("containerd")
    }

    /// `None` when the binary is there and says it is this version; else what is wrong.
    pub fn problem(self) -> Option<String> {
        let bin = self.binary();
        let out = Command::new(&bin).arg("--version").output();
        match out {
            Ok(o) if String::from_utf8_lossy(&o.stdout).contains(self.version()) => None,
            Ok(o) => Some(format!(
                "{} --version says {:?}, not {}",
                bin.display(),
                String::from_utf8_lossy(&o.stdout).trim(),
                self.version()
            )),
            Err(e) => Some(format!(
                "containerd {} not found at {} ({e}): run scripts/fetch-containerd.sh",
                self.version(),
                bin.display()
            )),
        }
    }

    /// `PATH` with this release's directory first (for regmirror's `containerd --version`).
    pub fn path_env(self) -> std::ffi::OsString {
        let mut dirs = vec![self.bin_dir()];
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        std::env::join_paths(dirs).expect("PATH")
    }
}

/// The config.toml a node starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// Debian's packaged config.toml (`tests/fixtures/debian-config.toml`), version 2.
    Debian,
    /// `containerd config default` of the node's release (version 2 on 1.x, 3 on 2.x).
    Default,
    /// A version 1 file ([`V1_CONFIG`]).
    V1,
}

impl Base {
    pub fn text(self, release: Release) -> String {
        match self {
            Base::Debian => DEBIAN_CONFIG.to_string(),
            Base::Default => run(Command::new(release.binary()).args(["config", "default"])),
            Base::V1 => V1_CONFIG.to_string(),
        }
    }
}

/// A node: a containerd config, certs dir and regmirror state dir in a temp dir, plus the
/// containerd process once started.
pub struct Containerd {
    pub base: Base,
    pub release: Release,
    /// The config.toml regmirror edits and containerd reads.
    pub config: PathBuf,
    /// `--certs-dir` for regmirror (not created beforehand, like on a fresh node).
    pub certs_dir: PathBuf,
    /// `--state-dir` for regmirror.
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// containerd's log (stderr, debug level), appended across restarts.
    pub log: PathBuf,
    /// The config.toml as prepared, before regmirror touched it.
    pub original: String,
    proc: Option<ChildGuard>,
    rt: tokio::runtime::Runtime,
    // Declared last: dropped after the process is stopped.
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Debian 12's containerd (1.6.20) from `base`; see [`Containerd::prepare_on`].
    pub fn prepare(base: Base) -> Containerd {
        Containerd::prepare_on(Release::V1_6, base)
    }

    /// Writes the starting config (from `base`) with the isolation keys set, for `release`.
    /// Does not start.
    pub fn prepare_on(release: Release, base: Base) -> Containerd {
        let dir = temp_dir("ctd");
        let d = dir.path();
        let socket = d.join("containerd.sock");
        let mut doc: DocumentMut = base.text(release).parse().expect("base config.toml parses");
        isolate(&mut doc, d, &socket);
        if release.is_2x() {
            isolate_nri(&mut doc, d);
        }
        let original = doc.to_string();
        let config = d.join("config.toml");
        std::fs::write(&config, &original).unwrap();
        Containerd {
            base,
            release,
            config,
            certs_dir: d.join("certs.d"),
            state_dir: d.join("regmirror-state"),
            socket,
            log: d.join("containerd.log"),
            original,
            proc: None,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts containerd and waits until CRI answers Version and Status says RuntimeReady;
    /// panics with containerd's log otherwise.
    pub fn start(&mut self) {
        if let Err(e) = self.try_start() {
            let log = if e.is_unimplemented() {
                self.log_grep(&["cri", "level=error", "level=warn"], 30)
            } else {
                tail(&self.log, 40)
            };
            panic!(
                "containerd ({:?} base) did not become healthy: {e}\nconfig:\n{}\nlog:\n{log}",
                self.base,
                self.config_text()
            );
        }
    }

    /// Starts containerd and waits (up to [`START_TIMEOUT`]) with [`cri::wait_healthy`]. The
    /// process is kept (and stopped on drop) even when this fails. Returns the CRI version.
    pub fn try_start(&mut self) -> Result<String, CriError> {
        assert!(self.proc.is_none(), "containerd already running");
        let mut cmd = Command::new(self.release.binary());
        cmd.arg("--config")
            .arg(&self.config)
            .args(["--log-level", "debug"]);
        let started = Instant::now();
        self.proc = Some(ChildGuard::spawn(
            "containerd",
            cmd,
            self.dir.path().join("containerd.stdout"),
            self.log.clone(),
        ));
        let deadline = started + START_TIMEOUT;
        loop {
            let proc = self.proc.as_mut().expect("just started");
            if let Some(st) = proc.exited() {
                return Err(CriError::Connect {
                    socket: self.socket.clone(),
                    detail: format!("containerd exited at start ({st})"),
                });
            }
            // Short rounds, so that an early exit is noticed between them.
            match self
                .rt
                .block_on(cri::wait_healthy(&self.socket, Duration::from_millis(500)))
            {
                Ok(version) => {
                    eprintln!(
                        "containerd {version} ({:?}) pid {} ({:?} base) healthy after {:?}",
                        self.release,
                        self.pid(),
                        self.base,
                        started.elapsed()
                    );
                    return Ok(version);
                }
                Err(e) if e.is_unimplemented() || Instant::now() >= deadline => return Err(e),
                Err(_) => {}
            }
        }
    }

    /// Stops containerd (SIGTERM; SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(10));
        }
    }

    /// Stop + start: what `systemctl restart containerd` does on a node.
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    pub fn pid(&self) -> u32 {
        self.proc.as_ref().expect("containerd not running").pid()
    }

    /// The config.toml as it is now.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config).unwrap_or_default()
    }

    /// Replaces config.toml (for hand-written configurations).
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    /// CRI PullImage, bounded by [`PULL_TIMEOUT`].
    pub fn pull(&self, image: &str) -> Result<String, String> {
        let started = Instant::now();
        let r = self.rt.block_on(async {
            let mut c = CriClient::connect(&self.socket)
                .await
                .map_err(|e| e.to_string())?;
            match tokio::time::timeout(PULL_TIMEOUT, c.pull_image(image)).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!(
                    "PullImage {image} timed out after {PULL_TIMEOUT:?}"
                )),
            }
        });
        eprintln!(
            "pull {image}: {} in {:?}",
            if r.is_ok() { "ok" } else { "FAILED" },
            started.elapsed()
        );
        r
    }

    /// CRI Status(verbose).
    pub fn status(&self) -> CriStatus {
        self.rt
            .block_on(async {
                let mut c = CriClient::connect(&self.socket).await?;
                c.status().await
            })
            .expect("CRI Status")
    }

    /// CRI Version: the runtime version.
    pub fn version(&self) -> String {
        self.rt
            .block_on(async {
                let mut c = CriClient::connect(&self.socket).await?;
                c.version().await
            })
            .expect("CRI Version")
    }

    /// `containerd config dump` of this node's config with this release: the effective
    /// configuration as that containerd reads the file (2.x: migrated to version 3).
    pub fn config_dump(&self) -> DocumentMut {
        let text = run(Command::new(self.release.binary())
            .arg("--config")
            .arg(&self.config)
            .args(["config", "dump"]));
        text.parse().expect("config dump parses")
    }

    /// The registry settings this containerd took: from CRI Status(verbose) on 1.x (what it
    /// really loaded), from `containerd config dump` on 2.x (its Status no longer carries them;
    /// the real pulls of each test are the proof there).
    pub fn loaded(&self) -> Loaded {
        if !self.release.is_2x() {
            let r = self.effective_registry();
            let mirrors = r["mirrors"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            let eps = v["endpoint"].as_array().cloned().unwrap_or_default();
                            let eps = eps.iter().filter_map(|e| e.as_str().map(String::from));
                            (k.clone(), eps.collect())
                        })
                        .collect()
                })
                .unwrap_or_default();
            return Loaded {
                config_path: r["configPath"].as_str().unwrap_or("").to_string(),
                mirrors,
                from: "CRI Status",
            };
        }
        let dump = self.config_dump();
        let reg = dump
            .get("plugins")
            .and_then(|p| p.get("io.containerd.cri.v1.images"))
            .and_then(|p| p.get("registry"));
        let config_path = reg
            .and_then(|r| r.get("config_path"))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let mut mirrors = std::collections::BTreeMap::new();
        if let Some(m) = reg
            .and_then(|r| r.get("mirrors"))
            .and_then(|m| m.as_table_like())
        {
            for (k, v) in m.iter() {
                let eps = v
                    .get("endpoint")
                    .and_then(|e| e.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|e| e.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                mirrors.insert(k.to_string(), eps);
            }
        }
        Loaded {
            config_path,
            mirrors,
            from: "containerd config dump",
        }
    }

    /// Stops this containerd and starts `release` on the same config, root and state: a
    /// package upgrade of the node.
    pub fn upgrade_to(&mut self, release: Release) {
        self.stop();
        self.release = release;
        self.start();
    }

    /// `info["config"]["registry"]` of CRI Status(verbose): what containerd really loaded.
    pub fn effective_registry(&self) -> serde_json::Value {
        let st = self.status();
        st.config
            .as_ref()
            .and_then(|c| c.get("registry"))
            .cloned()
            .unwrap_or_else(|| panic!("Status(verbose) has no config.registry: {st:?}"))
    }

    /// The last `n` lines of containerd's log that contain any of `needles`.
    pub fn log_grep(&self, needles: &[&str], n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| needles.iter().any(|w| l.contains(w)))
            .collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// containerd's log lines about pulls and registry hosts (for failure evidence).
    pub fn pull_log(&self) -> String {
        self.log_grep(
            &[
                "PullImage",
                "resolv",
                "fetch",
                "trying next host",
                "do request",
                "failed",
                "level=error",
            ],
            25,
        )
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sets `root`, `state`, `[grpc] address`, `[ttrpc] address` and the `opt` plugin's `path`
/// (else it creates `/opt/containerd` or `/var/lib/containerd/opt` on the machine) to paths
/// under `dir`; keeps everything else.
pub fn isolate(doc: &mut DocumentMut, dir: &Path, socket: &Path) {
    let s = |p: PathBuf| p.to_str().unwrap().to_string();
    doc["root"] = value(s(dir.join("root")));
    // A version 1 file names plugins by their short id.
    if doc.get("version").is_none() {
        let opt = child_table(table(doc, "plugins"), "opt");
        opt["path"] = value(s(dir.join("opt")));
    }
    doc["state"] = value(s(dir.join("state")));
    table(doc, "grpc")["address"] = value(s(socket.to_path_buf()));
    table(doc, "ttrpc")["address"] = value(s(dir.join("containerd.sock.ttrpc")));
    let plugins = table(doc, "plugins");
    let opt = child_table(plugins, "io.containerd.internal.v1.opt");
    opt["path"] = value(s(dir.join("opt")));
}

/// containerd 2.x starts NRI by default on one host-wide socket (`/var/run/nri/nri.sock`): two
/// test nodes starting at once race for it, and the loser exits at start ("bind: address
/// already in use", a CI failure of case11 on 2.1). Each node gets its own socket.
fn isolate_nri(doc: &mut DocumentMut, dir: &Path) {
    let plugins = table(doc, "plugins");
    let nri = child_table(plugins, "io.containerd.nri.v1.nri");
    nri["socket_path"] = value(dir.join("nri.sock").to_str().unwrap());
}

fn table<'a>(doc: &'a mut DocumentMut, key: &str) -> &'a mut Table {
    doc.entry(key)
        .or_insert_with(|| Item::Table(Table::new()))
        .as_table_mut()
        .unwrap_or_else(|| panic!("[{key}] is not a table"))
}

/// `parent.key`, created as a table if missing; a created table of tables stays implicit (no
/// header line of its own), an existing one is left exactly as it is.
fn child_table<'a>(parent: &'a mut Table, key: &str) -> &'a mut Table {
    parent
        .entry(key)
        .or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        })
        .as_table_mut()
        .unwrap_or_else(|| panic!("{key} is not a table"))
}

/// `[plugins."io.containerd.grpc.v1.cri".registry]` of a version 2 config, created if missing.
pub fn cri_registry(doc: &mut DocumentMut) -> &mut Table {
    let plugins = table(doc, "plugins");
    let cri = child_table(plugins, "io.containerd.grpc.v1.cri");
    child_table(cri, "registry")
}

/// The hand-written legacy config: `mirrors."docker.io".endpoint = [endpoint]` (for the harness
/// check and the negative control, without regmirror).
pub fn with_legacy_mirror(config: &str, source: &str, endpoint: &str) -> String {
    let mut doc: DocumentMut = config.parse().expect("config parses");
    let mirrors = child_table(cri_registry(&mut doc), "mirrors");
    let mut m = Table::new();
    let mut arr = toml_edit::Array::new();
    arr.push(endpoint);
    m["endpoint"] = value(arr);
    mirrors.insert(source, Item::Table(m));
    doc.to_string()
}
