//! `natrix-chaos`: runs the chaos suite against a `natrix-server` binary (docs/reliability.md).
//! Each run prints its seed first, then its faults as they happen, then a summary line; it writes
//! its history as JSON lines and exits non-zero when any run broke a rule or could not finish.
//! `--seed S` replays a run's schedule of faults; `--runs N` runs seeds S, S+1, ... S+N-1.

mod api;
mod cluster;
mod nemesis;
mod netns;
mod replicas;
mod run;
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;

use natrix_chaos::history::Recorder;
use natrix_chaos::schedule;

use crate::run::{RunOptions, RunReport};

#[derive(Parser, Debug)]
#[command(
    name = "natrix-chaos",
    about = "Faults against a natrix-server cluster under a recorded workload, then a check of \
             the history (docs/reliability.md)"
)]
struct Cli {
    /// The natrix-server binary under test.
    #[arg(long)]
    server_bin: PathBuf,
    /// The seed of the (first) run; random when not given. The seed replays the schedule.
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds of faults per run (quiet periods included).
    #[arg(long, default_value_t = 40)]
    duration: u64,
    /// Nodes in the cluster: 3 or 5.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Replicas of the streams: 3, or 5 with five nodes.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Consecutive runs, seeds S, S+1, ...
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// Where each run's directory (configs, stores, logs) goes; a temporary directory by default.
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Keep each run's directory even when the run passed.
    #[arg(long)]
    keep: bool,
    /// Where to write the history (with several runs, `-<seed>` is added to the file name).
    #[arg(long)]
    history: Option<PathBuf>,
    /// Run on loopback even where network namespaces are available (no partitions).
    #[arg(long)]
    loopback: bool,
    /// Print the plan of faults of each seed and exit.
    #[arg(long)]
    plan: bool,
}

/// Prints `msg` with the run's clock.
pub fn say(rec: &Recorder, msg: &str) {
    println!("[{:>8.3}s] {msg}", rec.now() as f64 / 1e6);
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = validate(&cli) {
        eprintln!("natrix-chaos: {err:#}");
        return ExitCode::from(2);
    }
    // The runs use a copy of the server binary: a rebuild while they go on (target/ is shared)
    // must not mix two versions in one cluster.
    let server_copy = if cli.plan {
        None
    } else {
        match copy_server(&cli) {
            Ok(copy) => Some(copy),
            Err(err) => {
                eprintln!("natrix-chaos: {err:#}");
                return ExitCode::from(2);
            }
        }
    };
    let server_bin = server_copy.clone().unwrap_or_default();
    let code = tokio::select! {
        code = run_all(&cli, &server_bin) => code,
        signal = interrupted() => {
            // Dropping the run kills its nodes and deletes its namespaces.
            eprintln!("natrix-chaos: {signal}: stopped; nodes killed, namespaces removed");
            ExitCode::from(130)
        }
    };
    if let Some(copy) = server_copy {
        let _ = std::fs::remove_file(copy);
    }
    code
}

/// Copies `--server-bin` into the work directory's base, named after this process.
fn copy_server(cli: &Cli) -> anyhow::Result<PathBuf> {
    let base = base_dir(cli);
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    // Copies left by runs that were killed outright.
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name
                .strip_prefix("natrix-server-")
                .and_then(|p| p.parse::<i32>().ok())
                && !netns::alive(pid)
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let copy = std::path::absolute(base.join(format!("natrix-server-{}", std::process::id())))
        .context("resolving the work directory")?;
    std::fs::copy(&cli.server_bin, &copy)
        .with_context(|| format!("copying {} to {}", cli.server_bin.display(), copy.display()))?;
    Ok(copy)
}

fn base_dir(cli: &Cli) -> PathBuf {
    match &cli.workdir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join("natrix-chaos"),
    }
}

/// Resolves on SIGINT or SIGTERM, naming it.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        () = terminated => "SIGTERM",
    }
}

fn validate(cli: &Cli) -> anyhow::Result<()> {
    if cli.nodes != 3 && cli.nodes != 5 {
        bail!("--nodes must be 3 or 5, not {}", cli.nodes);
    }
    if cli.replicas != 3 && cli.replicas != 5 || cli.replicas > cli.nodes {
        bail!("--replicas must be 3, or 5 with --nodes 5");
    }
    if !cli.plan && !cli.server_bin.is_file() {
        bail!(
            "--server-bin {}: no such file (build it with `cargo build -p natrix --bin natrix-server`)",
            cli.server_bin.display()
        );
    }
    if cli.runs == 0 || cli.duration == 0 {
        bail!("--runs and --duration must be at least 1");
    }
    Ok(())
}

async fn run_all(cli: &Cli, server_bin: &Path) -> ExitCode {
    let first = cli.seed.unwrap_or_else(|| fastrand::u64(..u64::MAX / 2));
    let duration = Duration::from_secs(cli.duration);
    if cli.plan {
        for k in 0..cli.runs {
            let seed = first + k;
            println!("seed {seed}:");
            for step in schedule::plan(seed, cli.nodes, duration) {
                println!("  after {} ms: {:?}", step.quiet_ms, step.fault);
            }
        }
        return ExitCode::SUCCESS;
    }
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    let mut faults: BTreeMap<String, usize> = BTreeMap::new();
    let (mut acked, mut lost, mut duplicated) = (0, 0, 0);
    for k in 0..cli.runs {
        let seed = first + k;
        println!(
            "natrix-chaos seed={seed} (run {}/{}; replay: --seed {seed} --nodes {} --replicas {} --duration {})",
            k + 1,
            cli.runs,
            cli.nodes,
            cli.replicas,
            cli.duration
        );
        let dir = match run_dir(cli, seed) {
            Ok(dir) => dir,
            Err(err) => {
                eprintln!("natrix-chaos: {err:#}");
                return ExitCode::from(2);
            }
        };
        let opts = RunOptions {
            server_bin: server_bin.to_path_buf(),
            seed,
            duration,
            nodes: cli.nodes,
            replicas: cli.replicas,
            dir: dir.clone(),
            history: history_path(cli, seed),
            keep: cli.keep,
            loopback: cli.loopback,
        };
        match run::run(&opts).await {
            Ok(report) => {
                for (kind, n) in &report.verdict.stats.faults {
                    *faults.entry(kind.clone()).or_default() += n;
                }
                acked += report.verdict.stats.acked;
                lost += report.verdict.stats.lost;
                duplicated += report.verdict.stats.duplicated;
                print_report(&report);
                if report.violations() == 0 {
                    passed.push(seed);
                    finish_dir(&opts, &report, true);
                } else {
                    failed.push(seed);
                    finish_dir(&opts, &report, false);
                }
            }
            Err(err) => {
                println!("RUN FAILED seed={seed}: {err:#}");
                println!("work dir kept: {}", dir.display());
                failed.push(seed);
            }
        }
    }
    if cli.runs > 1 {
        let faults = faults
            .iter()
            .map(|(k, n)| format!("{k}:{n}"))
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "TALLY runs={} passed={} failed={} failed_seeds={failed:?} faults=[{faults}] \
             acked={acked} lost={lost} duplicated={duplicated}",
            cli.runs,
            passed.len(),
            failed.len()
        );
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_report(report: &RunReport) {
    if !report.verdict.violations.is_empty() || !report.verdict.notes.is_empty() {
        print!("{}", report.verdict.describe());
    }
    for warning in &report.findings.warnings {
        println!("warning: {warning}");
    }
    for damage in &report.findings.damage {
        println!("damaged file: {damage}");
    }
    println!(
        "{} {}",
        if report.violations() == 0 {
            "PASS"
        } else {
            "FAIL"
        },
        report.summary
    );
}

/// Removes a passed run's directory unless asked to keep it; says where a kept one is.
fn finish_dir(opts: &RunOptions, report: &RunReport, passed: bool) {
    if passed && !opts.keep {
        if let Err(err) = std::fs::remove_dir_all(&opts.dir) {
            println!("could not remove {}: {err}", opts.dir.display());
        }
        if opts.history.is_some() {
            println!("history: {}", report.history.display());
        }
    } else {
        println!(
            "work dir kept: {} (history {})",
            opts.dir.display(),
            report.history.display()
        );
    }
}

fn run_dir(cli: &Cli, seed: u64) -> anyhow::Result<PathBuf> {
    let dir = base_dir(cli).join(format!("seed-{seed}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::path::absolute(&dir).with_context(|| format!("resolving {}", dir.display()))
}

fn history_path(cli: &Cli, seed: u64) -> Option<PathBuf> {
    let path = cli.history.as_ref()?;
    if cli.runs <= 1 {
        return Some(path.clone());
    }
    Some(with_seed(path, seed))
}

/// `dir/history.jsonl` → `dir/history-<seed>.jsonl`.
fn with_seed(path: &Path, seed: u64) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "history".into(), |s| s.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{seed}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{seed}"),
    };
    path.with_file_name(name)
}
