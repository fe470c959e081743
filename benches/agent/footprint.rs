//! `footprint`: `regmirror run` idle with an open watch: RSS, CPU time, wake-ups, binary size.

use super::*;

/// CPU ticks (utime+stime of the whole process, /proc/PID/stat, which keeps the time of threads
/// that have exited), and per live thread (/proc/PID/task/TID): on-CPU nanoseconds (schedstat)
/// and context switches (status).
#[derive(Debug, Clone, Default)]
pub(crate) struct Usage {
    pub(crate) ticks: u64,
    /// TID → (run_ns, voluntary, involuntary).
    pub(crate) tasks: BTreeMap<u32, (u64, u64, u64)>,
}

pub(crate) fn usage(pid: u32) -> Usage {
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
pub(crate) struct Window {
    pub(crate) first: BTreeMap<u32, (u64, u64, u64)>,
    pub(crate) last: BTreeMap<u32, (u64, u64, u64)>,
    pub(crate) threads_max: usize,
}

impl Window {
    pub(crate) fn start(u: &Usage) -> Window {
        Window {
            first: u.tasks.clone(),
            last: u.tasks.clone(),
            threads_max: u.tasks.len(),
        }
    }

    pub(crate) fn sample(&mut self, u: &Usage) {
        self.threads_max = self.threads_max.max(u.tasks.len());
        for (tid, v) in &u.tasks {
            self.first.entry(*tid).or_insert((0, 0, 0));
            self.last.insert(*tid, *v);
        }
    }

    /// Each thread seen: (tid, (run_ns, voluntary, involuntary) over the window).
    fn deltas(&self) -> impl Iterator<Item = (u32, (u64, u64, u64))> + '_ {
        self.last.iter().map(|(tid, l)| {
            let f = self.first.get(tid).copied().unwrap_or((0, 0, 0));
            let d = (
                l.0.saturating_sub(f.0),
                l.1.saturating_sub(f.1),
                l.2.saturating_sub(f.2),
            );
            (*tid, d)
        })
    }

    /// The threads that woke in the window: (tid, voluntary + involuntary switches).
    pub(crate) fn woken(&self) -> Vec<(u32, u64)> {
        self.deltas()
            .map(|(tid, d)| (tid, d.1 + d.2))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// (run_ns, voluntary, involuntary) over the window, summed over every thread seen.
    pub(crate) fn totals(&self) -> (u64, u64, u64) {
        self.deltas()
            .fold((0, 0, 0), |a, (_, d)| (a.0 + d.0, a.1 + d.1, a.2 + d.2))
    }
}

pub(crate) fn clk_tck() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// `source`: `kube` (a watch on the fake API server) or `file` (`--secret-file`, the same
/// Secret as a manifest). No systemd watchdog either way (NOTIFY_SOCKET/WATCHDOG_USEC unset).
pub(crate) fn footprint(bin: &Path, secs: u64, source: &str) {
    let size = fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    let api = Api::start();
    api.server
        .create_secret(NS, NAME, common::secret_strings(&rev_list(0, 3)));
    let manifest = common::secret_yaml(&rev_list(0, 3));
    let src = match source {
        "file" => Source::File(&manifest),
        "kube" => Source::Kube(&api),
        other => panic!("--source {other}: kube or file"),
    };
    let mut agent = Agent::start_from(bin, src, common::DEFAULT_CONFIG, None);
    let mut seen = BTreeSet::new();
    let m0 = rev_marker(0);
    agent.first_apply(&m0, &mut seen);
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
    let woken: Vec<String> = window
        .woken()
        .iter()
        .map(|(tid, n)| {
            let comm = fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .map(|c| c.trim().to_string())
                .unwrap_or_else(|_| "exited".into());
            format!("{tid} ({comm}): {n}")
        })
        .collect();
    agent.stop();
    let tck = clk_tck();
    let (run_ns, vol, invol) = window.totals();
    let ticks = u1.ticks.saturating_sub(u0.ticks);
    if source == "file" {
        println!(
            "footprint: `regmirror run --secret-file` idle {el:.0} s (file source, Secret with 3 mirrors applied, no systemd watchdog; {} API requests, as expected)",
            req1
        );
    } else {
        println!(
            "footprint: `regmirror run` idle {el:.0} s with an open watch (Secret with 3 mirrors applied, no systemd watchdog; {open_watches} watch request(s) made so far; open watch streams at start/end of the window: {open0}/{open1})"
        );
    }
    if !woken.is_empty() {
        println!("  threads that woke in the window: {}", woken.join(", "));
    }
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
        "  idle context switches per minute, summed over threads ({source} source): {:.1}/min (goal 0)",
        (vol + invol) as f64 / el * 60.0
    );
    println!(
        "  binary {}: {size} bytes ({:.1} MiB)",
        bin.display(),
        size as f64 / 1048576.0
    );
}
