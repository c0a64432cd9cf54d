//! Process logging with nats-server's levels: INFO by default, `-D` adds DEBUG, `-V` adds the
//! protocol trace (TRACE events of target `natrix_server::trace`), `-DV` both. `-T=false` drops
//! timestamps; `-l file` appends to a file instead of stderr. `RUST_LOG`, when set, replaces
//! the level selection entirely.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

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

/// The `EnvFilter` directives for a configuration (without `RUST_LOG`).
pub fn filter_directives(log: &LogConfig) -> String {
    let base = if log.debug { "debug" } else { "info" };
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

/// Installs the global subscriber for the process.
pub fn init(log: &LogConfig) -> Result<(), LoggingError> {
    let filter = filter(log)?;
    let (writer, ansi) = match &log.log_file {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LoggingError::OpenLogFile {
                    path: path.clone(),
                    source,
                })?;
            (BoxMakeWriter::new(Mutex::new(file)), false)
        }
        None => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
    };
    // Like nats-server, plain lines by default; with -D/-V the module is worth seeing.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(log.debug || log.trace);
    let installed = if log.logtime {
        builder.try_init()
    } else {
        builder.without_time().try_init()
    };
    installed.map_err(|err| LoggingError::AlreadyInstalled(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_nats_server_flags() {
        let mut log = LogConfig::default();
        assert_eq!(filter_directives(&log), "info,natrix_server::trace=off");
        log.debug = true;
        assert_eq!(filter_directives(&log), "debug,natrix_server::trace=off");
        log.trace = true;
        assert_eq!(filter_directives(&log), "debug,natrix_server::trace=trace");
        log.debug = false;
        assert_eq!(filter_directives(&log), "info,natrix_server::trace=trace");
    }
}
