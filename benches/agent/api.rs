//! `propagation`, `coalesce`: the real `regmirror run` against the FAKE Kubernetes API server,
//! from a Secret update to the new config.toml on disk.

use super::*;

/// The fake API server on a tokio runtime of its own (one worker thread); the driver's own
/// thread stays free to wait on files.
pub(crate) struct Api {
    pub(crate) server: FakeApiServer,
    pub(crate) rt: tokio::runtime::Runtime,
}

impl Api {
    pub(crate) fn start() -> Api {
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
pub(crate) fn rev_list(rev: usize, mirrors: usize) -> String {
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

pub(crate) fn rev_marker(rev: usize) -> String {
    format!("/rev{rev:05}/docker.io\"")
}

/// The revision config.toml holds now, if any.
pub(crate) fn rev_in(text: &str) -> Option<usize> {
    let i = text.find("/rev")?;
    text[i + 4..i + 9].parse().ok()
}

/// A running `regmirror run` in a scratch directory.
pub(crate) struct Agent {
    pub(crate) p: agent_process::AgentProcess,
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) config: PathBuf,
    /// inotify on config.toml's directory.
    pub(crate) events: mpsc::Receiver<notify::Result<notify::Event>>,
    pub(crate) _watcher: notify::RecommendedWatcher,
}

/// Where the agent reads the Secret from.
pub(crate) enum Source<'a> {
    /// The fake API server (`--kubeconfig`).
    Kube(&'a Api),
    /// A manifest file with this text (`--secret-file`).
    File(&'a str),
}

/// Where `start_from` puts the `--secret-file` manifest under the agent's scratch root.
pub(crate) fn secret_path(root: &Path) -> PathBuf {
    root.join("secret").join("secret.yaml")
}

impl Agent {
    pub(crate) fn start(bin: &Path, api: &Api, config_text: &str, debounce: Option<&str>) -> Agent {
        Agent::start_from(bin, Source::Kube(api), config_text, debounce)
    }

    pub(crate) fn start_from(
        bin: &Path,
        source: Source<'_>,
        config_text: &str,
        debounce: Option<&str>,
    ) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let etc = dir.path().join("etc");
        fs::create_dir_all(&etc).expect("mkdir");
        let config = etc.join("config.toml");
        fs::write(&config, config_text).expect("write config");
        let source_args: Vec<std::ffi::OsString> = match source {
            Source::Kube(api) => {
                let kubeconfig = dir.path().join("kubeconfig");
                fs::write(
                    &kubeconfig,
                    format!(
                        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
                        api.server.url()
                    ),
                )
                .expect("write kubeconfig");
                vec!["--kubeconfig".into(), kubeconfig.into()]
            }
            Source::File(text) => {
                // The Secret in a directory of its own, as a mounted Secret volume or
                // /etc/regmirror is: the agent watches that directory, and the agent's log
                // (which this bench reads) must not be in it.
                let secret = secret_path(dir.path());
                fs::create_dir_all(secret.parent().expect("parent")).expect("mkdir");
                fs::write(&secret, text).expect("write secret");
                vec!["--secret-file".into(), secret.into()]
            }
        };
        let (tx, events) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(tx).expect("inotify");
        watcher
            .watch(&etc, RecursiveMode::NonRecursive)
            .expect("watch config dir");
        let make = || {
            let mut cmd = Command::new(bin);
            cmd.arg("run")
                .args(&source_args)
                .args(["--reload", "none", "--restart-jitter", "0"])
                .arg("--config")
                .arg(&config)
                // Where a node has it (/etc/containerd/certs.d). A missing certs dir is watched
                // through its parent, which must not be the scratch root: the agent's log is
                // there, and this bench reads it (each read would wake the agent's inotify
                // thread, as any open of a file in a watched directory does with notify 8).
                .arg("--certs-dir")
                .arg(etc.join("certs.d"))
                .arg("--state-dir")
                .arg(dir.path().join("state"))
                .env_remove("KUBECONFIG")
                // No systemd watchdog (and no sd_notify): what an idle agent does on its own.
                .env_remove("NOTIFY_SOCKET")
                .env_remove("WATCHDOG_USEC")
                .env_remove("WATCHDOG_PID");
            if let Some(d) = debounce {
                cmd.args(["--debounce", d]);
            }
            cmd
        };
        let p = agent_process::AgentProcess::spawn(make, &dir.path().join("agent.log"), true);
        Agent {
            p,
            _dir: dir,
            config,
            events,
            _watcher: watcher,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.p.pid()
    }

    /// Wait until config.toml satisfies `done` (re-read on every inotify event, and every 20 ms
    /// as a backstop); `seen` gets every revision observed on the way. Returns the instant it
    /// was seen, or None after `timeout`.
    pub(crate) fn wait_for(
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
            let _ = self
                .events
                .recv_timeout((deadline - now).min(Duration::from_millis(20)));
            while self.events.try_recv().is_ok() {}
        }
    }

    pub(crate) fn log(&self) -> String {
        self.p.log()
    }

    /// Wait (≤ 60 s) until config.toml holds `marker` (the first Secret); panics with the log.
    pub(crate) fn first_apply(&mut self, marker: &str, seen: &mut BTreeSet<usize>) {
        if self
            .wait_for(|s| s.contains(marker), Duration::from_secs(60), seen)
            .is_none()
        {
            panic!(
                "the agent never applied the first Secret; log:\n{}",
                self.log()
            );
        }
    }

    /// `regmirror_applies_total{result="…"}`.
    pub(crate) fn applies(&self, result: &str) -> u64 {
        self.p
            .metric(&format!("regmirror_applies_total{{result=\"{result}\"}}")) as u64
    }

    /// `applies_total{result="changed"}` once it has reached `at_least` (polled every 20 ms,
    /// for at most 10 s). The agent counts an apply only after every file is written and
    /// fsynced, i.e. a little after the new config.toml becomes visible, so reading it right
    /// away can miss the apply just seen.
    pub(crate) fn changed_at_least(&self, at_least: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n = self.applies("changed");
            if n >= at_least || Instant::now() >= deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn stop(mut self) {
        self.p.stop();
    }
}

/// `Name:   value kB` from /proc/PID/status.
pub(crate) fn status_field(pid: u32, field: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

pub(crate) fn config_for(name: &str) -> String {
    match name {
        "1mib" => common::config_1mib(),
        "admin1000" => common::admin_mirrors_config(1000),
        _ => common::DEFAULT_CONFIG.to_string(),
    }
}

pub(crate) fn propagation(
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
    agent.first_apply(&m0, &mut seen);
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

pub(crate) fn coalesce(bin: &Path, updates: usize, gap_ms: u64) {
    let api = Api::start();
    api.server
        .create_secret(NS, NAME, common::secret_strings(&rev_list(0, 3)));
    let mut agent = Agent::start(bin, &api, common::DEFAULT_CONFIG, None);
    let mut seen = BTreeSet::new();
    let m0 = rev_marker(0);
    agent.first_apply(&m0, &mut seen);
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
