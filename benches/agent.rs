//! End-to-end benchmark drivers for regmirror (no criterion; `harness = false`). Each
//! subcommand is bounded in count and time and prints its figures; `scripts/bench.sh` runs them
//! all. Not run by CI; nothing here is a timed assertion.
//!
//! ```text
//! cargo bench --bench agent -- fixtures DIR
//! cargo bench --bench agent -- merge --dir DIR [--rounds 9]
//! cargo bench --bench agent -- mem --dir DIR
//! cargo bench --bench agent -- propagation [--updates 1000] [--mirrors 3] [--config default|1mib] [--debounce 0s]
//! cargo bench --bench agent -- coalesce [--updates 20] [--gap-ms 50]
//! cargo bench --bench agent -- footprint [--secs 60]
//! ```
//!
//! `propagation`, `coalesce` and `footprint` run the real `regmirror run` binary against the
//! FAKE Kubernetes API server of `tests/support_kube` (plain HTTP on 127.0.0.1, no auth) and
//! measure from the moment a Secret update is stored (the update call) to the moment the new
//! content is visible in config.toml (inotify on its directory plus a re-read).

mod common;
#[path = "../tests/support_kube/mod.rs"]
mod support_kube;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use notify::{RecursiveMode, Watcher};
use regmirror::render::{ConfigOwnership, Mode, RenderInput, render};
use support_kube::FakeApiServer;

const NS: &str = "jet-system";
const NAME: &str = "registry-info";

#[derive(Parser)]
struct Cli {
    /// The regmirror binary under test (default: the one cargo built for this bench, i.e. the
    /// release profile).
    #[arg(long, global = true, env = "REGMIRROR_BIN")]
    bin: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write the generated inputs (configs, Secrets, mirror lists) to DIR.
    Fixtures { dir: PathBuf },
    /// regmirror vs the Python tomlkit script on the 1 MiB config with 1,000 mirrors,
    /// interleaved round by round: in-process merge and whole-process wall time.
    Merge {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 9)]
        rounds: usize,
        #[arg(long, default_value = "python3")]
        python: String,
        /// scripts/bench (tomlkit_merge.py, check_outputs.py).
        #[arg(long, default_value = "scripts/bench")]
        scripts: PathBuf,
    },
    /// Peak RSS (GNU time) and wall time of `regmirror diff` / `apply` for 10/100/1,000 mirrors.
    Mem {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        #[arg(long, default_value = "python3")]
        python: String,
        #[arg(long, default_value = "scripts/bench")]
        scripts: PathBuf,
    },
    /// Secret update → config.toml latency through the fake API server, one update at a time.
    Propagation {
        #[arg(long, default_value_t = 1000)]
        updates: usize,
        /// Mirrors in the Secret (the first one changes with every update).
        #[arg(long, default_value_t = 3)]
        mirrors: usize,
        /// `default` (containerd 1.7 default file) or `1mib`.
        #[arg(long, default_value = "default")]
        config: String,
        #[arg(long, default_value = "0s")]
        debounce: String,
        /// Bound for the whole run.
        #[arg(long, default_value_t = 300)]
        max_secs: u64,
    },
    /// A burst of updates with the default 2 s debounce: how many writes, and when.
    Coalesce {
        #[arg(long, default_value_t = 20)]
        updates: usize,
        #[arg(long, default_value_t = 50)]
        gap_ms: u64,
    },
    /// `regmirror run` idle with an open watch: RSS, CPU time, wake-ups; binary size.
    Footprint {
        #[arg(long, default_value_t = 60)]
        secs: u64,
    },
}

fn main() {
    // `cargo bench` appends `--bench` to the arguments of every bench binary.
    let cli = Cli::parse_from(std::env::args().filter(|a| a != "--bench"));
    let bin = cli
        .bin
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_regmirror")));
    match cli.cmd {
        Cmd::Fixtures { dir } => fixtures(&dir),
        Cmd::Merge {
            dir,
            rounds,
            python,
            scripts,
        } => merge(&bin, &dir, rounds, &python, &scripts),
        Cmd::Mem {
            dir,
            repeat,
            python,
            scripts,
        } => mem(&bin, &dir, repeat, &python, &scripts),
        Cmd::Propagation {
            updates,
            mirrors,
            config,
            debounce,
            max_secs,
        } => propagation(&bin, updates, mirrors, &config, &debounce, max_secs),
        Cmd::Coalesce { updates, gap_ms } => coalesce(&bin, updates, gap_ms),
        Cmd::Footprint { secs } => footprint(&bin, secs),
    }
}

// ---------------------------------------------------------------------------------------------
// fixtures, merge, mem

const SIZES: [usize; 3] = [10, 100, 1000];

fn fixtures(dir: &Path) {
    fs::create_dir_all(dir).expect("create fixture dir");
    let big = common::config_1mib();
    fs::write(dir.join("config-1mib.toml"), &big).expect("write");
    fs::write(dir.join("config-default.toml"), common::DEFAULT_CONFIG).expect("write");
    for n in SIZES {
        let list = common::mirror_list(n);
        fs::write(dir.join(format!("mirrors-{n}.txt")), &list).expect("write");
        fs::write(
            dir.join(format!("secret-{n}.yaml")),
            common::secret_yaml(&list),
        )
        .expect("write");
    }
    println!(
        "fixtures in {}: config-1mib.toml ({} bytes, {} lines), config-default.toml ({} bytes), secret-{{10,100,1000}}.yaml, mirrors-{{10,100,1000}}.txt",
        dir.display(),
        big.len(),
        big.lines().count(),
        common::DEFAULT_CONFIG.len()
    );
}

/// A scratch copy of config.toml with its own certs and state dirs.
struct Scratch {
    config: PathBuf,
    certs: PathBuf,
    state: PathBuf,
}

impl Scratch {
    fn new(dir: &Path, original: &Path) -> Scratch {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).expect("scratch dir");
        let config = dir.join("config.toml");
        fs::copy(original, &config).expect("copy config");
        Scratch {
            config,
            certs: dir.join("certs.d"),
            state: dir.join("state"),
        }
    }

    fn cli(&self, bin: &Path, verb: &str, secret: &Path) -> Command {
        let mut c = Command::new(bin);
        c.arg(verb)
            .arg("--secret-file")
            .arg(secret)
            .arg("--config")
            .arg(&self.config)
            .arg("--certs-dir")
            .arg(&self.certs)
            .arg("--state-dir")
            .arg(&self.state)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }
}

fn run_timed(mut c: Command, ok: &[i32]) -> f64 {
    let t = Instant::now();
    let status = c.status().expect("spawn");
    let secs = t.elapsed().as_secs_f64();
    assert!(
        status.code().is_some_and(|s| ok.contains(&s)),
        "{c:?} exited {status}"
    );
    secs
}

fn ms(s: f64) -> String {
    format!("{:.1} ms", s * 1e3)
}

fn merge(bin: &Path, dir: &Path, rounds: usize, python: &str, scripts: &Path) {
    let original = dir.join("config-1mib.toml");
    let secret = dir.join("secret-1000.yaml");
    let mirrors = dir.join("mirrors-1000.txt");
    let config = fs::read_to_string(&original).expect("run `fixtures` first");
    let spec = common::spec(1000);
    let none = ConfigOwnership::default();
    let py_out = dir.join("work-tomlkit/config.toml");
    fs::create_dir_all(py_out.parent().expect("parent")).expect("mkdir");

    let (mut rust_inproc, mut rust_cli, mut py_inproc, mut py_proc) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut py_parts = Vec::new();
    let mut rust_scratch = None;
    println!(
        "merge: {} bytes of config.toml, 1,000 mirrors; {rounds} interleaved rounds (order alternates)",
        config.len()
    );
    for round in 0..rounds {
        let mut steps: Vec<u8> = vec![0, 1, 2];
        if round % 2 == 1 {
            steps.reverse();
        }
        for step in steps {
            match step {
                0 => {
                    let t = Instant::now();
                    let out = render(&RenderInput {
                        config: &config,
                        prior: &none,
                        spec: Some(&spec),
                        mode: Mode::Auto,
                        certs_dir: Path::new("/etc/containerd/certs.d"),
                        containerd: None,
                    })
                    .expect("render");
                    rust_inproc.push(t.elapsed().as_secs_f64());
                    std::hint::black_box(out);
                }
                1 => {
                    let s = Scratch::new(&dir.join("work-regmirror"), &original);
                    rust_cli.push(run_timed(s.cli(bin, "apply", &secret), &[0]));
                    rust_scratch = Some(s);
                }
                _ => {
                    let t = Instant::now();
                    let out = Command::new(python)
                        .arg(scripts.join("tomlkit_merge.py"))
                        .arg(&original)
                        .arg(&mirrors)
                        .arg(&py_out)
                        .output()
                        .expect("run python");
                    py_proc.push(t.elapsed().as_secs_f64());
                    assert!(
                        out.status.success(),
                        "tomlkit_merge.py failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let v: serde_json::Value =
                        serde_json::from_slice(&out.stdout).expect("tomlkit_merge.py JSON");
                    py_inproc.push(v["merge"].as_f64().expect("merge"));
                    py_parts.push(v);
                }
            }
        }
    }
    let part = |k: &str| {
        common::median(
            &py_parts
                .iter()
                .map(|v| v[k].as_f64().unwrap_or(f64::NAN))
                .collect::<Vec<_>>(),
        )
    };
    let (ri, rc, pi, pp) = (
        common::median(&rust_inproc),
        common::median(&rust_cli),
        common::median(&py_inproc),
        common::median(&py_proc),
    );
    println!("  medians of {rounds} rounds:");
    println!(
        "  in-process merge (parse + edit + print)   regmirror render {:>10}   tomlkit {:>10}   tomlkit/regmirror = {:.1}x",
        ms(ri),
        ms(pi),
        pi / ri
    );
    println!(
        "    tomlkit parts: parse {}, edit {}, dump {}, write+fsync {}",
        ms(part("parse")),
        ms(part("edit")),
        ms(part("dump")),
        ms(part("write"))
    );
    println!(
        "  whole process, wall (start → file written) regmirror apply  {:>10}   python3 {:>10}   python/regmirror = {:.1}x",
        ms(rc),
        ms(pp),
        pp / rc
    );
    println!(
        "    (regmirror apply also: flock, state.json twice, config.toml.regmirror.bak, every write fsynced)"
    );
    let rs = rust_scratch.expect("at least one round");
    let check = Command::new(python)
        .arg(scripts.join("check_outputs.py"))
        .arg(&original)
        .arg(&rs.config)
        .arg(&py_out)
        .arg("1000")
        .output()
        .expect("run check_outputs.py");
    print!("  {}", String::from_utf8_lossy(&check.stdout));
    if !check.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&check.stderr));
        std::process::exit(1);
    }
}

/// `/usr/bin/time -f "%M %e"` → (max RSS KiB, seconds).
fn gnu_time(c: &Command, ok: &[i32]) -> Option<(u64, f64)> {
    let mut t = Command::new("/usr/bin/time");
    t.arg("-f").arg("RSS %M WALL %e").arg(c.get_program());
    t.args(c.get_args());
    t.stdout(Stdio::null());
    let out = t.output().ok()?;
    if !out.status.code().is_some_and(|s| ok.contains(&s)) {
        eprintln!(
            "{c:?} exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().rev().find(|l| l.starts_with("RSS "))?;
    let mut w = line.split_whitespace();
    let rss = w.nth(1)?.parse().ok()?;
    let wall = w.nth(1)?.parse().ok()?;
    Some((rss, wall))
}

fn mem(bin: &Path, dir: &Path, repeat: usize, python: &str, scripts: &Path) {
    if !Path::new("/usr/bin/time").exists() {
        println!("mem: /usr/bin/time (GNU time) is not installed; skipped");
        return;
    }
    let mut base = Command::new(bin);
    base.arg("--version");
    let baseline: Vec<u64> = (0..repeat)
        .filter_map(|_| gnu_time(&base, &[0]).map(|x| x.0))
        .collect();
    println!(
        "mem: peak RSS (GNU time %M), median of {repeat}; baseline `regmirror --version`: {} KiB",
        median_u64(&baseline)
    );
    println!(
        "  {:<8} {:>7}   {:>14} {:>10}   {:>14} {:>10}",
        "config", "mirrors", "diff maxRSS", "diff wall", "apply maxRSS", "apply wall"
    );
    for (name, file) in [
        ("default", "config-default.toml"),
        ("1mib", "config-1mib.toml"),
    ] {
        for n in SIZES {
            let secret = dir.join(format!("secret-{n}.yaml"));
            let (mut drss, mut dwall, mut arss, mut awall) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..repeat {
                let s = Scratch::new(&dir.join("work-mem"), &dir.join(file));
                if let Some((r, w)) = gnu_time(&s.cli(bin, "diff", &secret), &[1]) {
                    drss.push(r);
                    dwall.push(w);
                }
                if let Some((r, w)) = gnu_time(&s.cli(bin, "apply", &secret), &[0]) {
                    arss.push(r);
                    awall.push(w);
                }
            }
            println!(
                "  {:<8} {:>7}   {:>10} KiB {:>8.2} s   {:>10} KiB {:>8.2} s",
                name,
                n,
                median_u64(&drss),
                common::median(&dwall),
                median_u64(&arss),
                common::median(&awall)
            );
        }
    }
    let mut c = Command::new(python);
    c.arg(scripts.join("tomlkit_merge.py"))
        .arg(dir.join("config-1mib.toml"))
        .arg(dir.join("mirrors-1000.txt"))
        .arg(dir.join("work-mem/py.toml"));
    if let Some((r, w)) = gnu_time(&c, &[0]) {
        println!("  python3 tomlkit_merge.py, 1mib/1000: {r} KiB, {w:.2} s");
    }
}

fn median_u64(xs: &[u64]) -> u64 {
    let mut v = xs.to_vec();
    v.sort_unstable();
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// the agent against the fake API server

/// The fake API server on a tokio runtime of its own (one worker thread); the driver's own
/// thread stays free to wait on files.
struct Api {
    server: FakeApiServer,
    rt: tokio::runtime::Runtime,
}

impl Api {
    fn start() -> Api {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let server = rt.block_on(FakeApiServer::start());
        Api { server, rt }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _g = self.rt.enter();
        self.server.drop_connections();
    }
}

/// The MIRROR_REGISTRIES value of update `rev`: its first entry carries the revision.
fn rev_list(rev: usize, mirrors: usize) -> String {
    let mut list = format!(
        "docker.io::{}/{}/rev{rev:05}/docker.io",
        common::DOMAIN,
        common::BASE_PATH
    );
    if mirrors > 1 {
        list.push(',');
        list.push_str(&common::mirror_list(mirrors - 1));
    }
    list
}

fn rev_marker(rev: usize) -> String {
    format!("/rev{rev:05}/docker.io\"")
}

/// The revision config.toml holds now, if any.
fn rev_in(text: &str) -> Option<usize> {
    let i = text.find("/rev")?;
    text[i + 4..i + 9].parse().ok()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running `regmirror run` in a scratch directory.
struct Agent {
    child: Child,
    dir: tempfile::TempDir,
    config: PathBuf,
    listen: SocketAddr,
    /// inotify on config.toml's directory.
    events: mpsc::Receiver<notify::Result<notify::Event>>,
    _watcher: notify::RecommendedWatcher,
}

impl Agent {
    fn start(bin: &Path, api: &Api, config_text: &str, debounce: Option<&str>) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let etc = dir.path().join("etc");
        fs::create_dir_all(&etc).expect("mkdir");
        let config = etc.join("config.toml");
        fs::write(&config, config_text).expect("write config");
        let kubeconfig = dir.path().join("kubeconfig");
        fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
                api.server.url()
            ),
        )
        .expect("write kubeconfig");
        let (tx, events) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(tx).expect("inotify");
        watcher
            .watch(&etc, RecursiveMode::NonRecursive)
            .expect("watch config dir");
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log = fs::File::create(dir.path().join("agent.log")).expect("log");
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--reload", "none", "--restart-jitter", "0"])
            .arg("--config")
            .arg(&config)
            .arg("--certs-dir")
            .arg(dir.path().join("certs.d"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--listen")
            .arg(listen.to_string())
            .env_remove("KUBECONFIG")
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some(d) = debounce {
            cmd.args(["--debounce", d]);
        }
        let child = cmd.spawn().expect("spawn regmirror run");
        Agent {
            child,
            dir,
            config,
            listen,
            events,
            _watcher: watcher,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until config.toml satisfies `done` (re-read on every inotify event, and every 20 ms
    /// as a backstop); `seen` gets every revision observed on the way. Returns the instant it
    /// was seen, or None after `timeout`.
    fn wait_for(
        &mut self,
        done: impl Fn(&str) -> bool,
        timeout: Duration,
        seen: &mut BTreeSet<usize>,
    ) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(text) = fs::read_to_string(&self.config) {
                if let Some(r) = rev_in(&text) {
                    seen.insert(r);
                }
                if done(&text) {
                    return Some(Instant::now());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "regmirror run exited early ({status}); log:\n{}",
                    self.log()
                );
            }
            let _ = self
                .events
                .recv_timeout((deadline - now).min(Duration::from_millis(20)));
            while self.events.try_recv().is_ok() {}
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    fn metrics(&self) -> String {
        let mut s = match TcpStream::connect_timeout(&self.listen, Duration::from_secs(2)) {
            Ok(s) => s,
            Err(_) => return String::new(),
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.listen
        );
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// `regmirror_applies_total{result="…"}`.
    fn applies(&self, result: &str) -> u64 {
        let key = format!("regmirror_applies_total{{result=\"{result}\"}}");
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .unwrap_or(0)
    }

    /// `applies_total{result="changed"}` once it has reached `at_least` (polled every 20 ms,
    /// for at most 10 s). The agent counts an apply only after every file is written and
    /// fsynced, i.e. a little after the new config.toml becomes visible, so reading it right
    /// away can miss the apply just seen.
    fn changed_at_least(&self, at_least: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n = self.applies("changed");
            if n >= at_least || Instant::now() >= deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `Name:   value kB` from /proc/PID/status.
fn status_field(pid: u32, field: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn config_for(name: &str) -> String {
    match name {
        "1mib" => common::config_1mib(),
        _ => common::DEFAULT_CONFIG.to_string(),
    }
}

fn propagation(
    bin: &Path,
    updates: usize,
    mirrors: usize,
    config: &str,
    debounce: &str,
    max_secs: u64,
) {
    let api = Api::start();
    api.server
        .create_secret(NS, NAME, common::secret_strings(&rev_list(0, mirrors)));
    let mut agent = Agent::start(bin, &api, &config_for(config), Some(debounce));
    let mut seen = BTreeSet::new();
    let m0 = rev_marker(0);
    let t = Instant::now();
    if agent
        .wait_for(|s| s.contains(&m0), Duration::from_secs(60), &mut seen)
        .is_none()
    {
        panic!(
            "the agent never applied the first Secret; log:\n{}",
            agent.log()
        );
    }
    let startup = t.elapsed();
    let changed0 = agent.changed_at_least(1);
    let run_deadline = Instant::now() + Duration::from_secs(max_secs);
    let mut lat = Vec::with_capacity(updates);
    let mut timeouts = 0usize;
    let wall = Instant::now();
    for rev in 1..=updates {
        if Instant::now() >= run_deadline {
            println!(
                "  stopped after {} updates: --max-secs {max_secs} reached",
                rev - 1
            );
            break;
        }
        let marker = rev_marker(rev);
        let data = common::secret_strings(&rev_list(rev, mirrors));
        let t0 = Instant::now();
        api.server.update_secret(NS, NAME, data);
        match agent.wait_for(|s| s.contains(&marker), Duration::from_secs(10), &mut seen) {
            Some(t1) => lat.push((t1 - t0).as_secs_f64()),
            None => timeouts += 1,
        }
    }
    let wall = wall.elapsed().as_secs_f64();
    let changed = agent.changed_at_least(changed0 + lat.len() as u64) - changed0;
    let (rss, hwm) = (
        status_field(agent.pid(), "VmRSS"),
        status_field(agent.pid(), "VmHWM"),
    );
    let config_len = fs::metadata(&agent.config).map(|m| m.len()).unwrap_or(0);
    agent.stop();
    println!(
        "propagation: {} updates, Secret with {mirrors} mirrors, config.toml {config} ({config_len} bytes after), --debounce {debounce}, --reload none",
        lat.len() + timeouts
    );
    println!(
        "  update call → new config.toml visible: p50 {}  p90 {}  p99 {}  max {}  (mean {}; {} timeouts of 10 s)",
        ms(common::percentile(&lat, 50.0)),
        ms(common::percentile(&lat, 90.0)),
        ms(common::percentile(&lat, 99.0)),
        ms(common::percentile(&lat, 100.0)),
        ms(lat.iter().sum::<f64>() / lat.len().max(1) as f64),
        timeouts
    );
    println!(
        "  {:.1} updates/s end to end; {} config.toml writes (applies_total changed); agent start → first apply {}; agent VmRSS {} KiB, VmHWM {} KiB",
        lat.len() as f64 / wall,
        changed,
        ms(startup.as_secs_f64()),
        rss.unwrap_or(0),
        hwm.unwrap_or(0)
    );
}

fn coalesce(bin: &Path, updates: usize, gap_ms: u64) {
    let api = Api::start();
    api.server
        .create_secret(NS, NAME, common::secret_strings(&rev_list(0, 3)));
    let mut agent = Agent::start(bin, &api, common::DEFAULT_CONFIG, None);
    let mut seen = BTreeSet::new();
    let m0 = rev_marker(0);
    if agent
        .wait_for(|s| s.contains(&m0), Duration::from_secs(60), &mut seen)
        .is_none()
    {
        panic!(
            "the agent never applied the first Secret; log:\n{}",
            agent.log()
        );
    }
    let changed0 = agent.changed_at_least(1);
    seen.clear();
    let first = Instant::now();
    let mut last = first;
    for rev in 1..=updates {
        if rev > 1 {
            // Sleep in small steps while watching the file, so an early write would be seen.
            let until = Instant::now() + Duration::from_millis(gap_ms);
            while Instant::now() < until {
                agent.wait_for(
                    |_| false,
                    until.saturating_duration_since(Instant::now()),
                    &mut seen,
                );
            }
        }
        last = Instant::now();
        api.server
            .update_secret(NS, NAME, common::secret_strings(&rev_list(rev, 3)));
    }
    let marker = rev_marker(updates);
    let done = agent.wait_for(|s| s.contains(&marker), Duration::from_secs(30), &mut seen);
    // Anything written after the final state would show here too.
    agent.wait_for(|_| false, Duration::from_secs(3), &mut seen);
    let changed = agent.applies("changed") - changed0;
    agent.stop();
    let burst = (last - first).as_secs_f64();
    match done {
        Some(t) => println!(
            "coalesce (default --debounce 2s): {updates} updates {gap_ms} ms apart (burst {}); config.toml written {changed} time(s); revisions seen in the file: {:?}; last update → file {}, first update → file {}",
            ms(burst),
            seen,
            ms((t - last).as_secs_f64()),
            ms((t - first).as_secs_f64())
        ),
        None => println!(
            "coalesce: the final revision never reached config.toml within 30 s (written {changed} times, seen {seen:?})"
        ),
    }
}

/// CPU ticks (utime+stime of the whole process, /proc/PID/stat, which keeps the time of threads
/// that have exited), and per live thread (/proc/PID/task/TID): on-CPU nanoseconds (schedstat)
/// and context switches (status).
#[derive(Debug, Clone, Default)]
struct Usage {
    ticks: u64,
    /// TID → (run_ns, voluntary, involuntary).
    tasks: BTreeMap<u32, (u64, u64, u64)>,
}

fn usage(pid: u32) -> Usage {
    let mut u = Usage::default();
    if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat"))
        && let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r)
    {
        // After "pid (comm)": state is field 3; utime and stime are fields 14 and 15.
        let f: Vec<&str> = rest.split_whitespace().collect();
        u.ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let p = t.path();
            let run_ns = fs::read_to_string(p.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0);
            let (mut vol, mut invol) = (0, 0);
            if let Ok(s) = fs::read_to_string(p.join("status")) {
                for l in s.lines() {
                    let num = |l: &str| {
                        l.split_whitespace()
                            .nth(1)
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(0)
                    };
                    if l.starts_with("voluntary_ctxt_switches:") {
                        vol = num(l);
                    } else if l.starts_with("nonvoluntary_ctxt_switches:") {
                        invol = num(l);
                    }
                }
            }
            u.tasks.insert(tid, (run_ns, vol, invol));
        }
    }
    u
}

/// Per-thread activity over a window, from samples taken every `step` (reading /proc does not
/// wake the process). A thread's counters only grow, so its share is its last sample minus its
/// first (0 for a thread born inside the window); a thread that exits inside the window keeps
/// what its last sample saw (at most `step` of activity is missed). Summing the live threads
/// of two snapshots instead goes backwards when one of them exits (tokio's blocking pool).
#[derive(Debug, Default)]
struct Window {
    first: BTreeMap<u32, (u64, u64, u64)>,
    last: BTreeMap<u32, (u64, u64, u64)>,
    threads_max: usize,
}

impl Window {
    fn start(u: &Usage) -> Window {
        Window {
            first: u.tasks.clone(),
            last: u.tasks.clone(),
            threads_max: u.tasks.len(),
        }
    }

    fn sample(&mut self, u: &Usage) {
        self.threads_max = self.threads_max.max(u.tasks.len());
        for (tid, v) in &u.tasks {
            self.first.entry(*tid).or_insert((0, 0, 0));
            self.last.insert(*tid, *v);
        }
    }

    /// (run_ns, voluntary, involuntary) over the window, summed over every thread seen.
    fn totals(&self) -> (u64, u64, u64) {
        self.last.iter().fold((0, 0, 0), |acc, (tid, l)| {
            let f = self.first.get(tid).copied().unwrap_or((0, 0, 0));
            (
                acc.0 + l.0.saturating_sub(f.0),
                acc.1 + l.1.saturating_sub(f.1),
                acc.2 + l.2.saturating_sub(f.2),
            )
        })
    }
}

fn clk_tck() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

fn footprint(bin: &Path, secs: u64) {
    let size = fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    let api = Api::start();
    api.server
        .create_secret(NS, NAME, common::secret_strings(&rev_list(0, 3)));
    let mut agent = Agent::start(bin, &api, common::DEFAULT_CONFIG, None);
    let mut seen = BTreeSet::new();
    let m0 = rev_marker(0);
    if agent
        .wait_for(|s| s.contains(&m0), Duration::from_secs(60), &mut seen)
        .is_none()
    {
        panic!("the agent never applied the Secret; log:\n{}", agent.log());
    }
    std::thread::sleep(Duration::from_secs(3));
    let pid = agent.pid();
    let open_watches = api
        .server
        .requests()
        .iter()
        .filter(|r| r.is_watch())
        .count();
    let (req0, log0) = (api.server.requests().len(), agent.log().lines().count());
    let open0 = api.server.open_watches();
    let u0 = usage(pid);
    let mut window = Window::start(&u0);
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(secs);
    while Instant::now() < until {
        std::thread::sleep(
            until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200)),
        );
        window.sample(&usage(pid));
    }
    let u1 = usage(pid);
    window.sample(&u1);
    let el = t0.elapsed().as_secs_f64();
    let (req1, log1) = (api.server.requests().len(), agent.log().lines().count());
    let open1 = api.server.open_watches();
    let (rss, hwm) = (status_field(pid, "VmRSS"), status_field(pid, "VmHWM"));
    agent.stop();
    let tck = clk_tck();
    let (run_ns, vol, invol) = window.totals();
    let ticks = u1.ticks.saturating_sub(u0.ticks);
    println!(
        "footprint: `regmirror run` idle {el:.0} s with an open watch (Secret with 3 mirrors applied; {open_watches} watch request(s) made so far; open watch streams at start/end of the window: {open0}/{open1})"
    );
    println!(
        "  VmRSS {} KiB, VmHWM {} KiB, {} threads at the end ({} at most during the window)",
        rss.unwrap_or(0),
        hwm.unwrap_or(0),
        u1.tasks.len(),
        window.threads_max
    );
    println!(
        "  CPU: {ticks} ticks of 1/{tck} s (utime+stime) = {:.0} ms; on-CPU time summed over threads {:.2} ms ({:.4}% of one core)",
        ticks as f64 * 1000.0 / tck as f64,
        run_ns as f64 / 1e6,
        run_ns as f64 / 1e9 / el * 100.0
    );
    println!(
        "  wake-ups (context switches, all threads): {} = {:.2}/s ({vol} voluntary = {:.2}/s, {invol} involuntary); API requests while idle: {}; log lines while idle: {}",
        vol + invol,
        (vol + invol) as f64 / el,
        vol as f64 / el,
        req1 - req0,
        log1 - log0
    );
    println!(
        "  binary {}: {size} bytes ({:.1} MiB)",
        bin.display(),
        size as f64 / 1048576.0
    );
}
