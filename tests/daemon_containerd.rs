//! End-to-end for the agent (`regmirror run`) against a REAL containerd (Debian 12's 1.6.20) and
//! REAL docker-registry instances on 127.0.0.1, all started by hand in temp dirs.
//!
//! No systemd runs here, so the agent reloads with `--reload command:<script>`: a small shell
//! script written by the test that does what `systemctl restart containerd` would do for the
//! test's containerd. It stops the containerd whose PID is in a pidfile (SIGTERM, waits for the
//! exit), starts a new `containerd --config C` detached (setsid, stdio to the log) and writes
//! the new PID. The test starts the first containerd through the same script, so every
//! containerd of a test has the same parent history and one pidfile names the live one. Each
//! invocation appends one line to `reload.log` (who, old PID, new PID, times): the count of
//! restarts and their timings come from there, independently of the agent's own metrics.
//!
//! 1. `secret_update_restarts_and_pulls_through_new_mirror`: Secret → apply → restart → pull via
//!    mirror A; edit the Secret to mirror B → exactly one restart → pulls go to B.
//! 2. `bad_config_rolls_back_and_is_not_retried`: the script injects `config_path` next to the
//!    legacy `mirrors` on its first run after a marker file appears (an admin edit racing the
//!    restart); containerd's CRI plugin then fails to load (UNIMPLEMENTED), the agent rolls back,
//!    restarts, is healthy on the old mirror, marks the spec bad and does not retry it; a new
//!    Secret is then applied normally.
//!
//! Every process is stopped by PID, also on panic: the agent by its `AgentProcess`, the
//! script-started containerd by [`PidfileGuard`] (which first forbids the script to start any
//! more). Needs root and the Debian packages of `support::REQUIRED`; skipped otherwise (a
//! failure with `REGMIRROR_E2E=1`). `REGMIRROR_E2E_KEEP=1` keeps the temp dirs.
//! Run: `REGMIRROR_E2E=1 cargo test --test daemon_containerd -- --nocapture`.

/// Also brings `e2e!(name)`: skip the test unless `support::prerequisites`, then time it.
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use support::cli::Secret;
use support::containerd::{Base, Containerd, Release};
use support::registry::{Kind, Registry};
use support::{poll, run, tail};

const DOCKER_REPO: &str = "airgap-images/docker.io/library/tiny";
const QUAY_REPO: &str = "airgap-images/quay.io/e2e/tiny";
/// What containerd must request from the mirror for `docker.io/library/tiny:<tag>`.
fn docker_path(tag: &str) -> String {
    format!("/v2/airgap-images/docker.io/library/tiny/manifests/{tag}")
}
const QUAY_PATH: &str = "/v2/airgap-images/quay.io/e2e/tiny/manifests/1";
/// Bound for "the agent applied and containerd is healthy again".
const SETTLE: Duration = Duration::from_secs(15);
/// What the reload script injects in legacy mode (emulating an admin / cloud-init edit).
const INJECTED: &str = "config_path = \"/nonexistent/certs.d\"";
/// … and in hosts mode.
const INJECTED_MIRROR: &str = "endpoint = [\"https://injected.invalid\"]";

// ---------------------------------------------------------------------------------------------
// The node: a Containerd (harness) whose process is managed by the reload script.
// ---------------------------------------------------------------------------------------------

/// Paths of the script-managed containerd, all inside the node's temp dir.
struct Node {
    ctd: Containerd,
    script: PathBuf,
    pidfile: PathBuf,
    /// One line per script invocation.
    reload_log: PathBuf,
    /// Present: the next script run injects `config_path` into config.toml (and removes it).
    marker: PathBuf,
    /// Present: the script refuses to start containerd (set by [`PidfileGuard`] on teardown).
    stop_flag: PathBuf,
    /// Present: the next script run starts containerd on [`Node::other_config`] instead of
    /// config.toml (and removes the marker): a unit whose `--config` is not the file regmirror
    /// edits. containerd is healthy but has not loaded what regmirror wrote.
    other_marker: PathBuf,
    /// The admin's original config.toml, kept aside for `other_marker`.
    other_config: PathBuf,
    /// Holds the path of the containerd binary the script starts (a package upgrade rewrites it).
    binary_file: PathBuf,
    /// The Secret manifest the agent watches (in a directory of its own, like a mount).
    secret: PathBuf,
}

impl Node {
    /// Prepares containerd's files from `base`. config.toml and the certs dir move to a
    /// directory of their own (`<dir>/etc/config.toml`, `<dir>/etc/certs.d`), as on a node
    /// (`/etc/containerd`): the agent watches config.toml's directory and the certs dir (or,
    /// while that does not exist, its parent), and the logs written in the temp dir itself
    /// (containerd's, the agent's own) must not poke it on every line.
    fn prepare(release: Release, base: Base) -> Node {
        let mut ctd = Containerd::prepare_on(release, base);
        let d = ctd.dir().to_path_buf();
        std::fs::remove_file(&ctd.config).unwrap();
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::create_dir_all(d.join("run")).unwrap();
        std::fs::create_dir_all(d.join("secret")).unwrap();
        ctd.config = d.join("etc/config.toml");
        ctd.certs_dir = d.join("etc/certs.d");
        std::fs::write(&ctd.config, &ctd.original).unwrap();
        std::fs::write(d.join("other-config.toml"), &ctd.original).unwrap();
        std::fs::write(d.join("containerd.bin"), release.binary().to_str().unwrap()).unwrap();
        let node = Node {
            other_marker: d.join("start-on-other-config"),
            other_config: d.join("other-config.toml"),
            binary_file: d.join("containerd.bin"),
            script: d.join("reload.sh"),
            pidfile: d.join("run/containerd.pid"),
            reload_log: d.join("reload.log"),
            marker: d.join("inject-config-path"),
            stop_flag: d.join("run/stop"),
            secret: d.join("secret/registry-info.yaml"),
            ctd,
        };
        node.write_script();
        node
    }

    fn write_script(&self) {
        let q = |p: &Path| {
            let s = p.to_str().unwrap();
            assert!(!s.contains('\''), "{s}");
            format!("'{s}'")
        };
        let text = format!(
            r#"#!/bin/sh
# Written by tests/daemon_containerd.rs: `systemctl restart containerd` for a containerd started
# by hand. Stops the containerd named by the pidfile, starts a new one detached, records it.
set -u
CONFIG={config}
PIDFILE={pidfile}
LOG={log}
RLOG={rlog}
MARKER={marker}
STOP={stop}
OTHER_MARKER={other_marker}
OTHER_CONFIG={other_config}
CONTAINERD=$(cat {binary_file})
WHO="${{RELOAD_BY:-agent}}"
now() {{ date +%s.%N; }}
T0=$(now)
# alive PID: the process exists and is not a zombie (PID 1 here may reap late or never).
alive() {{
    st=$(awk '/^State:/ {{ print $2 }}' "/proc/$1/status" 2>/dev/null)
    [ -n "$st" ] && [ "$st" != Z ]
}}
old=$(cat "$PIDFILE" 2>/dev/null || true)
injected=0
if [ -e "$MARKER" ]; then
    # An admin / cloud-init edit racing the restart: config_path next to the legacy mirrors.
    rm -f "$MARKER"
    tmp="$(dirname "$CONFIG")/.inject.tmp"
    awk -v hdr='{inject_header}' -v line='{injected}' '
        {{ t = $0; gsub(/^[ \t]+|[ \t]+$/, "", t) }}
        intable && t ~ /^\[/ {{ intable = 0 }}
        intable && t ~ /^config_path[ \t]*=/ {{ next }}
        {{ print }}
        t == hdr {{ print "      " line; intable = 1; done = 1 }}
        END {{ if (!done) {{ print ""; print hdr; print "  " line }} }}
    ' "$CONFIG" > "$tmp" && mv "$tmp" "$CONFIG" || exit 1
    injected=1
fi
if [ -n "$old" ] && alive "$old"; then
    kill -TERM "$old"
    i=0
    while alive "$old"; do
        i=$((i + 1))
        [ "$i" -eq 500 ] && kill -KILL "$old"
        if [ "$i" -gt 1000 ]; then echo "containerd $old did not exit" >&2; exit 1; fi
        sleep 0.02
    done
fi
T1=$(now)
if [ -e "$STOP" ]; then echo "test teardown: not starting containerd" >&2; exit 1; fi
used="$CONFIG"
other=0
if [ -e "$OTHER_MARKER" ]; then rm -f "$OTHER_MARKER"; used="$OTHER_CONFIG"; other=1; fi
rm -f "$PIDFILE"
setsid sh -c 'echo $$ > "$0.new" && mv "$0.new" "$0" && exec "$2" --config "$1" --log-level debug' \
    "$PIDFILE" "$used" "$CONTAINERD" </dev/null >>"$LOG" 2>&1 &
i=0
while [ ! -s "$PIDFILE" ]; do
    i=$((i + 1))
    if [ "$i" -gt 250 ]; then echo "containerd did not write its pidfile" >&2; exit 1; fi
    sleep 0.02
done
new=$(cat "$PIDFILE")
echo "who=$WHO old=${{old:-none}} new=$new injected=$injected other=$other start=$T0 stopped=$T1 end=$(now)" >> "$RLOG"
"#,
            config = q(&self.ctd.config),
            pidfile = q(&self.pidfile),
            log = q(&self.ctd.log),
            rlog = q(&self.reload_log),
            marker = q(&self.marker),
            stop = q(&self.stop_flag),
            other_marker = q(&self.other_marker),
            other_config = q(&self.other_config),
            binary_file = q(&self.binary_file),
            inject_header = self.inject().0,
            injected = self.inject().1,
        );
        std::fs::write(&self.script, text).unwrap();
        std::fs::set_permissions(&self.script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// What the racing edit adds, as (table header, line): the one thing containerd will not
    /// combine with what regmirror wrote. Legacy mode (1.x): `config_path` next to the mirrors;
    /// hosts mode (2.x): a legacy mirror next to `config_path`.
    fn inject(&self) -> (String, &'static str) {
        let plugin = if self.ctd.release.is_2x() && self.ctd.base == Base::Default {
            "io.containerd.cri.v1.images"
        } else {
            "io.containerd.grpc.v1.cri"
        };
        if self.ctd.release.is_2x() {
            (
                format!("[plugins.\"{plugin}\".registry.mirrors.\"injected.invalid\"]"),
                INJECTED_MIRROR,
            )
        } else {
            (format!("[plugins.\"{plugin}\".registry]"), INJECTED)
        }
    }

    /// The mode the agent runs in: legacy on 1.x (as the tests were written), auto on 2.x
    /// (which is hosts mode there).
    fn mode(&self) -> &'static str {
        if self.ctd.release.is_2x() {
            "auto"
        } else {
            "legacy"
        }
    }

    /// A package upgrade: the next (re)start runs `release`'s binary.
    fn install(&mut self, release: Release) {
        std::fs::write(&self.binary_file, release.binary().to_str().unwrap()).unwrap();
        self.ctd.release = release;
    }

    /// Starts the first containerd through the script and waits until CRI is healthy.
    fn start(&self) {
        let started = Instant::now();
        run(Command::new(&self.script).env("RELOAD_BY", "test"));
        let version = self.wait_healthy(support::containerd::START_TIMEOUT);
        eprintln!(
            "containerd {version} pid {} ({:?} base) healthy after {:?}",
            self.pid().unwrap_or(0),
            self.ctd.base,
            started.elapsed()
        );
    }

    fn wait_healthy(&self, timeout: Duration) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(regmirror::cri::wait_healthy(&self.ctd.socket, timeout))
            .unwrap_or_else(|e| {
                panic!(
                    "containerd not healthy: {e}\nconfig:\n{}\nlog:\n{}",
                    self.ctd.config_text(),
                    tail(&self.ctd.log, 30)
                )
            })
    }

    /// The live containerd's PID (from the pidfile).
    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The script's invocations so far.
    fn reloads(&self) -> Vec<Reload> {
        std::fs::read_to_string(&self.reload_log)
            .unwrap_or_default()
            .lines()
            .map(Reload::parse)
            .collect()
    }

    /// Writes the Secret manifest atomically (temp file + rename, like an editor or kubectl).
    /// `regmirror SUBCOMMAND` on this node's files, its containerd socket and its reload script
    /// (`--mode mode`), with the node's containerd release first on PATH.
    fn regmirror_args(&self, cmd: &mut Command, subcommand: &str, mode: &str) {
        cmd.arg(subcommand)
            .arg("--secret-file")
            .arg(&self.secret)
            .arg("--config")
            .arg(&self.ctd.config)
            .arg("--certs-dir")
            .arg(&self.ctd.certs_dir)
            .arg("--state-dir")
            .arg(&self.ctd.state_dir)
            .arg("--containerd-socket")
            .arg(&self.ctd.socket)
            .args(["--mode", mode, "--host-pid", "0"])
            .env("PATH", self.ctd.release.path_env())
            .arg("--reload")
            .arg(format!("command:{}", self.script.display()));
    }

    fn write_secret(&self, s: &Secret) {
        let tmp = self.secret.with_file_name(".registry-info.yaml.tmp");
        std::fs::write(&tmp, s.manifest()).unwrap();
        std::fs::rename(&tmp, &self.secret).unwrap();
    }

    fn state(&self) -> serde_json::Value {
        let p = self.ctd.state_dir.join("state.json");
        let text =
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        serde_json::from_str(&text).unwrap()
    }
}

/// One line of `reload.log`.
#[derive(Debug, Clone)]
struct Reload {
    who: String,
    old: Option<u32>,
    new: u32,
    injected: bool,
    /// Started on the other config file.
    other: bool,
    /// Script start → old containerd gone.
    stop_secs: f64,
    /// Script start → new containerd started (pidfile written).
    total_secs: f64,
}

impl Reload {
    fn parse(line: &str) -> Reload {
        let field = |k: &str| {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("reload.log line without {k}: {line}"))
        };
        let t = |k: &str| field(k).parse::<f64>().unwrap();
        Reload {
            who: field("who").to_string(),
            old: field("old").parse().ok(),
            new: field("new").parse().unwrap(),
            injected: field("injected") == "1",
            other: field("other") == "1",
            stop_secs: t("stopped") - t("start"),
            total_secs: t("end") - t("start"),
        }
    }
}

impl std::fmt::Display for Reload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "by {}: pid {:?} -> {} (stop {:.0} ms, script {:.0} ms{})",
            self.who,
            self.old,
            self.new,
            self.stop_secs * 1000.0,
            self.total_secs * 1000.0,
            if self.injected {
                ", INJECTED config_path"
            } else {
                ""
            }
        )
    }
}

/// Stops the script-managed containerd by the PID in the pidfile when dropped (also on
/// panic). Creates the stop flag first, so a script still running (from an agent killed
/// mid-reload) cannot start another containerd afterwards.
struct PidfileGuard {
    pidfile: PathBuf,
    stop_flag: PathBuf,
}

impl PidfileGuard {
    fn new(node: &Node) -> PidfileGuard {
        PidfileGuard {
            pidfile: node.pidfile.clone(),
            stop_flag: node.stop_flag.clone(),
        }
    }
}

/// True when `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("State:"))
            .is_some_and(|st| !st.trim_start().starts_with('Z'))
    })
}

impl Drop for PidfileGuard {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.stop_flag, "");
        // A few rounds: a script that was past the flag check may still write a new PID.
        for _ in 0..3 {
            let Some(pid) = std::fs::read_to_string(&self.pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            else {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            };
            if alive(pid) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                if poll(Duration::from_secs(10), || (!alive(pid)).then_some(())).is_none() {
                    eprintln!("containerd pid {pid} ignored SIGTERM, killing");
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    poll(Duration::from_secs(5), || (!alive(pid)).then_some(()));
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The agent.
// ---------------------------------------------------------------------------------------------

struct Agent {
    p: support::agent::AgentProcess,
}

impl Agent {
    /// `regmirror run` on `node` with the reload script in the node's mode; waits until
    /// /healthz answers.
    fn start(node: &Node) -> Agent {
        Agent::start_with_mode(node, node.mode())
    }

    fn start_with_mode(node: &Node, mode: &str) -> Agent {
        let make = || {
            let mut cmd = Command::new(support::cli::BIN);
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("REGMIRROR_") {
                    cmd.env_remove(k);
                }
            }
            node.regmirror_args(&mut cmd, "run", mode);
            cmd.args(["--restart-jitter", "0", "--debounce", "200ms"])
                .args(["--health-timeout", "10s", "--resync", "15m"])
                .env("REGMIRROR_LOG", "info,regmirror=debug")
                .env("RUST_BACKTRACE", "1");
            cmd
        };
        let log = node.ctd.dir().join("agent.log");
        Agent {
            p: support::agent::AgentProcess::spawn(make, &log, true),
        }
    }

    fn log(&self) -> String {
        self.p.log()
    }

    fn metrics(&self) -> String {
        self.p.metrics()
    }

    fn restarts(&self) -> f64 {
        self.p.metric("regmirror_containerd_restarts_total")
    }

    fn rollbacks(&self) -> f64 {
        self.p.metric("regmirror_rollbacks_total")
    }

    fn applies(&self, result: &str) -> f64 {
        self.p
            .metric(&format!("regmirror_applies_total{{result=\"{result}\"}}"))
    }

    /// (HTTP status, body) of /readyz.
    fn readyz(&self) -> (u16, String) {
        self.p.readyz()
    }

    /// Waits (≤ `timeout`) until `cond` holds; panics with the agent's log otherwise.
    fn wait_for(&self, what: &str, timeout: Duration, cond: impl FnMut() -> bool) -> Duration {
        self.p.wait_for(what, timeout, cond)
    }

    /// SIGTERM; asserts exit status 0.
    fn stop(mut self) {
        let metrics: Vec<String> = self
            .metrics()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("    {l}"))
            .collect();
        eprintln!("agent: final /metrics:\n{}", metrics.join("\n"));
        let st = self.p.stop();
        assert!(
            st.is_some_and(|s| s.success()),
            "regmirror run did not exit 0 on SIGTERM: {st:?}\n{}",
            self.log()
        );
        eprintln!(
            "agent: stopped with {st:?} after {:.2?}",
            self.p.started.elapsed()
        );
    }
}

/// The agent's log lines that tell the story (writes, reloads, rollbacks, refusals).
fn story(log: &str) -> String {
    const WORDS: &[&str] = &[
        "wrote spec",
        "ran ",
        "rolling back",
        "rolled back",
        "failed the containerd health check",
        "WARN",
        "ERROR",
        "starting",
        "stopped",
    ];
    log.lines()
        .filter(|l| WORDS.iter().any(|w| l.contains(w)))
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// Registries and pulls.
// ---------------------------------------------------------------------------------------------

/// A plain registry holding the tiny image as `docker.io/library/tiny:<tag>` for each tag (and
/// `quay.io/e2e/tiny:1`) under `airgap-images/`.
fn mirror(tags: &[&str]) -> Registry {
    let r = Registry::start(Kind::Plain);
    r.push_tiny(DOCKER_REPO);
    r.push_tiny(QUAY_REPO);
    for tag in tags.iter().filter(|t| **t != "1") {
        run(Command::new("skopeo")
            .args(["copy", "--insecure-policy", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:1", support::image::layout().display()))
            .arg(format!("docker://{}/{DOCKER_REPO}:{tag}", r.host())));
    }
    r
}

/// A Secret mirroring docker.io and quay.io to `reg`.
fn docker_and_quay_to(reg: &Registry) -> Secret {
    let mut c = Secret::new(&reg.host(), &docker_to(reg));
    c.mirror_registries = format!(
        "{},quay.io::http://{}/airgap-images/quay.io",
        docker_to(reg),
        reg.host()
    );
    c
}

fn docker_to(reg: &Registry) -> String {
    format!("docker.io::http://{}/airgap-images/docker.io", reg.host())
}

/// The legacy endpoint regmirror must make containerd load for `reg`.
fn endpoint(reg: &Registry) -> String {
    format!("http://{}/v2/airgap-images/docker.io", reg.host())
}

/// The docker.io endpoints containerd really loaded (CRI Status verbose).
fn effective_docker_endpoints(node: &Node) -> serde_json::Value {
    node.ctd.effective_registry()["mirrors"]["docker.io"]["endpoint"].clone()
}

/// Asserts containerd took regmirror's configuration for `reg`: legacy mode (1.x) the docker.io
/// endpoint; hosts mode (2.x) the config_path (the pulls prove the mirror itself).
fn assert_loaded_for(node: &Node, reg: &Registry) {
    let loaded = node.ctd.loaded();
    if node.ctd.release.is_2x() {
        assert_eq!(
            loaded.config_path,
            node.ctd.certs_dir.to_str().unwrap(),
            "{loaded:?}"
        );
    } else {
        assert_eq!(
            loaded.mirrors.get("docker.io"),
            Some(&vec![endpoint(reg)]),
            "{loaded:?}"
        );
    }
}

containerd_matrix!(
    secret_update_restarts_and_pulls_through_new_mirror,
    bad_config_rolls_back_and_is_not_retried,
    not_loaded_config_rolls_back,
    oneshot_apply_reload_rolls_back,
);

/// Pulls `image` over CRI and asserts it succeeded and that `reg` answered `path` with 200.
fn assert_pull_via(node: &Node, reg: &Registry, image: &str, path: &str) {
    let mark = reg.mark();
    let result = node.ctd.pull(image);
    let served = reg.hits(mark, path).iter().any(|r| r.status == 200);
    if result.is_err() || !served {
        panic!(
            "pull of {image} through mirror {} failed\n  CRI: {result:?}\n  expected {path} \
             answered 200; access log since the pull started:\n{}\n  containerd log:\n{}\n\
             config.toml:\n{}",
            reg.host(),
            reg.log_since(mark),
            node.ctd.pull_log(),
            node.ctd.config_text(),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

/// A one-shot `regmirror apply --reload …` whose restart fails the health check rolls back as
/// the agent does (RELIABILITY.md): exit 2, "rolled back" said, the admin's bytes back in
/// config.toml, containerd healthy on them.
fn oneshot_apply_reload_rolls_back(release: Release) {
    let a = mirror(&["1"]);
    let node = Node::prepare(release, Base::Default);
    let _ctd = PidfileGuard::new(&node);
    node.start();
    node.write_secret(&Secret::new(&a.host(), &docker_to(&a)));
    std::fs::write(&node.marker, "").unwrap();
    let mut cmd = Command::new(support::cli::BIN);
    node.regmirror_args(&mut cmd, "apply", node.mode());
    let out = cmd.args(["--health-timeout", "10s"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("rolled back"), "{err}");
    assert_eq!(
        node.ctd.config_text(),
        node.ctd.original,
        "config.toml must hold the admin's bytes again"
    );
    let reloads = node.reloads();
    assert!(reloads[1].injected && !reloads[2].injected, "{reloads:#?}");
    assert!(node.ctd.status().runtime_ready);
    eprintln!("one-shot apply --reload: {}", err.trim());
}

/// Hosts mode (2.x): the racing edit meets the first apply (see
/// [`bad_config_rolls_back_and_is_not_retried`]).
fn bad_first_apply_rolls_back(release: Release) {
    let a = mirror(&["1"]);
    let node = Node::prepare(release, Base::Default);
    let _ctd = PidfileGuard::new(&node);
    node.start();
    node.write_secret(&Secret::new(&a.host(), &docker_to(&a)));
    std::fs::write(&node.marker, "").unwrap();
    let agent = Agent::start(&node);
    let took = agent.wait_for("the rollback", SETTLE + Duration::from_secs(10), || {
        agent.rollbacks() >= 1.0
    });
    eprintln!("agent: first apply → rollback done in {took:.2?}");
    let (code, why) = agent.wait_for_readyz_settled();
    let reloads = node.reloads();
    assert_eq!(
        reloads.len(),
        3,
        "test start, the failed restart, the rollback's: {reloads:#?}"
    );
    assert!(reloads[1].injected && !reloads[2].injected, "{reloads:#?}");
    let log = agent.log();
    assert!(
        log.contains("UNIMPLEMENTED") && log.contains("rolling back spec"),
        "agent log does not show the UNIMPLEMENTED health check and the rollback:\n{}",
        story(&log)
    );
    assert_eq!(code, 503, "/readyz after a rollback: {why}");
    assert!(
        why.contains("rolled back"),
        "/readyz does not say why: {why}"
    );
    assert_eq!(
        node.ctd.config_text(),
        node.ctd.original,
        "config.toml must hold the admin's bytes again"
    );
    assert!(node.ctd.status().runtime_ready);
    let restarts = agent.restarts();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(agent.restarts(), restarts, "the bad spec was retried");
    assert_eq!(node.reloads().len(), 3, "{:#?}", node.reloads());

    let c = docker_and_quay_to(&a);
    node.write_secret(&c);
    let took = agent.wait_for("the new spec to apply", SETTLE, || {
        agent.applies("changed") >= 1.0 && agent.readyz().0 == 200
    });
    eprintln!("agent: new Secret → applied and ready in {took:.2?}");
    assert_eq!(node.reloads().len(), 4, "{:#?}", node.reloads());
    assert_loaded_for(&node, &a);
    assert_pull_via(&node, &a, "docker.io/library/tiny:1", &docker_path("1"));
    assert_pull_via(&node, &a, "quay.io/e2e/tiny:1", QUAY_PATH);
    agent.stop();
}

/// containerd comes back healthy but on another config file (a unit whose `--config` is not the
/// file regmirror edits): the load verification (CRI Status on 1.x, the canary pull on 2.x)
/// catches it, the agent rolls back, /readyz says why, and the spec is held; a changed Secret
/// then applies, verifies and pulls.
fn not_loaded_config_rolls_back(release: Release) {
    let a = mirror(&["1"]);
    let node = Node::prepare(release, Base::Debian);
    let _ctd = PidfileGuard::new(&node);
    node.start();
    node.write_secret(&Secret::new(&a.host(), &docker_to(&a)));
    std::fs::write(&node.other_marker, "").unwrap();
    let agent = Agent::start(&node);
    let took = agent.wait_for("the rollback", SETTLE + Duration::from_secs(10), || {
        agent.rollbacks() >= 1.0
    });
    eprintln!("agent: apply on a containerd that ignores it → rolled back in {took:.2?}");
    let (code, why) = agent.wait_for_readyz_settled();
    let reloads = node.reloads();
    assert_eq!(reloads.len(), 3, "{reloads:#?}");
    assert!(reloads[1].other && !reloads[2].other, "{reloads:#?}");
    let log = agent.log();
    assert!(
        log.contains("did not load the registry configuration"),
        "the agent did not see that containerd ignored the change:\n{}",
        story(&log)
    );
    assert_eq!(code, 503, "{why}");
    assert!(
        why.contains("did not load"),
        "/readyz does not say why: {why}"
    );
    assert_eq!(node.ctd.config_text(), node.ctd.original);
    assert_eq!(agent.applies("rolled_back"), 1.0);

    let c = docker_and_quay_to(&a);
    node.write_secret(&c);
    agent.wait_for("the new spec to apply", SETTLE, || {
        agent.applies("changed") >= 1.0 && agent.readyz().0 == 200
    });
    assert_loaded_for(&node, &a);
    assert_pull_via(&node, &a, "docker.io/library/tiny:1", &docker_path("1"));
    assert_pull_via(&node, &a, "quay.io/e2e/tiny:1", QUAY_PATH);
    agent.stop();
}

/// A node upgraded from containerd 1.6 to 2.1 under the agent (the package restarts
/// containerd itself): the agent sees the new socket, decides for 2.1.9, moves its legacy entries
/// to hosts mode in one apply and one restart, verifies the load, and pulls go through the
/// mirror; `regmirror revert` afterwards gives the admin's file back byte for byte.
#[test]
fn upgrade_1_6_to_2_1_under_the_agent() {
    e2e!("upgrade_1_6_to_2_1_under_the_agent");
    if let Some(p) = Release::V2_1.problem()
        && !support::prerequisites_verdict("upgrade", "containerd release", &[p])
    {
        return;
    }
    let a = mirror(&["1"]);
    let mut node = Node::prepare(Release::V1_6, Base::Debian);
    let _ctd = PidfileGuard::new(&node);
    node.start();
    node.write_secret(&Secret::new(&a.host(), &docker_to(&a)));
    let agent = Agent::start_with_mode(&node, "auto");
    agent.wait_for("the first apply", SETTLE, || {
        agent.applies("changed") >= 1.0 && agent.readyz().0 == 200
    });
    assert_loaded_for(&node, &a);
    assert_pull_via(&node, &a, "docker.io/library/tiny:1", &docker_path("1"));
    assert_eq!(agent.restarts(), 1.0);

    // The package upgrade: new binary, restarted by the package, not by the agent.
    node.install(Release::V2_1);
    let upgraded = Instant::now();
    run(Command::new(&node.script).env("RELOAD_BY", "package"));
    let took = agent.wait_for("the move to hosts mode", SETTLE * 2, || {
        agent.applies("changed") >= 2.0 && agent.readyz().0 == 200
    });
    eprintln!(
        "agent: containerd upgraded 1.6 → 2.1 → hosts mode applied and verified in {took:.2?} ({:.2?} since the upgrade)",
        upgraded.elapsed()
    );
    let log = agent.log();
    assert!(
        log.contains("deciding for containerd 2.1.9"),
        "{}",
        story(&log)
    );
    assert!(
        log.contains("canary pull used the hosts directory"),
        "{}",
        story(&log)
    );
    assert_eq!(
        agent.restarts(),
        2.0,
        "one restart for the move: {}",
        story(&log)
    );
    let reloads = node.reloads();
    assert_eq!(
        reloads.len(),
        4,
        "test, agent, package, agent: {reloads:#?}"
    );
    let text = node.ctd.config_text();
    assert!(
        text.contains("config_path") && !text.contains("mirrors"),
        "{text}"
    );
    assert_loaded_for(&node, &a);
    assert_pull_via(&node, &a, "docker.io/library/tiny:1", &docker_path("1"));
    agent.stop();
    let r = support::cli::regmirror(&node.ctd, "revert", &[]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(
        node.ctd.config_text(),
        node.ctd.original,
        "revert is not byte-exact"
    );
}

/// Secret A → apply + restart (+ load verification) → pull via A; Secret edited to B → exactly
/// one more restart in legacy mode (1.x), none in hosts mode (2.x: hosts.toml is read at every
/// pull) → pulls via B (a tag only B has, and the old tag now resolved at B, not A).
fn secret_update_restarts_and_pulls_through_new_mirror(release: Release) {
    let a = mirror(&["1"]);
    let b = mirror(&["1", "2"]);
    let legacy = !release.is_2x();
    let edit_restarts = if legacy { 1 } else { 0 };
    // Dropped in reverse order: agent, then containerd (by pidfile), then the node's files.
    let node = Node::prepare(release, Base::Debian);
    let _ctd = PidfileGuard::new(&node);
    node.start();
    node.write_secret(&Secret::new(&a.host(), &docker_to(&a)));
    let first_pid = node.pid().unwrap();

    let agent = Agent::start(&node);
    let took = agent.wait_for("the first apply and a healthy restart", SETTLE, || {
        agent.applies("changed") >= 1.0 && agent.readyz().0 == 200
    });
    eprintln!("agent: first apply + restart + healthy {took:.2?} after start");
    assert_eq!(agent.restarts(), 1.0, "{}", story(&agent.log()));
    // After the apply the agent probes the mirror as `regmirror check` does.
    let up = format!("regmirror_mirror_up{{host=\"{}\"", a.host());
    agent.wait_for("the mirror probe", Duration::from_secs(15), || {
        agent
            .metrics()
            .lines()
            .any(|l| l.starts_with(&up) && l.ends_with(" 1"))
    });
    let reloads = node.reloads();
    assert_eq!(
        reloads.len(),
        2,
        "test start + one agent restart: {reloads:#?}"
    );
    assert_eq!(reloads[1].who, "agent");
    assert_eq!(reloads[1].old, Some(first_pid));
    assert_ne!(node.pid(), Some(first_pid), "containerd was not restarted");
    assert_loaded_for(&node, &a);
    let verified = if legacy {
        "CRI Status: 1 mirror(s) loaded"
    } else {
        "canary pull used the hosts directory"
    };
    assert!(
        agent.log().contains(verified),
        "the agent did not verify what containerd loaded ({verified:?}):\n{}",
        story(&agent.log())
    );
    assert_pull_via(&node, &a, "docker.io/library/tiny:1", &docker_path("1"));
    let hash_a = node.state()["spec_hash"].as_str().unwrap().to_string();

    // Edit the Secret: mirror B.
    let pid_a = node.pid().unwrap();
    let a_mark = a.mark();
    let changed = Instant::now();
    node.write_secret(&Secret::new(&b.host(), &docker_to(&b)));
    let mut pids = vec![pid_a];
    let took = agent.wait_for("the update's apply and restart", SETTLE, || {
        if let Some(p) = node.pid()
            && pids.last() != Some(&p)
        {
            pids.push(p);
        }
        agent.applies("changed") >= 2.0 && agent.readyz().0 == 200
    });
    eprintln!("agent: Secret edit → applied, restarted and healthy in {took:.2?}");
    assert_eq!(
        agent.restarts(),
        1.0 + edit_restarts as f64,
        "{}",
        story(&agent.log())
    );
    let reloads = node.reloads();
    assert_eq!(
        reloads.len(),
        2 + edit_restarts,
        "restarts for the update ({edit_restarts} expected): {reloads:#?}"
    );
    if legacy {
        assert_eq!(reloads[2].old, Some(pid_a));
        assert_eq!(
            pids,
            vec![pid_a, reloads[2].new],
            "containerd's PID must change exactly once"
        );
    } else {
        assert_eq!(pids, vec![pid_a], "hosts mode must not restart containerd");
    }
    assert_loaded_for(&node, &b);
    let hash_b = node.state()["spec_hash"].as_str().unwrap().to_string();
    assert_ne!(hash_a, hash_b);
    // state.json keeps the keyed fingerprint; the metric shows the public spec hash, the one
    // `regmirror show` prints for the Secret.
    let shown = std::process::Command::new(support::cli::BIN)
        .args(["show", "--secret-file"])
        .arg(&node.secret)
        .env("REGMIRROR_CONTAINERD_VERSION", "unknown")
        .output()
        .unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let public_b = shown["spec_hash"].as_str().unwrap().to_string();
    assert!(
        agent
            .metrics()
            .contains(&format!("regmirror_spec_info{{hash=\"{public_b}\"}} 1")),
        "{}",
        agent.metrics()
    );

    assert_pull_via(&node, &b, "docker.io/library/tiny:2", &docker_path("2"));
    assert_pull_via(&node, &b, "docker.io/library/tiny:1", &docker_path("1"));
    assert!(
        a.requests_since(a_mark).is_empty(),
        "the old mirror was asked after the update:\n{}",
        a.log_since(a_mark)
    );
    // Nothing more happened meanwhile (the agent's own write must not cause another restart).
    assert_eq!(
        node.reloads().len(),
        2 + edit_restarts,
        "{:#?}",
        node.reloads()
    );
    assert_eq!(agent.restarts(), 1.0 + edit_restarts as f64);
    assert_eq!(agent.rollbacks(), 0.0);
    eprintln!(
        "restarts seen by the script:\n{}\nSecret edit → pulls done: {:.2?}\nagent log:\n{}",
        node.reloads()
            .iter()
            .map(|r| format!("    {r}"))
            .collect::<Vec<_>>()
            .join("\n"),
        changed.elapsed(),
        story(&agent.log())
    );
    agent.stop();
}

/// A config_path injected next to the legacy mirrors (1.x; on 2.x a legacy mirror next to
/// config_path) during the restart kills containerd's CRI plugin: the agent rolls back to the
/// bytes it had before, restarts, is healthy on the old configuration, remembers the spec as bad
/// and does not retry it; a new spec applies normally. In hosts mode (2.x) a Secret edit needs
/// no restart, so the racing edit meets the first apply there (the old configuration is the
/// admin's file), and the new spec is the same mirror with quay.io added.
fn bad_config_rolls_back_and_is_not_retried(release: Release) {
    if release.is_2x() {
        return bad_first_apply_rolls_back(release);
    }
    let a = mirror(&["1"]);
    let b = mirror(&["1"]);
    let node = Node::prepare(release, Base::Default);
    let _ctd = PidfileGuard::new(&node);
    node.start();
    node.write_secret(&Secret::new(&a.host(), &docker_to(&a)));

    let agent = Agent::start(&node);
    agent.wait_for("the first apply and a healthy restart", SETTLE, || {
        agent.applies("changed") >= 1.0 && agent.readyz().0 == 200
    });
    assert_eq!(agent.restarts(), 1.0);
    assert_pull_via(&node, &a, "docker.io/library/tiny:1", &docker_path("1"));
    let good_config = std::fs::read(&node.ctd.config).unwrap();
    let hash_a = node.state()["spec_hash"].as_str().unwrap().to_string();
    let reloads_before = node.reloads().len();

    // The racing edit is armed, then the Secret changes (mirror B).
    std::fs::write(&node.marker, "").unwrap();
    node.write_secret(&Secret::new(&b.host(), &docker_to(&b)));
    let rollback_took = agent.wait_for("the rollback", SETTLE + Duration::from_secs(10), || {
        agent.rollbacks() >= 1.0
    });
    eprintln!("agent: Secret edit → rollback done in {rollback_took:.2?}");
    let (code, why) = agent.wait_for_readyz_settled();
    eprintln!("/readyz after the rollback: {code} {why:?}");

    // What happened, in order: the injected restart, then the rollback's restart.
    let reloads = node.reloads();
    let new: Vec<&Reload> = reloads[reloads_before..].iter().collect();
    eprintln!(
        "restarts seen by the script:\n{}",
        reloads
            .iter()
            .map(|r| format!("    {r}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        new.len(),
        2,
        "the failed restart and the rollback's: {new:#?}"
    );
    assert!(new[0].injected && !new[1].injected, "{new:#?}");
    assert!(!node.marker.exists(), "the marker was not consumed");
    assert!(
        node.ctd
            .log_grep(&["cannot be set when `config_path` is provided"], 1)
            .contains("mirrors"),
        "containerd's log does not show the CRI plugin failing:\n{}",
        node.ctd.log_grep(&["cri", "level=error"], 10)
    );
    let log = agent.log();
    assert!(
        log.contains("UNIMPLEMENTED") && log.contains("rolling back spec"),
        "agent log does not show the UNIMPLEMENTED health check and the rollback:\n{}",
        story(&log)
    );

    // The outcome.
    assert_eq!(agent.rollbacks(), 1.0);
    assert_eq!(agent.applies("rolled_back"), 1.0);
    assert_eq!(code, 503, "/readyz after a rollback: {why}");
    assert!(
        why.contains("rolled back") || why.contains("failed the containerd health check"),
        "/readyz does not say why: {why}"
    );
    let st = node.ctd.status();
    assert!(st.runtime_ready, "{st:?}");
    assert_eq!(
        effective_docker_endpoints(&node),
        serde_json::json!([endpoint(&a)]),
        "containerd must run on the old mirror"
    );
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(&node.ctd.config).unwrap()),
        String::from_utf8_lossy(&good_config),
        "config.toml must hold the pre-change bytes again"
    );
    let state = node.state();
    let bad = state["bad_spec_hash"]
        .as_str()
        .unwrap_or_else(|| panic!("no bad_spec_hash: {state:#}"));
    assert_ne!(bad, hash_a);
    assert_eq!(
        state["spec_hash"].as_str(),
        Some(hash_a.as_str()),
        "{state:#}"
    );
    // state.json keeps keyed fingerprints (PASSWORD included); the log names the public
    // spec hash (the one `regmirror show` prints), so the two are compared by their pairing.
    assert!(
        log.contains("rolling back spec") && bad != state["spec_hash"].as_str().unwrap_or(""),
        "bad_spec_hash {bad} is not the spec that was rolled back:\n{}",
        story(&log)
    );
    let b_mark = b.mark();
    assert_pull_via(&node, &a, "docker.io/library/tiny:1", &docker_path("1"));
    assert!(
        b.requests_since(b_mark).is_empty(),
        "{}",
        b.log_since(b_mark)
    );

    // No retry: the bad spec stays on hold while the Secret is unchanged (and the agent does
    // not spin on it either: at most a look or two, from the files it just wrote).
    let restarts = agent.restarts();
    let pid = node.pid();
    let on_hold = |log: &str| {
        log.matches("failed the containerd health check before")
            .count()
    };
    let holds = on_hold(&agent.log());
    std::thread::sleep(Duration::from_secs(3));
    let extra = on_hold(&agent.log()) - holds;
    assert!(
        extra <= 2,
        "the agent re-examined the bad spec {extra} times in 3 s:\n{}",
        story(&agent.log())
    );
    assert_eq!(node.reloads().len(), reloads.len(), "{:#?}", node.reloads());
    assert_eq!(node.pid(), pid);
    assert_eq!(agent.restarts(), restarts);
    assert_eq!(agent.rollbacks(), 1.0);
    assert_eq!(agent.readyz().0, 503);
    assert_eq!(std::fs::read(&node.ctd.config).unwrap(), good_config);
    eprintln!(
        "counters after the rollback: restarts_total {restarts}, rollbacks_total 1 \
         (script ran {} times for it)",
        new.len()
    );

    // A new spec (B for docker.io and quay.io) is applied normally: the marker is consumed.
    let c = docker_and_quay_to(&b);
    node.write_secret(&c);
    let took = agent.wait_for("the new spec to apply", SETTLE, || {
        agent.applies("changed") >= 2.0 && agent.readyz().0 == 200
    });
    eprintln!("agent: new Secret → applied and ready in {took:.2?}");
    assert_eq!(agent.restarts(), restarts + 1.0, "{}", story(&agent.log()));
    assert_eq!(agent.rollbacks(), 1.0);
    assert_eq!(
        node.reloads().len(),
        reloads.len() + 1,
        "{:#?}",
        node.reloads()
    );
    assert_eq!(
        effective_docker_endpoints(&node),
        serde_json::json!([endpoint(&b)])
    );
    assert_pull_via(&node, &b, "docker.io/library/tiny:1", &docker_path("1"));
    assert_pull_via(&node, &b, "quay.io/e2e/tiny:1", QUAY_PATH);
    let state = node.state();
    assert_ne!(state["spec_hash"].as_str(), Some(bad));
    assert_ne!(state["spec_hash"].as_str(), Some(hash_a.as_str()));
    eprintln!(
        "Secret edit → rolled back and healthy {rollback_took:.2?}; next edit → applied and \
         ready {took:.2?}\nagent log:\n{}",
        story(&agent.log())
    );
    agent.stop();
}

impl Agent {
    /// /readyz once the agent has looked again after the rollback (its own write of config.toml
    /// and the injected edit poke the drift watcher): waits for the answer to stay the same
    /// for a second, at most 5 s.
    fn wait_for_readyz_settled(&self) -> (u16, String) {
        let mut last = self.readyz();
        let mut since = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && since.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.readyz();
            if now != last {
                eprintln!("/readyz changed: {last:?} → {now:?}");
                last = now;
                since = Instant::now();
            }
        }
        last
    }
}
