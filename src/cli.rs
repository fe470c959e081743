//! The command line: `diff | apply | revert | show | resolve | run`. Parses flags (each also from
//! a `REGMIRROR_*` variable), calls the layers below, prints, and maps errors to exit code 2.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::apply::{self, FileChange, Paths};
use crate::render::Mode;
use crate::source::file::FileSecret;
use crate::spec::{self, RegistrySpec};

#[derive(Parser, Debug)]
#[command(
    name = "regmirror",
    version,
    about = "Point containerd at a private registry mirror, from the jet-system/registry-info Secret"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the registry-info Secret is read from, for the one-shot commands.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct SecretArgs {
    /// A Secret manifest (YAML, one or more documents; stringData and/or base64 data).
    #[arg(long, env = "REGMIRROR_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// A directory of key files, as kubelet mounts a Secret volume.
    #[arg(long, env = "REGMIRROR_SECRET_DIR", value_name = "DIR")]
    pub secret_dir: Option<PathBuf>,
}

/// Which Secret in a manifest (and, for `run`, in the cluster).
#[derive(Args, Debug, Clone)]
pub struct SecretName {
    /// The Secret's name (picks the document in a multi-document manifest).
    #[arg(long, env = "REGMIRROR_SECRET_NAME", default_value = "registry-info")]
    pub secret_name: String,
    /// The Secret's namespace (a manifest document naming another namespace is skipped).
    #[arg(long, env = "REGMIRROR_SECRET_NAMESPACE", default_value = "jet-system")]
    pub secret_namespace: String,
}

/// The files regmirror edits and its state.
#[derive(Args, Debug, Clone)]
pub struct PathArgs {
    /// containerd's config.toml.
    #[arg(
        long,
        env = "REGMIRROR_CONFIG",
        default_value = "/etc/containerd/config.toml"
    )]
    pub config: PathBuf,
    /// Where hosts.toml directories and CA files go (used as config_path in hosts mode).
    #[arg(
        long,
        env = "REGMIRROR_CERTS_DIR",
        default_value = "/etc/containerd/certs.d"
    )]
    pub certs_dir: PathBuf,
    /// Where regmirror keeps its state file and lock.
    #[arg(
        long,
        env = "REGMIRROR_STATE_DIR",
        default_value = "/var/lib/regmirror"
    )]
    pub state_dir: PathBuf,
}

impl PathArgs {
    pub fn paths(&self) -> Paths {
        Paths {
            config: self.config.clone(),
            certs_dir: self.certs_dir.clone(),
            state_dir: self.state_dir.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print a unified diff of every file apply would write (exit 0: no change, 1: changes, 2: error).
    Diff {
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        name: SecretName,
        #[command(flatten)]
        paths: PathArgs,
        #[arg(long, env = "REGMIRROR_MODE", value_enum, default_value_t = Mode::Auto)]
        mode: Mode,
        #[command(flatten)]
        runtime: crate::reload::RuntimeArgs,
    },
    /// Write the configuration (exit 0: applied or unchanged, 2: error).
    Apply {
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        name: SecretName,
        #[command(flatten)]
        paths: PathArgs,
        #[arg(long, env = "REGMIRROR_MODE", value_enum, default_value_t = Mode::Auto)]
        mode: Mode,
        #[command(flatten)]
        reload: crate::reload::ReloadArgs,
    },
    /// Remove everything regmirror wrote and restore what it replaced.
    Revert {
        #[command(flatten)]
        paths: PathArgs,
        #[command(flatten)]
        reload: crate::reload::ReloadArgs,
    },
    /// Print the validated spec (PASSWORD as ***) and the containerd it would be rendered for.
    Show {
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        name: SecretName,
        #[command(flatten)]
        runtime: crate::reload::RuntimeArgs,
    },
    /// The agent: watch the Secret and the files, reconcile, reload containerd.
    Run(Box<crate::daemon::RunArgs>),
    /// Print the URLs containerd will try for IMAGE, in order, from the files on disk now.
    Resolve {
        image: String,
        #[arg(
            long,
            env = "REGMIRROR_CONFIG",
            default_value = "/etc/containerd/config.toml"
        )]
        config: PathBuf,
        /// The hosts directory containerd ≥ 2.2 uses when a version ≥ 3 config sets no
        /// config_path and no legacy mirrors (its built-in default).
        #[arg(
            long,
            env = "REGMIRROR_CERTS_DIR",
            default_value = "/etc/containerd/certs.d"
        )]
        certs_dir: PathBuf,
        #[command(flatten)]
        runtime: crate::reload::RuntimeArgs,
        /// text, or json (schema regmirror.resolve/v1, documented in the README).
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// A failure with the message shown to the user (exit 2).
#[derive(Debug)]
pub struct Failure(pub String);

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Self {
        let mut msg = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            let s = s.to_string();
            if !msg.contains(&s) {
                msg.push_str(": ");
                msg.push_str(&s);
            }
            src = s_source(&src);
        }
        Failure(msg)
    }
}

fn s_source<'a>(
    e: &Option<&'a (dyn std::error::Error + 'static)>,
) -> Option<&'a (dyn std::error::Error + 'static)> {
    e.and_then(|e| e.source())
}

/// Read and validate the Secret named by the flags.
pub fn load_spec(secret: &SecretArgs, name: &SecretName) -> Result<RegistrySpec, Failure> {
    let source = file_secret(secret, name);
    let data = source.read()?;
    spec::parse_spec(&data).map_err(|e| Failure(format!("{}: {e}", source.path().display())))
}

pub fn file_secret(secret: &SecretArgs, name: &SecretName) -> FileSecret {
    match (&secret.secret_file, &secret.secret_dir) {
        (Some(f), _) => FileSecret::Manifest {
            path: f.clone(),
            name: name.secret_name.clone(),
            namespace: Some(name.secret_namespace.clone()),
        },
        (None, Some(d)) => FileSecret::Dir(d.clone()),
        (None, None) => unreachable!("clap requires one of --secret-file / --secret-dir"),
    }
}

/// A unified diff of one change, credentials redacted. Returns an empty string for no change.
pub fn render_change(c: &FileChange, color: bool) -> String {
    let text = |b: &Option<Vec<u8>>| {
        b.as_ref()
            .map(|b| crate::redact::redact_toml(&String::from_utf8_lossy(b)))
            .unwrap_or_default()
    };
    let (old, new) = (text(&c.old), text(&c.new));
    let path = c.path.display().to_string();
    let (a, b) = (
        if c.old.is_some() {
            path.clone()
        } else {
            "/dev/null".into()
        },
        if c.new.is_some() {
            format!("{path} (regmirror)")
        } else {
            "/dev/null".into()
        },
    );
    let mut out = String::new();
    if old == new {
        out.push_str(&format!("--- {a}\n+++ {b}\n"));
        if c.old != c.new {
            out.push_str("@@ credential values change (redacted) @@\n");
        }
    } else {
        let diff = similar::TextDiff::from_lines(&old, &new);
        out.push_str(
            &diff
                .unified_diff()
                .context_radius(3)
                .header(&a, &b)
                .to_string(),
        );
    }
    if c.old_mode.is_some_and(|m| m != c.mode) && c.new.is_some() {
        out.push_str(&format!(
            "mode {:o} → {:o}\n",
            c.old_mode.unwrap_or_default(),
            c.mode
        ));
    }
    if !color {
        return out;
    }
    out.lines()
        .map(|l| {
            let code = if l.starts_with("+++") || l.starts_with("---") {
                "1"
            } else if l.starts_with('+') {
                "32"
            } else if l.starts_with('-') {
                "31"
            } else if l.starts_with("@@") {
                "36"
            } else {
                ""
            };
            if code.is_empty() {
                format!("{l}\n")
            } else {
                format!("\x1b[{code}m{l}\x1b[0m\n")
            }
        })
        .collect()
}

fn print_warnings(w: &[String]) {
    for w in w {
        eprintln!("warning: {w}");
    }
}

fn cmd_diff(
    secret: &SecretArgs,
    name: &SecretName,
    paths: &Paths,
    mode: Mode,
    runtime: &crate::reload::RuntimeArgs,
) -> Result<ExitCode, Failure> {
    let spec = load_spec(secret, name)?;
    let node = runtime.detect();
    let plan = apply::plan(paths, Some(&spec), choice(mode, &node))?;
    print_warnings(&plan.warnings);
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = std::io::stdout().lock();
    for c in &plan.changes {
        let _ = out.write_all(render_change(c, color).as_bytes());
    }
    if plan.changes.is_empty() {
        eprintln!("no change; decided for {node}");
        return Ok(ExitCode::SUCCESS);
    }
    let _ = writeln!(
        out,
        "# {node}; mode {}; containerd restart needed: {}",
        mode_name(plan.mode),
        if plan.restart_needed { "yes" } else { "no" }
    );
    Ok(ExitCode::from(1))
}

/// The renderer's input from `--mode` and what is known of the node's containerd.
fn choice(mode: Mode, node: &crate::runtime::Runtime) -> crate::render::Choice {
    crate::render::Choice {
        mode,
        containerd: node.version,
    }
}

fn mode_name(m: Option<crate::render::Resolved>) -> &'static str {
    match m {
        Some(crate::render::Resolved::Legacy) => "legacy",
        Some(crate::render::Resolved::Hosts) => "hosts",
        None => "revert",
    }
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
    println!(
        "restart needed: {}",
        if outcome.restart_needed { "yes" } else { "no" }
    );
}

/// Restart containerd if the strategy says so, health-check and verify what it loaded; when
/// that fails, put the previous files back, restart again and report the failure (exit 2).
fn finish_reload(
    paths: &Paths,
    plan: &apply::Plan,
    outcome: &apply::Outcome,
    reload: &crate::reload::ReloadArgs,
) -> Result<(), Failure> {
    let r = crate::reload::Reloader::from_args(reload).map_err(Failure)?;
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
        crate::reload::cri::wait_healthy(&r.socket, r.health_timeout)
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

fn cmd_resolve(
    image: &str,
    config: &Path,
    certs_dir: &Path,
    runtime: &crate::reload::RuntimeArgs,
    output: Output,
) -> Result<ExitCode, Failure> {
    let text = std::fs::read_to_string(config)
        .map_err(|e| Failure(format!("read {}: {e}", config.display())))?;
    let node = runtime.detect();
    let r = crate::resolve::resolve(
        image,
        &text,
        node.version,
        certs_dir,
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

/// `-o` of `resolve` and `show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

fn dispatch(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Diff {
            secret,
            name,
            paths,
            mode,
            runtime,
        } => cmd_diff(&secret, &name, &paths.paths(), mode, &runtime),
        Command::Apply {
            secret,
            name,
            paths,
            mode,
            reload,
        } => {
            let spec = load_spec(&secret, &name)?;
            let node = reload.runtime.detect();
            let paths = paths.paths();
            let (plan, outcome) = apply::apply_planned(&paths, Some(&spec), choice(mode, &node))?;
            println!("decided for {node}");
            report(&outcome, "applied");
            finish_reload(&paths, &plan, &outcome, &reload)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Revert { paths, reload } => {
            let paths = paths.paths();
            let (plan, outcome) = apply::apply_planned(&paths, None, Mode::Auto)?;
            report(&outcome, "reverted");
            finish_reload(&paths, &plan, &outcome, &reload)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Show {
            secret,
            name,
            runtime,
        } => {
            let spec = load_spec(&secret, &name)?;
            print_warnings(&spec.warnings);
            let node = runtime.detect();
            let view = crate::show::show(&spec, &node);
            println!("{}", serde_json::to_string_pretty(&view).expect("json"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Resolve {
            image,
            config,
            certs_dir,
            runtime,
            output,
        } => cmd_resolve(&image, &config, &certs_dir, &runtime, output),
        Command::Run(args) => crate::daemon::run(*args)
            .map(|()| ExitCode::SUCCESS)
            .map_err(|e| Failure(format!("{e:#}"))),
    }
}

/// Entry point: parse, run, map errors to exit code 2.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(Failure(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}
