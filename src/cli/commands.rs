//! The one-shot commands: `diff`, `apply`, `revert`, `show`, `resolve`. Each reads its inputs,
//! calls the layers below, and prints; errors go up as [`Failure`] (exit 2).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use super::Failure;
use super::args::{
    ApplyArgs, ClusterArgs, ConfigFiles, Output, PathArgs, ReloadArgs, RuntimeArgs, SecretArgs,
    SecretName,
};
use super::diff_view::DiffSource;
use crate::apply::{self, Paths};
use crate::cri;
use crate::podman::auto::Runtime as Rt;
use crate::reload::ReloadStrategy;
use crate::render::{Choice, Mode, WriteMode};
use crate::runtime::Runtime;
use crate::runtime::detect::detect_blocking;
use crate::spec::{self, RegistrySpec};

/// Read and validate the Secret named by the flags.
pub fn load_spec(secret: &SecretArgs, name: &SecretName) -> Result<RegistrySpec, Failure> {
    let source = super::args::file_secret(secret, name);
    let data = source.read()?;
    spec::parse_spec(&data).map_err(|e| Failure(format!("{}: {e}", source.path().display())))
}

fn print_warnings(w: &[String]) {
    for w in w {
        eprintln!("warning: {w}");
    }
}

/// The renderer's input from `--mode` and what is known of the node's containerd.
fn choice(what: &ApplyArgs, node: &Runtime) -> Choice {
    Choice {
        mode: what.mode.into(),
        containerd: node.version,
        hosts: what.hosts.options(),
    }
}

fn mode_name(m: Option<WriteMode>) -> &'static str {
    match m {
        Some(WriteMode::Legacy) => "legacy",
        Some(WriteMode::Hosts) => "hosts",
        None => "revert",
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The runtime `--runtime` names; `auto` decided (and why, on stderr).
fn pick(podman: &super::args::PodmanArgs, containerd_socket: &Path) -> Rt {
    let (rt, why) = podman.decide(containerd_socket);
    if let Some(why) = why {
        eprintln!("runtime auto: {rt} ({why})");
    }
    rt
}

/// The Secret for `diff`: from the flags' file or directory, or (`--from-cluster`) one GET.
fn diff_spec(
    what: &ApplyArgs,
    cluster: &ClusterArgs,
) -> Result<(RegistrySpec, DiffSource), Failure> {
    if !cluster.from_cluster {
        let spec = load_spec(&what.secret, &what.name)?;
        let source = match super::args::file_secret(&what.secret, &what.name) {
            crate::source::file::FileSecret::Manifest { path, .. } => DiffSource::File {
                path: path.display().to_string(),
            },
            crate::source::file::FileSecret::Dir(d) => DiffSource::Dir {
                path: d.display().to_string(),
            },
        };
        return Ok((spec, source));
    }
    let (ns, name) = (&what.name.secret_namespace, &what.name.secret_name);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let fetched = rt
        .block_on(crate::source::kube::get_secret(
            cluster.kubeconfig.as_ref(),
            cluster.context.as_deref(),
            ns,
            name,
            cluster.request_timeout,
        ))
        .map_err(|e| Failure(format!("{e:#}")))?;
    let Some(fetched) = fetched else {
        return Err(Failure(format!(
            "Secret {ns}/{name} not found in the cluster"
        )));
    };
    let rv = fetched.secret.metadata.resource_version.clone();
    let server = fetched.server;
    let data = spec::secret_data_from_object(&fetched.secret);
    let spec = spec::parse_spec(&data)
        .map_err(|e| Failure(format!("Secret {ns}/{name} from {server}: {e}")))?;
    eprintln!(
        "Secret {ns}/{name} from {server} (resourceVersion {})",
        rv.as_deref().unwrap_or("?")
    );
    Ok((
        spec,
        DiffSource::Cluster {
            server,
            namespace: ns.clone(),
            name: name.clone(),
            resource_version: rv,
        },
    ))
}

pub fn diff(
    what: &ApplyArgs,
    cluster: &ClusterArgs,
    runtime: &RuntimeArgs,
    output: Output,
) -> Result<ExitCode, Failure> {
    let rt = pick(&what.podman, &runtime.containerd_socket);
    let (spec, source) = diff_spec(what, cluster)?;
    if rt.is_containers() {
        if output == Output::Json {
            return Err(Failure(format!(
                "diff -o json is not available with --runtime {rt} (use the text diff)"
            )));
        }
        let changed =
            crate::podman::cli_diff_for(&what.podman.paths(&what.paths.state_dir), &spec, rt)?;
        return Ok(ExitCode::from(u8::from(changed)));
    }
    let node = detect_blocking(&runtime.probe());
    let plan = apply::plan(&what.paths.paths(), Some(&spec), choice(what, &node))?;
    print_warnings(&plan.warnings);
    let code = if plan.changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if output == Output::Json {
        let view = super::diff_view::view(&plan, mode_name(plan.mode), spec.hash(), &node, source);
        println!("{}", serde_json::to_string_pretty(&view).expect("json"));
        return Ok(code);
    }
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = std::io::stdout().lock();
    for c in &plan.changes {
        let _ = out.write_all(super::diff::unified_diff(c, color).as_bytes());
    }
    if plan.changes.is_empty() {
        eprintln!("no change; decided for {node}");
        return Ok(code);
    }
    let _ = writeln!(
        out,
        "# {node}; mode {}; containerd restart needed: {}",
        mode_name(plan.mode),
        yes_no(plan.restart_needed)
    );
    Ok(code)
}

fn report(outcome: &apply::Outcome, verb: &str) {
    print_warnings(&outcome.warnings);
    if outcome.changed.is_empty() {
        println!(
            "{verb}: nothing to change (mode {})",
            mode_name(outcome.mode)
        );
    } else {
        println!("{verb} (mode {}):", mode_name(outcome.mode));
        for p in &outcome.changed {
            let verb = if p.exists() { "wrote" } else { "removed" };
            println!("  {verb} {}", p.display());
        }
    }
    println!("restart needed: {}", yes_no(outcome.restart_needed));
}

pub fn apply(what: &ApplyArgs, reload: &ReloadArgs) -> Result<ExitCode, Failure> {
    let rt = pick(&what.podman, &reload.runtime.containerd_socket);
    let spec = load_spec(&what.secret, &what.name)?;
    if rt.is_containers() {
        let how = what
            .podman
            .crio_reload(reload.reload.as_ref(), reload.runtime.host_pid);
        crate::podman::cli_apply_for(
            &what.podman.paths(&what.paths.state_dir),
            Some(&spec),
            rt,
            &how,
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let node = detect_blocking(&reload.runtime.probe());
    let paths = what.paths.paths();
    let choice = choice(what, &node);
    let (plan, outcome) = apply::apply_planned(&paths, Some(&spec), choice)?;
    println!("decided for {node}");
    report(&outcome, "applied");
    finish_reload(&paths, &plan, &outcome, reload)?;
    Ok(ExitCode::SUCCESS)
}

pub fn revert(
    paths: &PathArgs,
    reload: &ReloadArgs,
    podman: &super::args::PodmanArgs,
) -> Result<ExitCode, Failure> {
    let rt = pick(podman, &reload.runtime.containerd_socket);
    if rt.is_containers() {
        let how = podman.crio_reload(reload.reload.as_ref(), reload.runtime.host_pid);
        crate::podman::cli_apply_for(&podman.paths(&paths.state_dir), None, rt, &how)?;
        return Ok(ExitCode::SUCCESS);
    }
    let paths = paths.paths();
    let (plan, outcome) = apply::apply_planned(&paths, None, Mode::Auto)?;
    report(&outcome, "reverted");
    finish_reload(&paths, &plan, &outcome, reload)?;
    Ok(ExitCode::SUCCESS)
}

/// Restart containerd if the strategy says so, health-check and verify what it loaded; when
/// that fails, put the previous files back, restart again and report the failure (exit 2).
fn finish_reload(
    paths: &Paths,
    plan: &apply::Plan,
    outcome: &apply::Outcome,
    reload: &ReloadArgs,
) -> Result<(), Failure> {
    let r = reload.reloader(ReloadStrategy::None);
    if !r.will_restart(outcome.restart_needed) {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let err = match rt.block_on(r.reload(outcome.restart_needed, outcome.expect.as_ref())) {
        Ok(done) => {
            if let Some(msg) = done {
                println!("{msg}");
            }
            return Ok(());
        }
        Err(e) => e,
    };
    if plan.changes.is_empty() {
        return Err(err.into());
    }
    apply::rollback(paths, plan, false)?;
    let back = rt.block_on(async {
        r.restart_only().await?;
        cri::wait_healthy(&r.socket, r.health_timeout)
            .await
            .map_err(crate::reload::ReloadError::from)
    });
    Err(Failure(match back {
        Ok(v) => format!(
            "{err}; rolled back: the previous files are restored and containerd {v} is healthy on them"
        ),
        Err(e2) => format!("{err}; rolled back the files, but containerd is still unhealthy: {e2}"),
    }))
}

pub fn show(
    secret: &SecretArgs,
    name: &SecretName,
    runtime: &RuntimeArgs,
) -> Result<ExitCode, Failure> {
    let spec = load_spec(secret, name)?;
    print_warnings(&spec.warnings);
    let node = detect_blocking(&runtime.probe());
    let view = crate::show::show(&spec, &node);
    println!("{}", serde_json::to_string_pretty(&view).expect("json"));
    Ok(ExitCode::SUCCESS)
}

pub fn resolve(
    image: &str,
    files: &ConfigFiles,
    runtime: &RuntimeArgs,
    podman: &super::args::PodmanArgs,
    registries_conf: &Path,
    output: Output,
) -> Result<ExitCode, Failure> {
    let rt = pick(podman, &runtime.containerd_socket);
    if rt.is_containers() {
        use crate::podman::resolve as pr;
        let confs = pr::read_files(registries_conf, &podman.registries_conf_d).map_err(Failure)?;
        let r = pr::resolve(image, &confs).map_err(Failure)?;
        match output {
            Output::Text => {
                eprintln!("for {rt} (containers-registries.conf)");
                print!("{}", pr::render_text(&r));
            }
            Output::Json => println!("{}", serde_json::to_string_pretty(&r).expect("json")),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let config: &Path = &files.config;
    let read = crate::apply::write::read_optional(config, crate::apply::MAX_CONFIG_BYTES)
        .map_err(|e| Failure(format!("read {}: {e}", config.display())))?
        .ok_or_else(|| Failure(format!("read {}: no such file", config.display())))?;
    let text = String::from_utf8(read.0)
        .map_err(|_| Failure(format!("read {}: not UTF-8 text", config.display())))?;
    let node = detect_blocking(&runtime.probe());
    let r = crate::resolve::resolve(
        image,
        &text,
        node.version,
        &files.certs_dir,
        &crate::resolve::DiskFs,
    )?;
    match output {
        Output::Text => {
            eprintln!("for {node}");
            print!("{}", crate::resolve::text::render(&r));
        }
        Output::Json => {
            let mut v = serde_json::to_value(&r).expect("resolution serializes");
            redact_headers(&mut v);
            println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Header values hold credentials (`Authorization: Basic …`): JSON shows their names only.
fn redact_headers(v: &mut serde_json::Value) {
    for a in v["attempts"].as_array_mut().into_iter().flatten() {
        if let Some(h) = a.get_mut("header").and_then(|h| h.as_object_mut()) {
            for val in h.values_mut() {
                *val = serde_json::json!("***");
            }
        }
    }
}

/// `check`: probe every mirror endpoint and each `--image`; exit 0 when all is fine, 1 when
/// something failed, 2 (a [`Failure`]) for bad input.
pub fn check(a: &super::args::CheckArgs) -> Result<ExitCode, Failure> {
    use crate::check::{self, Layout};
    if a.timeout.is_zero() {
        return Err(Failure("--timeout must be more than 0".into()));
    }
    let (layout, source) = if a.from_disk {
        let config: &Path = &a.files.config;
        let read = crate::apply::write::read_optional(config, crate::apply::MAX_CONFIG_BYTES)
            .map_err(|e| Failure(format!("read {}: {e}", config.display())))?
            .ok_or_else(|| Failure(format!("read {}: no such file", config.display())))?;
        let text = String::from_utf8(read.0)
            .map_err(|_| Failure(format!("read {}: not UTF-8 text", config.display())))?;
        let node = detect_blocking(&a.runtime.probe());
        let source = serde_json::json!({
            "kind": "disk",
            "config": config,
            "certs_dir": a.files.certs_dir,
            "containerd": node.version.map(|v| v.to_string()),
        });
        (
            Layout::from_disk(text, node.version, &a.files.certs_dir)?,
            source,
        )
    } else {
        let spec = load_spec(&a.secret, &a.name)?;
        print_warnings(&spec.warnings);
        let path = super::args::file_secret(&a.secret, &a.name)
            .path()
            .to_path_buf();
        let source = serde_json::json!({ "kind": "secret", "path": path });
        (Layout::from_spec(&spec, a.hosts.options())?, source)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (endpoints, images) = rt.block_on(check::check(&layout, &a.images, a.timeout))?;
    let report = check::report(source, a.timeout, endpoints, images, Vec::new());
    match a.output {
        Output::Text => print!("{}", check::render_text(&report)),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serializes")
        ),
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
