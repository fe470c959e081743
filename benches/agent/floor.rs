//! `floor`, `agent-vs-apply`: issue 13's comparisons. regmirror against the least a
//! format-preserving edit costs with toml_edit (the yardstick, `benches/yardstick.rs`: one
//! parse, edit, print and atomic write), against tomlkit, and the agent against a one-shot
//! `apply`.
//! Whole processes, interleaved (the order rotates every round), medians.

use super::*;

/// Issue 13's goals.
const GOAL_APPLY: f64 = 2.0;
const GOAL_DIFF: f64 = 1.5;
const GOAL_TOMLKIT: f64 = 40.0;
const GOAL_BPB: f64 = 30.0;
const GOAL_AGENT: f64 = 1.2;

struct Case {
    name: &'static str,
    config: &'static str,
    /// Also time the tomlkit script (3-4 s a run on the 1 MiB file: only where the goal is).
    tomlkit: bool,
}

const CASES: [Case; 2] = [
    Case {
        name: "165 KB, 1,000 admin mirrors",
        config: "config-admin-1000.toml",
        tomlkit: true,
    },
    Case {
        name: "1 MiB",
        config: "config-1mib.toml",
        tomlkit: false,
    },
];

#[derive(Clone, Copy, PartialEq)]
enum Step {
    Apply,
    Diff,
    Yard,
    Tomlkit,
}

fn ratio_line(what: &str, a: &[f64], b: &[f64], goal: &str) -> f64 {
    let r = common::median(a) / common::median(b);
    let pair: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    println!(
        "    {what:<28} {r:>6.2}x   (median of the per-round ratios {:.2}x, min {:.2}x, max {:.2}x)   goal {goal}",
        common::median(&pair),
        common::percentile(&pair, 0.0),
        common::percentile(&pair, 100.0),
    );
    r
}

fn yard_cmd(yardstick: &Path, config: &Path, mirrors: &Path) -> Command {
    let mut c = Command::new(yardstick);
    c.arg(config)
        .arg(mirrors)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Bytes of `a` that differ from `b` (0: identical), as a short description.
fn same_bytes(a: &Path, b: &Path) -> String {
    match (fs::read(a), fs::read(b)) {
        (Ok(x), Ok(y)) if x == y => format!("identical ({} bytes)", x.len()),
        (Ok(x), Ok(y)) => {
            let first = x
                .iter()
                .zip(&y)
                .position(|(p, q)| p != q)
                .unwrap_or(x.len().min(y.len()));
            format!(
                "DIFFER ({} vs {} bytes, first difference at byte {first})",
                x.len(),
                y.len()
            )
        }
        _ => "not compared (missing output)".into(),
    }
}

pub(crate) fn floor(
    bin: &Path,
    dir: &Path,
    yardstick: &Path,
    rounds: usize,
    rss_repeat: usize,
    python: &str,
    scripts: &Path,
) {
    let secret = dir.join("secret-seed.yaml");
    let mirrors = dir.join("mirrors-seed.txt");
    let n_mirrors = fs::read_to_string(&mirrors)
        .expect("run `fixtures` first")
        .split(',')
        .filter(|e| !e.trim().is_empty())
        .count();
    println!(
        "floor: whole processes, {rounds} interleaved rounds (order rotates), medians; Secret secret-seed.yaml ({n_mirrors} mirrors, legacy mode on containerd {}); fresh copy of config.toml for every run",
        std::env::var("REGMIRROR_CONTAINERD_VERSION")
            .unwrap_or_else(|_| "(REGMIRROR_CONTAINERD_VERSION unset!)".into())
    );
    println!(
        "  yardstick = one toml_edit parse + the same mirror tables + one print + one atomic write (benches/yardstick.rs)"
    );
    for case in &CASES {
        let original = dir.join(case.config);
        let len = fs::metadata(&original).expect("fixture").len();
        let mut steps = vec![Step::Apply, Step::Diff, Step::Yard];
        if case.tomlkit {
            steps.push(Step::Tomlkit);
        }
        let mut t: BTreeMap<u8, Vec<f64>> = BTreeMap::new();
        let py_out = dir.join("work-floor-py/config.toml");
        fs::create_dir_all(py_out.parent().expect("parent")).expect("mkdir");
        for round in 0..rounds {
            for k in 0..steps.len() {
                let step = steps[(round + k) % steps.len()];
                let secs = match step {
                    Step::Apply => {
                        let s = Scratch::new(&dir.join("work-floor-apply"), &original);
                        run_timed(s.cli(bin, "apply", &secret), &[0])
                    }
                    Step::Diff => {
                        let s = Scratch::new(&dir.join("work-floor-diff"), &original);
                        run_timed(s.cli(bin, "diff", &secret), &[1])
                    }
                    Step::Yard => {
                        let s = Scratch::new(&dir.join("work-floor-yard"), &original);
                        run_timed(yard_cmd(yardstick, &s.config, &mirrors), &[0])
                    }
                    Step::Tomlkit => {
                        let mut c = Command::new(python);
                        c.arg(scripts.join("tomlkit_merge.py"))
                            .arg(&original)
                            .arg(&mirrors)
                            .arg(&py_out)
                            .stdout(Stdio::null())
                            .stderr(Stdio::null());
                        run_timed(c, &[0])
                    }
                };
                t.entry(step as u8).or_default().push(secs);
            }
        }
        let get = |s: Step| t.get(&(s as u8)).cloned().unwrap_or_default();
        let (apply, diff, yard) = (get(Step::Apply), get(Step::Diff), get(Step::Yard));
        println!("  {} ({} bytes, {}):", case.name, len, case.config);
        println!(
            "    medians: regmirror apply {}   regmirror diff {}   yardstick {}{}",
            ms(common::median(&apply)),
            ms(common::median(&diff)),
            ms(common::median(&yard)),
            if case.tomlkit {
                format!(
                    "   python3 tomlkit_merge.py {}",
                    ms(common::median(&get(Step::Tomlkit)))
                )
            } else {
                String::new()
            }
        );
        ratio_line(
            "apply / yardstick",
            &apply,
            &yard,
            &format!("<= {GOAL_APPLY}x"),
        );
        ratio_line(
            "diff / yardstick",
            &diff,
            &yard,
            &format!("<= {GOAL_DIFF}x"),
        );
        if case.tomlkit {
            ratio_line(
                "tomlkit / apply (x faster)",
                &get(Step::Tomlkit),
                &apply,
                &format!(">= {GOAL_TOMLKIT}x"),
            );
        }
        println!(
            "    yardstick output vs regmirror apply output: {}",
            same_bytes(
                &dir.join("work-floor-yard/config.toml"),
                &dir.join("work-floor-apply/config.toml")
            )
        );
    }

    if !Path::new("/usr/bin/time").exists() {
        println!("  peak RSS: /usr/bin/time (GNU time) is not installed; skipped");
        return;
    }
    println!(
        "  peak RSS (GNU time %M, median of {rss_repeat}) per byte of config.toml, goal <= {GOAL_BPB} B/B for apply:"
    );
    let mut base = Command::new(bin);
    base.arg("--version");
    let baseline = median_kib(
        &(0..rss_repeat)
            .filter_map(|_| gnu_time(&base, &[0]).map(|x| x.0))
            .collect::<Vec<_>>(),
    );
    for case in CASES.iter().rev() {
        let original = dir.join(case.config);
        let len = fs::metadata(&original).expect("fixture").len() as f64;
        let (mut a, mut y) = (Vec::new(), Vec::new());
        for _ in 0..rss_repeat {
            let s = Scratch::new(&dir.join("work-floor-rss"), &original);
            if let Some((r, _)) = gnu_time(&s.cli(bin, "apply", &secret), &[0]) {
                a.push(r);
            }
            let s = Scratch::new(&dir.join("work-floor-rss"), &original);
            if let Some((r, _)) = gnu_time(&yard_cmd(yardstick, &s.config, &mirrors), &[0]) {
                y.push(r);
            }
        }
        let (a, y) = (median_kib(&a), median_kib(&y));
        let bpb = |kib: u64| kib as f64 * 1024.0 / len;
        println!(
            "    {:<28} regmirror apply {a} KiB = {:.1} B/B   yardstick {y} KiB = {:.1} B/B   apply/yardstick {:.2}x   (`regmirror --version`: {baseline} KiB; apply above it: {:.1} B/B)",
            case.name,
            bpb(a),
            bpb(y),
            a as f64 / y as f64,
            bpb(a.saturating_sub(baseline)),
        );
    }
}

fn median_kib(xs: &[u64]) -> u64 {
    let mut v = xs.to_vec();
    v.sort_unstable();
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0)
}

/// The agent with `--debounce 0s` against a one-shot `regmirror apply` of the same change,
/// pair by pair (the order alternates). The one-shot side keeps its own copy of the files,
/// taken through the same Secret revisions (0, 1, 2, …) as the agent's, so every timed apply
/// makes exactly the change the agent makes next, from the same bytes, with its own state.
///
/// `source`: `kube` (the update is stored in the fake API server, the agent sees it on its
/// watch) or `file` (the agent runs with `--secret-file`; the update is an atomic rename of a
/// new manifest over that file).
pub(crate) fn agent_vs_apply(
    bin: &Path,
    updates: usize,
    mirrors: usize,
    config: &str,
    debounce: &str,
    source: &str,
) {
    let api = Api::start();
    api.server
        .create_secret(NS, NAME, common::secret_strings(&rev_list(0, mirrors)));
    let manifest0 = common::secret_yaml(&rev_list(0, mirrors));
    let src = match source {
        "file" => Source::File(&manifest0),
        "kube" => Source::Kube(&api),
        other => panic!("--source {other}: kube or file"),
    };
    let config_text = config_for(config);
    let mut agent = Agent::start_from(bin, src, &config_text, Some(debounce));
    let root = agent
        .config
        .parent()
        .and_then(Path::parent)
        .expect("agent dir")
        .to_path_buf();
    let agent_secret = secret_path(&root);
    let mut seen = BTreeSet::new();
    agent.first_apply(&rev_marker(0), &mut seen);
    let mut changed = agent.changed_at_least(1);

    // The one-shot side: the same config.toml, brought to revision 0 by an untimed apply.
    let work = tempfile::tempdir().expect("tempdir");
    let original = work.path().join("config.toml.orig");
    fs::write(&original, &config_text).expect("write config");
    let s = Scratch::new(&work.path().join("oneshot"), &original);
    let secret = work.path().join("secret.yaml");
    fs::write(&secret, &manifest0).expect("write secret");
    run_timed(s.cli(bin, "apply", &secret), &[0]);

    let (mut lat, mut one) = (Vec::new(), Vec::new());
    let mut timeouts = 0;
    for rev in 1..=updates {
        // Let the agent settle (the events of its own write) before the next change.
        std::thread::sleep(Duration::from_millis(200));
        let list = rev_list(rev, mirrors);
        let manifest = common::secret_yaml(&list);
        fs::write(&secret, &manifest).expect("write secret");
        let marker = rev_marker(rev);
        if rev % 2 == 1 {
            one.push(run_timed(s.cli(bin, "apply", &secret), &[0]));
        }
        let tmp = agent_secret.with_file_name(".secret.yaml.new");
        if source == "file" {
            fs::write(&tmp, &manifest).expect("write secret");
        }
        let t0 = Instant::now();
        if source == "file" {
            fs::rename(&tmp, &agent_secret).expect("rename secret");
        } else {
            api.server
                .update_secret(NS, NAME, common::secret_strings(&list));
        }
        match agent.wait_for(|s| s.contains(&marker), Duration::from_secs(10), &mut seen) {
            Some(t1) => lat.push((t1 - t0).as_secs_f64()),
            None => timeouts += 1,
        }
        changed = agent.changed_at_least(changed + 1);
        if rev % 2 == 0 {
            one.push(run_timed(s.cli(bin, "apply", &secret), &[0]));
        }
        assert!(
            fs::read_to_string(&s.config).is_ok_and(|t| t.contains(&marker)),
            "the one-shot apply did not write revision {rev}"
        );
    }
    let same = same_bytes(&s.config, &agent.config);
    let len = fs::metadata(&agent.config).map(|m| m.len()).unwrap_or(0);
    agent.stop();
    println!(
        "agent vs one-shot apply: config.toml {config} ({len} bytes), Secret with {mirrors} mirror(s), {} updates; agent `run --debounce {debounce} --reload none` {}; one-shot `regmirror apply --secret-file` of the same change on its own copy (order alternates)",
        lat.len() + timeouts,
        if source == "file" {
            "with --secret-file (update: a new manifest renamed over it)"
        } else {
            "on the fake API watch (update: the update call)"
        }
    );
    let (a, o) = (common::median(&lat), common::median(&one));
    println!(
        "  medians: agent, update → config.toml visible {}   one-shot apply (whole process) {}   agent/apply {:.2}x   goal <= {GOAL_AGENT}x   ({timeouts} timeouts)",
        ms(a),
        ms(o),
        a / o
    );
    println!(
        "  agent p90 {}, max {}; apply p90 {}, max {}; final config.toml agent vs one-shot: {same}",
        ms(common::percentile(&lat, 90.0)),
        ms(common::percentile(&lat, 100.0)),
        ms(common::percentile(&one, 90.0)),
        ms(common::percentile(&one, 100.0))
    );
}
