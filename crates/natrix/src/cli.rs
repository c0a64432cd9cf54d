//! The command line, accepted the way nats-server (Go's `flag` package) accepts it: one or two
//! dashes for every flag (`-port 4222`, `--port=4222`), multi-letter short names (`-js`, `-sd`,
//! `-DV`), booleans with an optional `=value` (`-T=false`). [`normalize`] rewrites that into
//! `--long[=value]` form for clap; [`Cli::into_command`] merges it over the config file.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;
use natrix_conf::{Loader, Value};

use crate::compat;
use crate::options::{self, OptionsError, Settings};
use crate::signal_command::{self, SignalError, SignalRequest};

/// Every nats-server flag name (and alias) with the long name clap knows it by and whether it
/// takes a value.
const FLAGS: &[(&str, &str, bool)] = &[
    ("a", "addr", true),
    ("addr", "addr", true),
    ("net", "addr", true),
    ("p", "port", true),
    ("port", "port", true),
    ("n", "name", true),
    ("name", "name", true),
    ("server_name", "name", true),
    ("P", "pid", true),
    ("pid", "pid", true),
    ("m", "http_port", true),
    ("http_port", "http_port", true),
    ("ms", "https_port", true),
    ("https_port", "https_port", true),
    ("c", "config", true),
    ("config", "config", true),
    ("t", "test_config", false),
    ("sl", "signal", true),
    ("signal", "signal", true),
    ("client_advertise", "client_advertise", true),
    ("ports_file_dir", "ports_file_dir", true),
    ("l", "log", true),
    ("log", "log", true),
    ("log_file", "log", true),
    ("T", "logtime", false),
    ("logtime", "logtime", false),
    ("logtime_utc", "logtime_utc", false),
    ("s", "syslog", false),
    ("syslog", "syslog", false),
    ("r", "remote_syslog", true),
    ("remote_syslog", "remote_syslog", true),
    ("D", "debug", false),
    ("debug", "debug", false),
    ("V", "trace", false),
    ("trace", "trace", false),
    ("VV", "VV", false),
    ("DV", "DV", false),
    ("DVV", "DVV", false),
    ("log_size_limit", "log_size_limit", true),
    ("max_traced_msg_len", "max_traced_msg_len", true),
    ("js", "jetstream", false),
    ("jetstream", "jetstream", false),
    ("sd", "store_dir", true),
    ("store_dir", "store_dir", true),
    ("user", "user", true),
    ("pass", "pass", true),
    ("auth", "auth", true),
    ("tls", "tls", false),
    ("tlscert", "tlscert", true),
    ("tlskey", "tlskey", true),
    ("tlsverify", "tlsverify", false),
    ("tlscacert", "tlscacert", true),
    ("routes", "routes", true),
    ("cluster", "cluster", true),
    ("cluster_listen", "cluster", true),
    ("cluster_name", "cluster_name", true),
    ("no_advertise", "no_advertise", false),
    ("cluster_advertise", "cluster_advertise", true),
    ("connect_retries", "connect_retries", true),
    ("profile", "profile", true),
    ("max_payload", "max_payload", true),
    ("h", "help", false),
    ("help", "help", false),
    ("v", "version", false),
    ("version", "version", false),
    ("help_tls", "help_tls", false),
];

/// Rewrites a Go-style argv (program name first) into the `--long[=value]` form clap parses.
/// Unknown flags and stray words are passed on unchanged for clap to reject.
pub fn normalize<I, S>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut args = args.into_iter().map(Into::into);
    let mut out: Vec<OsString> = args.next().into_iter().collect();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            out.push(arg);
            out.extend(args.by_ref());
            break;
        }
        let Some(stripped) = text.strip_prefix("--").or_else(|| text.strip_prefix('-')) else {
            out.push(arg);
            continue;
        };
        let (name, inline) = match stripped.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (stripped, None),
        };
        let Some(&(_, long, takes_value)) = FLAGS.iter().find(|(n, _, _)| *n == name) else {
            // Spelled long so that clap names the whole flag, not its first letter.
            out.push(format!("--{stripped}").into());
            continue;
        };
        match (inline, takes_value) {
            (Some(value), _) => out.push(format!("--{long}={value}").into()),
            (None, false) => out.push(format!("--{long}").into()),
            (None, true) => match args.next() {
                // Joined with `=` so that values such as `-1` are not mistaken for flags.
                Some(value) => {
                    let mut joined = OsString::from(format!("--{long}="));
                    joined.push(value);
                    out.push(joined);
                }
                None => out.push(format!("--{long}").into()),
            },
        }
    }
    out
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value {s:?}")),
    }
}

/// nats-server's command line. Flags are given as `-x`, `-long` or `--long`; see `natrix-server -h`.
#[derive(Debug, Default, Parser)]
#[command(
    name = "natrix-server",
    about = "natrix: a NATS-compatible message broker (accepts nats-server's flags and config files)",
    disable_version_flag = true
)]
pub struct Cli {
    /// Bind to host address (default: 0.0.0.0) [-a, --addr, --net]
    #[arg(long = "addr", value_name = "host")]
    pub addr: Option<String>,
    /// Use port for clients (default: 4222; -1 for a random port) [-p]
    #[arg(long = "port", value_name = "port", allow_negative_numbers = true)]
    pub port: Option<i64>,
    /// Server name (default: the server id) [-n, --server_name]
    #[arg(long = "name", value_name = "server_name")]
    pub name: Option<String>,
    /// File to store PID [-P]
    #[arg(long = "pid", value_name = "file")]
    pub pid: Option<PathBuf>,
    /// Use port for http monitoring (-1 for a random port) [-m]
    #[arg(long = "http_port", value_name = "port", allow_negative_numbers = true)]
    pub http_port: Option<i64>,
    /// Use port for https monitoring, with the TLS certificate (-1 for a random port) [-ms]
    #[arg(
        long = "https_port",
        value_name = "port",
        allow_negative_numbers = true
    )]
    pub https_port: Option<i64>,
    /// Configuration file [-c]
    #[arg(long = "config", value_name = "file")]
    pub config: Option<PathBuf>,
    /// Test configuration and exit [-t]
    #[arg(long = "test_config", num_args = 0..=1, default_missing_value = "true", require_equals = true, value_parser = parse_go_bool)]
    pub test_config: Option<bool>,
    /// Send signal to natrix-server process (ldm, stop, quit, term, reload) [-sl]
    #[arg(long = "signal", value_name = "signal")]
    pub signal: Option<String>,
    /// Client URL to advertise to other servers
    #[arg(long = "client_advertise", value_name = "string")]
    pub client_advertise: Option<String>,
    /// Accepted and ignored
    #[arg(long = "ports_file_dir", value_name = "dir", hide = true)]
    pub ports_file_dir: Option<String>,
    /// File to redirect log output [-l]
    #[arg(long = "log", value_name = "file")]
    pub log: Option<PathBuf>,
    /// Timestamp log entries (default: true) [-T]
    #[arg(long = "logtime", num_args = 0..=1, default_missing_value = "true", require_equals = true, value_parser = parse_go_bool)]
    pub logtime: Option<bool>,
    /// Accepted and ignored
    #[arg(long = "logtime_utc", num_args = 0..=1, default_missing_value = "true", require_equals = true, value_parser = parse_go_bool, hide = true)]
    pub logtime_utc: Option<bool>,
    /// Accepted and ignored [-s]
    #[arg(long = "syslog", num_args = 0..=1, default_missing_value = "true", require_equals = true, value_parser = parse_go_bool, hide = true)]
    pub syslog: Option<bool>,
    /// Accepted and ignored [-r]
    #[arg(long = "remote_syslog", hide = true)]
    pub remote_syslog: Option<String>,
    /// Enable debugging output [-D]
    #[arg(long = "debug", num_args = 0..=1, default_missing_value = "true", require_equals = true, value_parser = parse_go_bool)]
    pub debug: Option<bool>,
    /// Trace the raw protocol [-V]
    #[arg(long = "trace", num_args = 0..=1, default_missing_value = "true", require_equals = true, value_parser = parse_go_bool)]
    pub trace: Option<bool>,
    /// Verbose trace (same as -V in natrix)
    #[arg(long = "VV", num_args = 0..=1, default_missing_value = "true", require_equals = true, value_parser = parse_go_bool)]
    pub trace_verbose: Option<bool>,
    /// Debug and trace
    #[arg(long = "DV", num_args = 0..=1, default_missing_value = "true", require_equals = true, value_parser = parse_go_bool)]
    pub debug_trace: Option<bool>,
    /// Debug and verbose trace
    #[arg(long = "DVV", num_args = 0..=1, default_missing_value = "true", require_equals = true, value_parser = parse_go_bool)]
    pub debug_trace_verbose: Option<bool>,
    /// Accepted and ignored
    #[arg(long = "log_size_limit", hide = true)]
    pub log_size_limit: Option<String>,
    /// Accepted and ignored
    #[arg(long = "max_traced_msg_len", hide = true)]
    pub max_traced_msg_len: Option<String>,
    /// Enable JetStream functionality [-js]
    #[arg(long = "jetstream", num_args = 0..=1, default_missing_value = "true", require_equals = true, value_parser = parse_go_bool)]
    pub jetstream: Option<bool>,
    /// Set the JetStream storage directory [-sd]
    #[arg(long = "store_dir", value_name = "dir")]
    pub store_dir: Option<PathBuf>,
    /// User required for connections
    #[arg(long = "user", value_name = "user")]
    pub user: Option<String>,
    /// Password required for connections
    #[arg(long = "pass", value_name = "password")]
    pub pass: Option<String>,
    /// Authorization token required for connections
    #[arg(long = "auth", value_name = "token")]
    pub auth: Option<String>,
    /// Enable TLS, do not verify clients (default: false)
    #[arg(long = "tls", num_args = 0..=1, default_missing_value = "true", require_equals = true, value_parser = parse_go_bool)]
    pub tls: Option<bool>,
    /// Server certificate file
    #[arg(long = "tlscert", value_name = "file")]
    pub tlscert: Option<String>,
    /// Private key for server certificate
    #[arg(long = "tlskey", value_name = "file")]
    pub tlskey: Option<String>,
    /// Enable TLS, verify client certificates
    #[arg(long = "tlsverify", num_args = 0..=1, default_missing_value = "true", require_equals = true, value_parser = parse_go_bool)]
    pub tlsverify: Option<bool>,
    /// Client certificate CA for verification
    #[arg(long = "tlscacert", value_name = "file")]
    pub tlscacert: Option<String>,
    /// Routes to solicit and connect, comma separated
    #[arg(long = "routes", value_name = "rurl-1, rurl-2")]
    pub routes: Option<String>,
    /// Cluster URL for solicited routes [--cluster_listen]
    #[arg(long = "cluster", value_name = "cluster-url")]
    pub cluster: Option<String>,
    /// Cluster name
    #[arg(long = "cluster_name", value_name = "string")]
    pub cluster_name: Option<String>,
    /// Accepted and ignored
    #[arg(long = "no_advertise", num_args = 0..=1, default_missing_value = "true", require_equals = true, value_parser = parse_go_bool, hide = true)]
    pub no_advertise: Option<bool>,
    /// Cluster URL to advertise to other servers
    #[arg(long = "cluster_advertise", value_name = "string")]
    pub cluster_advertise: Option<String>,
    /// Accepted and ignored
    #[arg(long = "connect_retries", hide = true)]
    pub connect_retries: Option<String>,
    /// Accepted and ignored
    #[arg(long = "profile", hide = true)]
    pub profile: Option<String>,
    /// Maximum message payload, e.g. 1MB (natrix extension; nats-server sets it in the config file)
    #[arg(long = "max_payload", value_name = "size")]
    pub max_payload: Option<String>,
    /// Show version [-v]
    #[arg(long = "version", num_args = 0..=1, default_missing_value = "true", require_equals = true, value_parser = parse_go_bool)]
    pub version: Option<bool>,
    /// Not supported by natrix yet
    #[arg(long = "help_tls", num_args = 0..=1, default_missing_value = "true", require_equals = true, value_parser = parse_go_bool, hide = true)]
    pub help_tls: Option<bool>,
}

/// What the process should do.
#[derive(Debug)]
pub enum Command {
    /// Print the version and exit.
    Version,
    /// The configuration is valid; say so and exit (`-t`).
    TestConfig(Box<Settings>),
    /// Start the server.
    Run(Box<Settings>),
    /// Send a running server a signal (`-sl/--signal`) and exit.
    Signal(SignalRequest),
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("flag --{0} is not supported by natrix yet")]
    Unsupported(String),
    #[error("invalid value {value:?} for --{flag}: {reason}")]
    InvalidValue {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error(transparent)]
    Signal(#[from] SignalError),
}

impl Cli {
    /// Parses a nats-server style argv (program name first).
    pub fn parse_args<I, S>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Cli::try_parse_from(normalize(args))
    }

    /// Reads the config file (if any) and lays the flags over it, as nats-server does.
    pub fn into_command(self, loader: &Loader) -> Result<Command, CliError> {
        if self.version == Some(true) {
            return Ok(Command::Version);
        }
        self.reject_unsupported()?;
        // As nats-server: the signal is sent before any configuration file is read.
        if let Some(value) = &self.signal {
            return Ok(Command::Signal(signal_command::parse(value)?));
        }
        let mut settings = Settings::default();
        if let Some(path) = &self.config {
            settings.load_file(path, loader)?;
        }
        self.apply(&mut settings)?;
        settings.finish()?;
        if self.test_config == Some(true) {
            return Ok(Command::TestConfig(Box::new(settings)));
        }
        Ok(Command::Run(Box::new(settings)))
    }

    fn reject_unsupported(&self) -> Result<(), CliError> {
        let given = [("help_tls", self.help_tls == Some(true))];
        for (flag, set) in given {
            debug_assert!(compat::UNSUPPORTED_FLAGS.contains(&flag));
            if set {
                return Err(CliError::Unsupported(flag.to_string()));
            }
        }
        Ok(())
    }

    fn apply(&self, s: &mut Settings) -> Result<(), CliError> {
        let ignored = [
            ("ports_file_dir", self.ports_file_dir.is_some()),
            ("logtime_utc", self.logtime_utc.is_some()),
            ("syslog", self.syslog.is_some()),
            ("remote_syslog", self.remote_syslog.is_some()),
            ("log_size_limit", self.log_size_limit.is_some()),
            ("max_traced_msg_len", self.max_traced_msg_len.is_some()),
            ("no_advertise", self.no_advertise.is_some()),
            ("connect_retries", self.connect_retries.is_some()),
            ("profile", self.profile.is_some()),
        ];
        for (flag, set) in ignored {
            debug_assert!(compat::IGNORED_FLAGS.contains(&flag));
            if set {
                s.warnings.push(format!(
                    "flag --{flag} is not implemented by natrix and is ignored"
                ));
            }
        }

        if let Some(host) = &self.addr {
            s.server.host = host.clone();
        }
        if let Some(port) = self.port {
            let port = options::port_from_int(port, Some(4222)).map_err(|reason| {
                CliError::InvalidValue {
                    flag: "port",
                    value: port.to_string(),
                    reason,
                }
            })?;
            s.server.port = port.unwrap_or(4222);
        }
        if let Some(name) = &self.name {
            if name.contains(' ') {
                return Err(CliError::InvalidValue {
                    flag: "name",
                    value: name.clone(),
                    reason: "server name cannot contain spaces".into(),
                });
            }
            s.server.server_name = Some(name.clone());
        }
        if let Some(pid) = &self.pid {
            s.pid_file = Some(pid.clone());
        }
        if let Some(port) = self.http_port {
            s.server.http_port =
                options::port_from_int(port, None).map_err(|reason| CliError::InvalidValue {
                    flag: "http_port",
                    value: port.to_string(),
                    reason,
                })?;
        }
        if let Some(port) = self.https_port {
            s.server.https_port =
                options::port_from_int(port, None).map_err(|reason| CliError::InvalidValue {
                    flag: "https_port",
                    value: port.to_string(),
                    reason,
                })?;
        }
        if let Some(advertise) = &self.client_advertise {
            s.server.client_advertise = Some(advertise.clone());
        }
        if let Some(log) = &self.log {
            s.log.log_file = Some(log.clone());
        }
        if let Some(logtime) = self.logtime {
            s.log.logtime = logtime;
        }
        if let Some(debug) = self.debug {
            s.log.debug = debug;
        }
        if let Some(trace) = self.trace.or(self.trace_verbose) {
            s.log.trace = trace;
        }
        if let Some(both) = self.debug_trace.or(self.debug_trace_verbose) {
            s.log.debug = both;
            s.log.trace = both;
        }
        if let Some(enabled) = self.jetstream {
            s.jetstream_enabled = enabled;
        }
        if let Some(dir) = &self.store_dir {
            s.jetstream.store_dir = Some(dir.clone());
        }
        if let Some(user) = &self.user {
            s.server.auth.user = Some(user.clone());
        }
        if let Some(pass) = &self.pass {
            s.server.auth.password = Some(pass.clone());
        }
        if let Some(token) = &self.auth {
            s.server.auth.token = Some(token.clone());
        }
        if let Some(size) = &self.max_payload {
            s.server.limits.max_payload = parse_max_payload(size)?;
        }
        s.override_tls(&options::TlsFlags {
            tls: self.tls,
            cert: self.tlscert.clone(),
            key: self.tlskey.clone(),
            verify: self.tlsverify,
            ca: self.tlscacert.clone(),
        })
        .map_err(CliError::Usage)?;
        self.apply_cluster(s)
    }

    fn apply_cluster(&self, s: &mut Settings) -> Result<(), CliError> {
        if self.cluster.is_none()
            && self.routes.is_none()
            && self.cluster_name.is_none()
            && self.cluster_advertise.is_none()
        {
            return Ok(());
        }
        let cluster = s
            .server
            .cluster
            .get_or_insert_with(options::default_cluster);
        if let Some(url) = &self.cluster {
            let invalid = |reason: String| CliError::InvalidValue {
                flag: "cluster",
                value: url.clone(),
                reason,
            };
            let parsed = options::parse_host_url(url).map_err(invalid)?;
            if parsed.scheme != "nats" && parsed.scheme != "nats-route" {
                return Err(invalid(format!("unsupported scheme {:?}", parsed.scheme)));
            }
            cluster.host = parsed.host;
            cluster.port = parsed.port.unwrap_or(options::DEFAULT_CLUSTER_PORT);
        }
        if let Some(routes) = &self.routes {
            cluster.routes.clear();
            for url in routes.split(',').map(str::trim).filter(|u| !u.is_empty()) {
                options::validate_route_url(url).map_err(|reason| CliError::InvalidValue {
                    flag: "routes",
                    value: url.to_string(),
                    reason,
                })?;
                cluster.routes.push(url.to_string());
            }
        }
        if let Some(name) = &self.cluster_name {
            if name.contains(' ') {
                return Err(CliError::InvalidValue {
                    flag: "cluster_name",
                    value: name.clone(),
                    reason: "cluster name cannot contain spaces".into(),
                });
            }
            cluster.name = Some(name.clone());
        }
        if let Some(advertise) = &self.cluster_advertise {
            cluster.advertise = Some(advertise.clone());
        }
        Ok(())
    }
}

/// `--max_payload 8MB`: a size written as in the config file, positive and below 2 GiB.
fn parse_max_payload(text: &str) -> Result<u32, CliError> {
    let invalid = |reason: &str| CliError::InvalidValue {
        flag: "max_payload",
        value: text.to_string(),
        reason: reason.into(),
    };
    let map = Loader::with_env(|_| None)
        .parse_str(&format!("v: {text}"), "--max_payload", None)
        .map_err(|_| invalid("expected a size such as 1048576, 64KB or 8MB"))?;
    match map.get("v").map(|e| &e.value.value) {
        Some(Value::Int(n)) if *n > 0 && *n <= i64::from(i32::MAX) => Ok(*n as u32),
        Some(Value::Int(_)) => Err(invalid("must be between 1 and 2147483647")),
        _ => Err(invalid("expected a size such as 1048576, 64KB or 8MB")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize(std::iter::once("natrix-server").chain(args.iter().copied()))
            .into_iter()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn go_style_flags_become_long_flags() {
        assert_eq!(norm(&["-p", "4333"]), ["--port=4333"]);
        assert_eq!(norm(&["-port", "-1"]), ["--port=-1"]);
        assert_eq!(norm(&["--port=4222"]), ["--port=4222"]);
        assert_eq!(
            norm(&["-js", "-sd", "/tmp/x"]),
            ["--jetstream", "--store_dir=/tmp/x"]
        );
        assert_eq!(norm(&["-DV", "-T=false"]), ["--DV", "--logtime=false"]);
        assert_eq!(norm(&["--net", "127.0.0.1"]), ["--addr=127.0.0.1"]);
        assert_eq!(
            norm(&["-cluster_listen", "nats://a:1"]),
            ["--cluster=nats://a:1"]
        );
    }

    #[test]
    fn unknown_flags_and_words_are_left_for_clap_to_reject() {
        assert_eq!(
            norm(&["-x", "word", "--", "-p"]),
            ["--x", "word", "--", "-p"]
        );
        assert!(Cli::parse_args(["natrix-server", "-bogus"]).is_err());
        assert!(Cli::parse_args(["natrix-server", "stray"]).is_err());
    }

    #[test]
    fn booleans_take_go_values() {
        let cli = Cli::parse_args(["natrix-server", "-T=false", "-D=0", "-V=t"]).unwrap();
        assert_eq!(
            (cli.logtime, cli.debug, cli.trace),
            (Some(false), Some(false), Some(true))
        );
        assert!(Cli::parse_args(["natrix-server", "-T=maybe"]).is_err());
    }

    #[test]
    fn max_payload_takes_sizes() {
        assert_eq!(parse_max_payload("8MB").unwrap(), 8 << 20);
        assert_eq!(parse_max_payload("1024").unwrap(), 1024);
        assert!(parse_max_payload("3GB").is_err());
        assert!(parse_max_payload("lots").is_err());
        assert!(parse_max_payload("-1").is_err());
    }
}
