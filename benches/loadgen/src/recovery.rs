//! `js-recovery`: how long a server takes to come back with a large stream. It starts the
//! server command it is given, fills a file stream (1,000,000 messages by default), stops the
//! server cleanly (SIGTERM) or kills it (SIGKILL), starts the same command again and times
//! from process start until `$JS.API.STREAM.INFO` reports every stored message.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::jetstream::{connect_js, fresh_stream, publish_window};
use crate::progress;
use crate::result::{BenchResult, own_cpu_seconds};

#[derive(Args, Debug, Clone)]
pub struct RecoveryArgs {
    /// URL the server command listens on.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub server: String,
    /// Label for this server in results.
    #[arg(long, default_value = "server")]
    pub label: String,
    /// Messages stored before the restart.
    #[arg(long, alias = "msgs", default_value_t = 1_000_000)]
    pub count: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Publishes in flight while filling the stream.
    #[arg(long, default_value_t = 1024)]
    pub in_flight: usize,
    /// Stream name.
    #[arg(long, default_value = "NATRIX_RECOVERY")]
    pub stream: String,
    /// How the server is stopped before the restart.
    #[arg(long, value_enum, default_value_t = StopMode::Term)]
    pub stop: StopMode,
    /// Give up when the restarted server has not reported every message after this long.
    #[arg(long, value_parser = crate::parse_duration, default_value = "600s")]
    pub ready_timeout: Duration,
    /// Append the server's stdout and stderr to this file (default: discarded).
    #[arg(long)]
    pub server_log: Option<PathBuf>,
    /// Print exactly one JSON result line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Show a progress bar on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// Round number recorded in the JSON result.
    #[arg(long, default_value_t = 0)]
    pub round: u32,
    /// The server command and its arguments, after `--`; started twice, so its store
    /// directory must be the same both times.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StopMode {
    /// SIGTERM, then wait for the process to exit: a clean shutdown.
    Term,
    /// SIGKILL: a crash of the process (the page cache survives, unlike a power cut).
    Kill,
}

impl StopMode {
    fn name(self) -> &'static str {
        match self {
            StopMode::Term => "term",
            StopMode::Kill => "kill",
        }
    }
}

/// The running server; killed if still alive when dropped, so no error path leaks it.
struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    fn start(args: &RecoveryArgs) -> Result<ServerProcess> {
        let (program, rest) = args
            .command
            .split_first()
            .context("no server command given after --")?;
        let (stdout, stderr) = match &args.server_log {
            Some(path) => {
                let log: File = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                (Stdio::from(log.try_clone()?), Stdio::from(log))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = Command::new(program)
            .args(rest)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        Ok(ServerProcess { child })
    }

    fn exited(&mut self) -> Result<bool> {
        Ok(self
            .child
            .try_wait()
            .context("polling the server")?
            .is_some())
    }

    /// Stops the server as `mode` says and returns how long it took to exit.
    async fn stop(&mut self, mode: StopMode, limit: Duration) -> Result<Duration> {
        let start = Instant::now();
        match mode {
            StopMode::Term => {
                let status = Command::new("kill")
                    .args(["-TERM", &self.child.id().to_string()])
                    .status()
                    .context("running kill -TERM")?;
                if !status.success() {
                    bail!("kill -TERM {} failed", self.child.id());
                }
            }
            StopMode::Kill => self.child.kill().context("killing the server")?,
        }
        while !self.exited()? {
            if start.elapsed() > limit {
                let _ = self.child.kill();
                bail!("the server did not exit within {limit:?} of SIG{mode:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(start.elapsed())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Deserialize)]
struct StreamInfoReply {
    state: Option<StreamState>,
}

#[derive(Deserialize)]
struct StreamState {
    messages: u64,
    bytes: u64,
}

/// Waits until a connection succeeds; returns the client.
async fn wait_connect(
    args: &RecoveryArgs,
    server: &mut ServerProcess,
    deadline: Instant,
) -> Result<async_nats::Client> {
    loop {
        if server.exited()? {
            bail!("the server exited while starting (see --server-log)");
        }
        let attempt = async_nats::ConnectOptions::new()
            .name("natrix-bench-recovery")
            .connection_timeout(Duration::from_secs(1))
            .max_reconnects(Some(0))
            .connect(&args.server)
            .await;
        if let Ok(client) = attempt {
            return Ok(client);
        }
        if Instant::now() > deadline {
            bail!("the server did not accept a connection in time");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn run(args: &RecoveryArgs) -> Result<Vec<BenchResult>> {
    if args.count == 0 || args.in_flight == 0 {
        bail!("--count and --in-flight must be positive");
    }
    // 1. Start, fill, read back what is stored.
    let mut server = ServerProcess::start(args)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let probe = wait_connect(args, &mut server, deadline).await?;
    drop(probe);
    let (client, js) = connect_js(
        &args.server,
        "natrix-bench-recovery-fill",
        args.in_flight,
        Duration::from_secs(30),
    )
    .await?;
    let version = client.server_info().version;
    let stream = fresh_stream(&js, &args.stream, 1).await?;
    let payload = Bytes::from(vec![b'x'; args.size]);
    let bar = progress::bar(args.progress, Some(args.count), "fill");
    let filled = publish_window(&js, &payload, args.count, args.in_flight, &bar).await?;
    bar.finish_and_clear();
    let stored = stream
        .get_info()
        .await
        .context("reading stream info")?
        .state;
    if filled.acked != args.count || stored.messages != args.count {
        bail!(
            "filling: {} of {} publishes acknowledged, {} stored",
            filled.acked,
            args.count,
            stored.messages
        );
    }
    client
        .drain()
        .await
        .context("closing the fill connection")?;
    drop(js);

    // 2. Stop.
    let stop = server.stop(args.stop, Duration::from_secs(300)).await?;
    drop(server);

    // 3. Restart and time it.
    let mut server = ServerProcess::start(args)?;
    let start = Instant::now();
    let deadline = start + args.ready_timeout;
    let client = wait_connect(args, &mut server, deadline).await?;
    let listen = start.elapsed();
    let info_subject = format!("$JS.API.STREAM.INFO.{}", args.stream);
    let (recovered, recovered_bytes) = loop {
        if server.exited()? {
            bail!("the server exited while recovering (see --server-log)");
        }
        // Before recovery ends a server may not answer, answer "no responders" or report
        // the stream missing or partial: all mean "not yet".
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            client.request(info_subject.clone(), Bytes::new()),
        )
        .await;
        if let Ok(Ok(message)) = reply
            && let Ok(StreamInfoReply { state: Some(state) }) =
                serde_json::from_slice::<StreamInfoReply>(&message.payload)
            && state.messages >= stored.messages
        {
            break (state.messages, state.bytes);
        }
        if Instant::now() > deadline {
            bail!(
                "the restarted server did not report {} messages within {:?}",
                stored.messages,
                args.ready_timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let recovery = start.elapsed();
    drop(client);
    let _ = server.stop(StopMode::Term, Duration::from_secs(60)).await;

    let fill_s = filled.elapsed.as_secs_f64();
    Ok(vec![BenchResult {
        scenario: format!("js-recovery-{}", args.stop.name()),
        server: args.label.clone(),
        server_version: version,
        round: args.round,
        size: args.size,
        pubs: 1,
        subs: 0,
        msgs: args.count,
        expected: args.count,
        received: recovered,
        lost: args.count.saturating_sub(recovered),
        bytes: recovered_bytes,
        elapsed_s: recovery.as_secs_f64(),
        publish_elapsed_s: fill_s,
        publish_msgs_per_s: filled.acked as f64 / fill_s.max(1e-9),
        in_flight: Some(args.in_flight),
        recovery_s: Some(recovery.as_secs_f64()),
        listen_s: Some(listen.as_secs_f64()),
        stop_s: Some(stop.as_secs_f64()),
        stop: Some(args.stop.name().to_owned()),
        stream_bytes: Some(stored.bytes),
        client_cpu_s: own_cpu_seconds(),
        ..BenchResult::default()
    }])
}
