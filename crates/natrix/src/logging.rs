//! Process logging with nats-server's levels: INFO by default, `-D` adds DEBUG, `-V` adds the
//! protocol trace (TRACE events of target `natrix_server::trace`), `-DV` both. `-T=false` drops
//! timestamps; `-l file` appends to a file instead of stderr. `RUST_LOG`, when set, replaces
//! the level selection entirely.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::sync::Mutex;

use std::time::SystemTime;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::registry::LookupSpan;

use crate::options::LogConfig;

/// The target the server crate logs protocol lines under.
pub const PROTOCOL_TRACE_TARGET: &str = "natrix_server::trace";

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("unable to open log file '{}': {source}", path.display())]
    OpenLogFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid RUST_LOG filter {filter:?}: {reason}")]
    BadFilter { filter: String, reason: String },
    #[error("a global logger is already installed: {0}")]
    AlreadyInstalled(String),
}

/// The `EnvFilter` directives for a configuration (without `RUST_LOG`). openraft narrates every
/// vote and election at INFO; a node's log shows its warnings only, and its INFO with `-D`.
pub fn filter_directives(log: &LogConfig) -> String {
    let base = if log.debug {
        "debug,openraft=info"
    } else {
        "info,openraft=warn"
    };
    let trace = if log.trace { "trace" } else { "off" };
    format!("{base},{PROTOCOL_TRACE_TARGET}={trace}")
}

fn filter(log: &LogConfig) -> Result<EnvFilter, LoggingError> {
    let directives = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => env,
        _ => filter_directives(log),
    };
    EnvFilter::try_new(&directives).map_err(|err| LoggingError::BadFilter {
        filter: directives.clone(),
        reason: err.to_string(),
    })
}

/// Changes the installed subscriber's levels (`-D`, `-V`) at run time: a configuration reload.
pub struct LogLevels {
    reload: Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>,
}

impl LogLevels {
    /// Selects the levels of `log` (unless `RUST_LOG` selects them).
    pub fn apply(&self, log: &LogConfig) -> Result<(), LoggingError> {
        let filter = filter(log)?;
        (self.reload)(filter).map_err(LoggingError::AlreadyInstalled)
    }
}

/// Installs the global subscriber for the process.
pub fn init(log: &LogConfig) -> Result<LogLevels, LoggingError> {
    let filter = filter(log)?;
    let writer = match &log.log_file {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LoggingError::OpenLogFile {
                    path: path.clone(),
                    source,
                })?;
            BoxMakeWriter::new(Mutex::new(file))
        }
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .event_format(NatsLogFormat {
            pid: std::process::id(),
            logtime: log.logtime,
        })
        .with_filter_reloading();
    let handle = builder.reload_handle();
    builder
        .try_init()
        .map_err(|err| LoggingError::AlreadyInstalled(err.to_string()))?;
    Ok(LogLevels {
        reload: Box::new(move |filter| handle.reload(filter).map_err(|err| err.to_string())),
    })
}

/// nats-server's log line: `[pid] 2026/11/26 00:48:04.551939 [INF] message key=value`
/// (without the timestamp when `-T=false`), so operators' log tooling keeps working. Times are
/// UTC (nats-server's `logtime_utc`).
struct NatsLogFormat {
    pid: u32,
    logtime: bool,
}

impl<S, N> FormatEvent<S, N> for NatsLogFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: format::Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "[{}] ", self.pid)?;
        if self.logtime {
            write!(
                writer,
                "{} ",
                natrix_server::log_timestamp(SystemTime::now())
            )?;
        }
        write!(writer, "{} ", level_tag(*event.metadata().level()))?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// nats-server's three-letter level tags.
fn level_tag(level: Level) -> &'static str {
    match level {
        Level::ERROR => "[ERR]",
        Level::WARN => "[WRN]",
        Level::INFO => "[INF]",
        Level::DEBUG => "[DBG]",
        Level::TRACE => "[TRC]",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_tags_are_nats_servers() {
        assert_eq!(level_tag(Level::INFO), "[INF]");
        assert_eq!(level_tag(Level::DEBUG), "[DBG]");
        assert_eq!(level_tag(Level::TRACE), "[TRC]");
        assert_eq!(level_tag(Level::WARN), "[WRN]");
        assert_eq!(level_tag(Level::ERROR), "[ERR]");
    }

    #[test]
    fn levels_follow_nats_server_flags() {
        let mut log = LogConfig::default();
        assert_eq!(
            filter_directives(&log),
            "info,openraft=warn,natrix_server::trace=off"
        );
        log.debug = true;
        assert_eq!(
            filter_directives(&log),
            "debug,openraft=info,natrix_server::trace=off"
        );
        log.trace = true;
        assert_eq!(
            filter_directives(&log),
            "debug,openraft=info,natrix_server::trace=trace"
        );
        log.debug = false;
        assert_eq!(
            filter_directives(&log),
            "info,openraft=warn,natrix_server::trace=trace"
        );
    }
}
