//! The command line: `diff | apply | revert | show | resolve | run`. [`args`] holds every flag
//! (each also from a `REGMIRROR_*` variable); [`commands`] runs the one-shot commands;
//! [`diff`] prints diffs. Errors map to exit code 2.

pub mod args;
pub mod commands;
pub mod diff;
pub mod diff_view;
pub mod generate;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

/// A failure with the message shown to the user (exit 2).
#[derive(Debug)]
pub struct Failure(pub String);

impl<E: std::error::Error + 'static> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(crate::errchain::chain(&e))
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Diff {
            what,
            cluster,
            runtime,
            output,
        } => commands::diff(&what, &cluster, &runtime, output),
        Command::Apply { what, reload } => commands::apply(&what, &reload),
        Command::Revert {
            paths,
            reload,
            podman,
        } => commands::revert(&paths, &reload, &podman),
        Command::Show {
            secret,
            name,
            runtime,
        } => commands::show(&secret, &name, &runtime),
        Command::Resolve {
            image,
            files,
            runtime,
            podman,
            registries_conf,
            output,
        } => commands::resolve(&image, &files, &runtime, &podman, &registries_conf, output),
        Command::Check(args) => commands::check(&args),
        Command::Completions { shell } => {
            generate::print(&generate::completions(shell))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            generate::print(&generate::man())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let config = args.config().map_err(Failure)?;
            crate::agent::run(config)
                .map(|()| ExitCode::SUCCESS)
                .map_err(|e| Failure(format!("{e:#}")))
        }
    }
}

/// Entry point: parse, run, map errors to exit code 2.
pub fn main() -> ExitCode {
    crate::memory::tune_allocator();
    match dispatch(Cli::parse()) {
        Ok(code) => code,
        Err(Failure(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}
