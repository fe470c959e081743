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
//! cargo bench --bench agent -- footprint [--secs 60] [--source kube|file]
//! cargo bench --bench agent -- floor --dir DIR --yardstick EXE [--rounds 9]
//! cargo bench --bench agent -- agent-vs-apply [--updates 30] [--config admin1000] [--source kube|file]
//! ```
//!
//! `propagation`, `coalesce` and `footprint` run the real `regmirror run` binary against the
//! FAKE Kubernetes API server of `tests/support_kube` (plain HTTP on 127.0.0.1, no auth) and
//! measure from the moment a Secret update is stored (the update call) to the moment the new
//! content is visible in config.toml (inotify on its directory plus a re-read).

#[path = "../../tests/common/agent.rs"]
mod agent_process;
#[path = "../common/mod.rs"]
mod common;
#[path = "../../tests/support_kube/mod.rs"]
mod support_kube;

mod api;
mod floor;
mod footprint;
mod merge;

use api::*;
use floor::*;
use footprint::*;
use merge::*;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
        /// `kube` (watch on the fake API server) or `file` (`--secret-file`).
        #[arg(long, default_value = "kube")]
        source: String,
    },
    /// Issue 13's floor: `regmirror apply`/`diff` (whole process) against the yardstick (one
    /// toml_edit parse + edit + print + atomic write) and against tomlkit, interleaved, on the
    /// 165 KB / 1,000-admin-mirror config and the 1 MiB config; peak RSS per config byte.
    Floor {
        #[arg(long)]
        dir: PathBuf,
        /// The built benches/yardstick.rs executable.
        #[arg(long)]
        yardstick: PathBuf,
        #[arg(long, default_value_t = 9)]
        rounds: usize,
        /// GNU time runs per program for the peak RSS (median).
        #[arg(long, default_value_t = 3)]
        rss_repeat: usize,
        #[arg(long, default_value = "python3")]
        python: String,
        #[arg(long, default_value = "scripts/bench")]
        scripts: PathBuf,
    },
    /// The agent (`--debounce 0s`, fake API watch) against a one-shot `regmirror apply` of the
    /// same change from the same files, pair by pair.
    AgentVsApply {
        #[arg(long, default_value_t = 30)]
        updates: usize,
        /// Mirrors in the Secret (the first one changes with every update).
        #[arg(long, default_value_t = 1)]
        mirrors: usize,
        /// `admin1000` (165 KB), `default` or `1mib`.
        #[arg(long, default_value = "admin1000")]
        config: String,
        #[arg(long, default_value = "0s")]
        debounce: String,
        /// `kube` (fake API watch) or `file` (`--secret-file`, updated by rename).
        #[arg(long, default_value = "kube")]
        source: String,
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
        Cmd::Footprint { secs, source } => footprint(&bin, secs, &source),
        Cmd::Floor {
            dir,
            yardstick,
            rounds,
            rss_repeat,
            python,
            scripts,
        } => floor(
            &bin, &dir, &yardstick, rounds, rss_repeat, &python, &scripts,
        ),
        Cmd::AgentVsApply {
            updates,
            mirrors,
            config,
            debounce,
            source,
        } => agent_vs_apply(&bin, updates, mirrors, &config, &debounce, &source),
    }
}
