//! `fixtures`, `merge`, `mem`: one-shot `apply`/`diff` on configs of 10 / 100 / 1,000 mirrors,
//! against a Python tomlkit script doing the same edit (wall time and peak RSS).

use super::*;

pub(crate) const SIZES: [usize; 3] = [10, 100, 1000];

pub(crate) fn fixtures(dir: &Path) {
    fs::create_dir_all(dir).expect("create fixture dir");
    let big = common::config_1mib();
    fs::write(dir.join("config-1mib.toml"), &big).expect("write");
    fs::write(dir.join("config-default.toml"), common::DEFAULT_CONFIG).expect("write");
    let admin = common::admin_mirrors_config(1000);
    fs::write(dir.join("config-admin-1000.toml"), &admin).expect("write");
    fs::write(dir.join("secret-seed.yaml"), common::SEED_SECRET).expect("write");
    fs::write(dir.join("mirrors-seed.txt"), common::seed_mirror_list()).expect("write");
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
        "fixtures in {}: config-1mib.toml ({} bytes, {} lines), config-default.toml ({} bytes), config-admin-1000.toml ({} bytes, 1,000 admin mirrors), secret-{{10,100,1000,seed}}.yaml, mirrors-{{10,100,1000,seed}}.txt",
        dir.display(),
        big.len(),
        big.lines().count(),
        common::DEFAULT_CONFIG.len(),
        admin.len()
    );
}

/// A scratch copy of config.toml with its own certs and state dirs.
pub(crate) struct Scratch {
    pub(crate) config: PathBuf,
    pub(crate) certs: PathBuf,
    pub(crate) state: PathBuf,
}

impl Scratch {
    pub(crate) fn new(dir: &Path, original: &Path) -> Scratch {
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

    pub(crate) fn cli(&self, bin: &Path, verb: &str, secret: &Path) -> Command {
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

pub(crate) fn run_timed(mut c: Command, ok: &[i32]) -> f64 {
    let t = Instant::now();
    let status = c.status().expect("spawn");
    let secs = t.elapsed().as_secs_f64();
    assert!(
        status.code().is_some_and(|s| ok.contains(&s)),
        "{c:?} exited {status}"
    );
    secs
}

pub(crate) fn ms(s: f64) -> String {
    format!("{:.1} ms", s * 1e3)
}

pub(crate) fn merge(bin: &Path, dir: &Path, rounds: usize, python: &str, scripts: &Path) {
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
                        hosts: Default::default(),
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
pub(crate) fn gnu_time(c: &Command, ok: &[i32]) -> Option<(u64, f64)> {
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

pub(crate) fn mem(bin: &Path, dir: &Path, repeat: usize, python: &str, scripts: &Path) {
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
