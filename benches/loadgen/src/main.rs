//! `natrix-bench`: a load generator for NATS-protocol servers (natrix, nats-server) built on the
//! official `async-nats` client (core NATS and JetStream scenarios), plus the `report` and
//! `chart` tools that turn its JSON lines into the side-by-side table and SVG chart used by
//! `benches/run.sh` and `benches/run-js.sh`.

mod chart;
mod connect;
mod jetstream;
mod progress;
mod recovery;
mod report;
mod reqrep;
mod result;
mod throughput;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::result::BenchResult;

#[derive(Parser, Debug)]
#[command(name = "natrix-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// 1 publisher -> 1 subscriber.
    Pubsub(RunArgs),
    /// 1 publisher -> N subscribers (default 5), every subscriber gets every message.
    Fanout(RunArgs),
    /// N publishers (default 5) -> 1 subscriber.
    Fanin(RunArgs),
    /// 1 publisher -> a queue group of N subscribers (default 5), each message delivered once.
    Queue(RunArgs),
    /// Requesters (--pubs, default 1) -> responders (--subs, default 1); reports latency.
    Reqrep(RunArgs),
    /// JetStream: publish to a fresh file stream keeping --in-flight publishes unacknowledged;
    /// reports acked msgs/s and publish-to-ack latency.
    JsPub(jetstream::JsArgs),
    /// JetStream: fill a fresh file stream, then drain it with a pull consumer (--batch per
    /// pull, --ack explicit|all|none); reports consumed msgs/s.
    JsConsume(jetstream::JsArgs),
    /// JetStream key-value: put --count keys into a fresh file bucket, then get them all;
    /// prints two results (kv-put, kv-get).
    Kv(jetstream::JsArgs),
    /// JetStream recovery: run the server command given after `--`, store --count messages,
    /// stop or kill it, restart it and time until STREAM.INFO reports every message.
    JsRecovery(recovery::RecoveryArgs),
    /// Print the side-by-side table (medians and ratios) from a results.jsonl file.
    Report(ReportArgs),
    /// Draw a grouped bar chart (SVG) from a results.jsonl file.
    Chart(ChartArgs),
}

/// Options shared by every load scenario.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Server URL.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub server: String,
    /// Subscribers' server URL (pubsub, fanout, fanin, queue): another node of a cluster, so
    /// every message crosses the route between two nodes. Default: --server.
    #[arg(long)]
    pub sub_server: Option<String>,
    /// Label for this server in results (e.g. natrix, nats-2.15.1).
    #[arg(long, default_value = "server")]
    pub label: String,
    /// Messages to publish in total (requests for reqrep). Default 1,000,000 (reqrep: 50,000).
    #[arg(long)]
    pub msgs: Option<u64>,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 16)]
    pub size: usize,
    /// Publish for this long instead of a fixed count (e.g. 10s, 500ms); --msgs still caps it.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Subscribers (fanout, queue), or responders (reqrep).
    #[arg(long)]
    pub subs: Option<usize>,
    /// Publishers (fanin), or concurrent requesters (reqrep).
    #[arg(long)]
    pub pubs: Option<usize>,
    /// Print exactly one JSON result line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Show a progress bar on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// Hard deadline for the whole measurement, publishing and draining included.
    #[arg(long, value_parser = parse_duration, default_value = "120s")]
    pub max_time: Duration,
    /// After publishing ends, give up when no message arrived for this long and report the loss.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub drain_timeout: Duration,
    /// Per-subscription buffer in the client, in messages; async-nats drops messages beyond it.
    /// Default: the deliveries one subscriber expects, within 65,536..=1,048,576.
    #[arg(long)]
    pub sub_capacity: Option<usize>,
    /// Round number recorded in the JSON result (used by run.sh).
    #[arg(long, default_value_t = 0)]
    pub round: u32,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// results.jsonl written by run.sh (one JSON result per line).
    #[arg(long)]
    input: PathBuf,
    /// Server labels (comma-separated) whose numbers are divided by every other server's.
    #[arg(long, default_value = "natrix")]
    subject: String,
}

#[derive(Args, Debug)]
struct ChartArgs {
    /// results.jsonl written by run.sh.
    #[arg(long)]
    input: PathBuf,
    /// Output SVG path.
    #[arg(long)]
    output: PathBuf,
    /// Normalise each benchmark to this server label (=1.0); omit for absolute msgs/s.
    #[arg(long)]
    baseline: Option<String>,
}

/// The fixed shape of a load scenario once defaults are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Pubsub,
    Fanout,
    Fanin,
    Queue,
    Reqrep,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Pubsub => "pubsub",
            Scenario::Fanout => "fanout",
            Scenario::Fanin => "fanin",
            Scenario::Queue => "queue",
            Scenario::Reqrep => "reqrep",
        }
    }

    /// (publishers, subscribers) when the user did not say.
    fn default_shape(self) -> (usize, usize) {
        match self {
            Scenario::Pubsub => (1, 1),
            Scenario::Fanout => (1, 5),
            Scenario::Fanin => (5, 1),
            Scenario::Queue => (1, 5),
            Scenario::Reqrep => (1, 1),
        }
    }

    fn default_msgs(self) -> u64 {
        match self {
            Scenario::Reqrep => 50_000,
            _ => 1_000_000,
        }
    }
}

/// Upper bounds that keep a typo from exhausting the machine.
const MAX_CLIENTS: usize = 256;
const MAX_PAYLOAD: usize = 1024 * 1024;

/// A scenario with all defaults resolved and validated.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: Scenario,
    pub pubs: usize,
    pub subs: usize,
    pub msgs: u64,
    pub args: RunArgs,
}

impl Plan {
    fn new(scenario: Scenario, args: RunArgs) -> Result<Plan> {
        let (default_pubs, default_subs) = scenario.default_shape();
        let pubs = args.pubs.unwrap_or(default_pubs);
        let subs = args.subs.unwrap_or(default_subs);
        if !(1..=MAX_CLIENTS).contains(&pubs) || !(1..=MAX_CLIENTS).contains(&subs) {
            bail!("--pubs and --subs must be between 1 and {MAX_CLIENTS}");
        }
        if args.size > MAX_PAYLOAD {
            bail!("--size must be at most {MAX_PAYLOAD} bytes (nats-server's max_payload)");
        }
        if args.sub_capacity == Some(0) {
            bail!("--sub-capacity must be positive");
        }
        // In duration mode the count is only a safety cap.
        let msgs = match (args.msgs, args.duration) {
            (Some(n), _) => n,
            (None, Some(_)) => u64::MAX / 2,
            (None, None) => scenario.default_msgs(),
        };
        if msgs == 0 {
            bail!("--msgs must be positive");
        }
        Ok(Plan {
            scenario,
            pubs,
            subs,
            msgs,
            args,
        })
    }

    /// When publishing stops at the latest (duration mode, else the hard deadline).
    pub fn publish_window(&self) -> Duration {
        self.args
            .duration
            .unwrap_or(self.args.max_time)
            .min(self.args.max_time)
    }

    /// The client-side buffer per subscription. It must hold the backlog when the subscriber
    /// task is slower than the socket, or async-nats drops messages and the run measures the
    /// client; the cap bounds memory (about 200 bytes plus the payload per buffered message).
    pub fn sub_capacity(&self) -> usize {
        const AUTO_MIN: u64 = 65_536;
        const AUTO_MAX: u64 = 1_048_576;
        match self.args.sub_capacity {
            Some(n) => n,
            None => self.msgs.clamp(AUTO_MIN, AUTO_MAX) as usize,
        }
    }

    /// The share of `msgs` publisher `index` sends; the remainder goes to the first ones.
    pub fn quota(&self, index: usize) -> u64 {
        let n = self.pubs as u64;
        let base = self.msgs / n;
        base + u64::from((index as u64) < self.msgs % n)
    }
}

/// Parses `10`, `10s`, `1.5s`, `500ms`, `2m` into a duration.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit_secs) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {text:?} (try 10s, 500ms, 2m)"))?;
    let secs = value * unit_secs;
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
        return Err(format!("duration {text:?} out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> std::process::ExitCode {
    // One line with the cause chain; a backtrace (RUST_BACKTRACE) says nothing about a refused
    // connection.
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natrix-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let (scenario, args) = match cli.command {
        Command::Report(r) => return report::print_report(&r.input, &r.subject),
        Command::Chart(c) => return chart::draw(&c.input, &c.output, c.baseline.as_deref()),
        Command::JsPub(a) => {
            a.validate()?;
            return print_all(
                a.json,
                build_runtime()?.block_on(jetstream::run_publish(&a))?,
            );
        }
        Command::JsConsume(a) => {
            a.validate()?;
            return print_all(
                a.json,
                build_runtime()?.block_on(jetstream::run_consume(&a))?,
            );
        }
        Command::Kv(a) => {
            a.validate()?;
            return print_all(a.json, build_runtime()?.block_on(jetstream::run_kv(&a))?);
        }
        Command::JsRecovery(a) => {
            return print_all(a.json, build_runtime()?.block_on(recovery::run(&a))?);
        }
        Command::Pubsub(a) => (Scenario::Pubsub, a),
        Command::Fanout(a) => (Scenario::Fanout, a),
        Command::Fanin(a) => (Scenario::Fanin, a),
        Command::Queue(a) => (Scenario::Queue, a),
        Command::Reqrep(a) => (Scenario::Reqrep, a),
    };
    let plan = Plan::new(scenario, args)?;
    let result: BenchResult = build_runtime()?.block_on(async {
        match plan.scenario {
            Scenario::Reqrep => reqrep::run(&plan).await,
            _ => throughput::run(&plan).await,
        }
    })?;
    if plan.args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        result.print_human();
    }
    Ok(())
}

fn build_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")
}

/// One JSON line per result with `--json`, else the human-readable rendering.
fn print_all(json: bool, results: Vec<BenchResult>) -> Result<()> {
    for result in results {
        if json {
            println!("{}", serde_json::to_string(&result)?);
        } else {
            result.print_human();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pubs: Option<usize>, msgs: Option<u64>) -> RunArgs {
        let cli = Cli::parse_from(["natrix-bench", "fanin"]);
        let Command::Fanin(mut a) = cli.command else {
            unreachable!("parsed fanin");
        };
        a.pubs = pubs;
        a.msgs = msgs;
        a
    }

    #[test]
    fn quotas_add_up_to_the_requested_message_count() {
        let plan = Plan::new(Scenario::Fanin, args(Some(3), Some(10))).expect("valid plan");
        let total: u64 = (0..3).map(|i| plan.quota(i)).sum();
        assert_eq!(total, 10);
        assert_eq!(plan.quota(0), 4);
        assert_eq!(plan.quota(2), 3);
    }

    #[test]
    fn scenario_defaults_match_the_documented_shapes() {
        let plan = Plan::new(Scenario::Fanin, args(None, None)).expect("valid plan");
        assert_eq!((plan.pubs, plan.subs, plan.msgs), (5, 1, 1_000_000));
    }

    #[test]
    fn zero_publishers_are_rejected() {
        assert!(Plan::new(Scenario::Fanin, args(Some(0), None)).is_err());
    }

    #[test]
    fn durations_accept_common_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
