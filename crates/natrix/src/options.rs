//! Maps a parsed configuration file onto [`Settings`]: the typed `ServerConfig` plus what only the
//! binary needs (logging, pid file). Option names, aliases, value forms and error wording follow
//! nats-server's `server/opts.go`; every mistake is reported with its file, line and column, and
//! all mistakes of a file are reported together.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use natrix_conf::{
    ConfError, DurationSource, Entry, Loader, Map, Pos, Value, parse_duration, value_as_duration,
};
use natrix_server::{ClusterConfig, JetStreamConfig, ServerConfig};

use crate::compat::{self, Support};

mod accounts;
mod auth;
mod tls;

pub use accounts::AccountSettings;

pub use tls::TlsFlags;

/// nats-server's `DEFAULT_PORT`, used when `port` is 0.
const DEFAULT_PORT: u16 = 4222;
/// nats-server's default route port.
pub const DEFAULT_CLUSTER_PORT: u16 = 6222;
/// nats-server warns about payloads above this.
const LARGE_PAYLOAD_WARNING: u32 = 8 * 1024 * 1024;
/// nats-server's minimum `lame_duck_duration`.
const MIN_LAME_DUCK_DURATION: Duration = Duration::from_secs(30);

/// How the process logs (nats-server's `-D`, `-V`, `-T`, `-l` and their config options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub debug: bool,
    pub trace: bool,
    pub logtime: bool,
    pub log_file: Option<PathBuf>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            debug: false,
            trace: false,
            logtime: true,
            log_file: None,
        }
    }
}

/// Everything the binary starts from: built from defaults, then the config file, then the
/// command line, then [`Settings::finish`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// The node's configuration; `jetstream` is filled in by [`Settings::finish`].
    pub server: ServerConfig,
    /// `jetstream` enabled (`-js`, `jetstream: enabled`, a `jetstream {}` block).
    pub jetstream_enabled: bool,
    /// JetStream settings, kept even while disabled because `store_dir` may come on its own.
    pub jetstream: JetStreamConfig,
    pub log: LogConfig,
    /// `pid_file` / `-P`.
    pub pid_file: Option<PathBuf>,
    /// Messages to log at WARN once logging is set up.
    pub warnings: Vec<String>,
    /// `authorization { timeout }` was given: with TLS the default is then not nats-server's
    /// TLS timeout plus a second.
    pub auth_timeout_set: bool,
    /// The `accounts` block as written; [`Settings::finish`] makes the one account natrix
    /// serves of it.
    pub accounts: Vec<AccountSettings>,
    /// `system_account`: natrix has no system account; this one is left out of `accounts`.
    pub system_account: Option<String>,
}

/// One mistake in the configuration, at a position when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub pos: Option<Pos>,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pos {
            Some(pos) => write!(f, "{pos}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error(transparent)]
    Parse(#[from] ConfError),
    #[error("{}", join_lines(.0))]
    Invalid(Vec<FieldError>),
}

fn join_lines(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl Settings {
    /// Reads the configuration file at `path` into these settings.
    pub fn load_file(&mut self, path: &Path, loader: &Loader) -> Result<(), OptionsError> {
        let map = loader.parse_file(path)?;
        self.server.config_file = Some(path.to_path_buf());
        self.apply_map(&map)
    }

    /// Applies the top level of a parsed configuration.
    pub fn apply_map(&mut self, map: &Map) -> Result<(), OptionsError> {
        let mut m = Mapper {
            settings: self,
            errors: Vec::new(),
        };
        for entry in map {
            m.top_level(entry);
        }
        if m.errors.is_empty() {
            Ok(())
        } else {
            Err(OptionsError::Invalid(m.errors))
        }
    }

    /// Checks what spans several options and settles JetStream; call after the command line
    /// has been applied.
    pub fn finish(&mut self) -> Result<(), OptionsError> {
        let mut errors = Vec::new();
        let limits = &self.server.limits;
        if u64::from(limits.max_payload) > limits.max_pending {
            errors.push(FieldError {
                pos: None,
                message: format!(
                    "max_payload ({}) cannot be higher than max_pending ({})",
                    limits.max_payload, limits.max_pending
                ),
            });
        } else if limits.max_payload > LARGE_PAYLOAD_WARNING {
            self.warnings.push("Maximum payloads over 8.00 MB are generally discouraged and could lead to poor performance".into());
        }
        self.finish_account(&mut errors);
        let auth = &self.server.auth;
        if (auth.user.is_some() || auth.password.is_some()) && auth.token.is_some() {
            errors.push(FieldError {
                pos: None,
                message: "Cannot have a user/pass and token".into(),
            });
        }
        if auth.password.is_some() && auth.user.is_none() {
            errors.push(FieldError {
                pos: None,
                message: "a password needs a user".into(),
            });
        }
        if !auth.users.is_empty() {
            if auth.user.is_some() {
                errors.push(FieldError {
                    pos: None,
                    message: "Can not have a single user/pass and a users array".into(),
                });
            }
            if auth.token.is_some() {
                errors.push(FieldError {
                    pos: None,
                    message: "Can not have a token and a users array".into(),
                });
            }
        }
        if let Err(err) = natrix_server::check_auth_config(auth) {
            errors.push(FieldError {
                pos: None,
                message: err.to_string(),
            });
        }
        self.finish_tls(&mut errors);
        if !errors.is_empty() {
            return Err(OptionsError::Invalid(errors));
        }
        self.server.jetstream = self.jetstream_enabled.then(|| self.jetstream.clone());
        Ok(())
    }
}

/// Applies entries to settings, collecting every error.
struct Mapper<'a> {
    settings: &'a mut Settings,
    errors: Vec<FieldError>,
}

impl Mapper<'_> {
    fn error(&mut self, entry: &Entry, message: impl Into<String>) {
        self.errors.push(FieldError {
            pos: Some(entry.key_pos.clone()),
            message: message.into(),
        });
    }

    fn wrong_type(&mut self, entry: &Entry, expected: &str) {
        let got = entry.value.value.type_name();
        self.error(
            entry,
            format!(
                "invalid value for \"{}\": expected {expected}, got {got}",
                entry.key
            ),
        );
    }

    fn unknown(&mut self, entry: &Entry) {
        // A key used as `$name` elsewhere is a variable definition, not an option.
        if !entry.is_used_variable() {
            self.error(entry, format!("unknown field \"{}\"", entry.key));
        }
    }

    fn unsupported_or_ignored(&mut self, entry: &Entry, support: Support) {
        match support {
            Support::Unsupported => self.error(
                entry,
                format!("\"{}\" is not supported by natrix yet", entry.key),
            ),
            Support::Ignored => self.settings.warnings.push(format!(
                "{}: \"{}\" is not implemented by natrix and is ignored",
                entry.key_pos, entry.key
            )),
        }
    }

    fn string(&mut self, entry: &Entry) -> Option<String> {
        match &entry.value.value {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.wrong_type(entry, "a string");
                None
            }
        }
    }

    fn bool(&mut self, entry: &Entry) -> Option<bool> {
        match entry.value.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.wrong_type(entry, "a boolean");
                None
            }
        }
    }

    fn int(&mut self, entry: &Entry) -> Option<i64> {
        match entry.value.value {
            Value::Int(i) => Some(i),
            _ => {
                self.wrong_type(entry, "an integer");
                None
            }
        }
    }

    /// A non-negative integer that fits `T`.
    fn count<T: TryFrom<i64>>(&mut self, entry: &Entry) -> Option<T> {
        let n = self.int(entry)?;
        if n < 0 {
            self.error(entry, format!("{} value can not be negative", entry.key));
            return None;
        }
        match T::try_from(n) {
            Ok(v) => Some(v),
            Err(_) => {
                self.error(entry, format!("{} value is too big", entry.key));
                None
            }
        }
    }

    /// `ping_interval`-style durations: a Go duration string or (deprecated) seconds.
    fn duration(&mut self, entry: &Entry) -> Option<Duration> {
        match value_as_duration(&entry.value.value) {
            Ok((d, DurationSource::Text)) => Some(d),
            Ok((d, DurationSource::Seconds)) => {
                self.settings.warnings.push(format!(
                    "{}: invalid use of field \"{}\": {} should be converted to a duration",
                    entry.key_pos, entry.key, entry.key
                ));
                Some(d)
            }
            Err(err) => {
                self.error(entry, format!("error parsing {}: {err}", entry.key));
                None
            }
        }
    }

    /// `lame_duck_*`-style durations: strings only, as in nats-server.
    fn duration_string(&mut self, entry: &Entry) -> Option<(Duration, String)> {
        let text = self.string(entry)?;
        match parse_duration(&text) {
            Ok(d) => Some((d, text)),
            Err(err) => {
                self.error(entry, format!("error parsing {}: {err}", entry.key));
                None
            }
        }
    }

    /// A port as nats-server reads one: `-1` picks a random port (our 0).
    fn port(&mut self, entry: &Entry, zero_means: Option<u16>) -> Option<Option<u16>> {
        let n = self.int(entry)?;
        match port_from_int(n, zero_means) {
            Ok(p) => Some(p),
            Err(message) => {
                self.error(entry, message);
                None
            }
        }
    }

    /// `listen`-style values: a port, or `host:port`.
    fn listen(&mut self, entry: &Entry) -> Option<(Option<String>, i64)> {
        match &entry.value.value {
            Value::Int(port) => Some((None, *port)),
            Value::String(s) => match split_host_port(s) {
                Some((host, port)) => Some((Some(host), port)),
                None => {
                    self.error(entry, format!("could not parse address string {s:?}"));
                    None
                }
            },
            other => {
                let got = other.type_name();
                self.error(entry, format!("expected port or host:port, got {got}"));
                None
            }
        }
    }

    fn map<'m>(&mut self, entry: &'m Entry) -> Option<&'m Map> {
        match &entry.value.value {
            Value::Map(m) => Some(m),
            _ => {
                self.wrong_type(entry, "a map");
                None
            }
        }
    }

    fn top_level(&mut self, entry: &Entry) {
        let key = entry.key.to_ascii_lowercase();
        match key.as_str() {
            "listen" => {
                if let Some((host, port)) = self.listen(entry) {
                    if let Some(host) = host {
                        self.settings.server.host = host;
                    }
                    match port_from_int(port, Some(DEFAULT_PORT)) {
                        Ok(port) => self.settings.server.port = port.unwrap_or(DEFAULT_PORT),
                        Err(message) => self.error(entry, message),
                    }
                }
            }
            "port" => {
                if let Some(port) = self.port(entry, Some(DEFAULT_PORT)) {
                    self.settings.server.port = port.unwrap_or(DEFAULT_PORT);
                }
            }
            "host" | "net" => {
                if let Some(host) = self.string(entry) {
                    self.settings.server.host = host;
                }
            }
            "server_name" => {
                if let Some(name) = self.string(entry) {
                    if name.contains(' ') {
                        self.error(entry, "server name cannot contain spaces");
                    } else {
                        self.settings.server.server_name = Some(name);
                    }
                }
            }
            "client_advertise" => {
                if let Some(advertise) = self.string(entry) {
                    self.settings.server.client_advertise = Some(advertise);
                }
            }
            "http" => {
                if let Some((host, port)) = self.listen(entry) {
                    if host.is_some() {
                        self.settings.server.http_host = host;
                    }
                    match port_from_int(port, None) {
                        Ok(port) => self.settings.server.http_port = port,
                        Err(message) => self.error(entry, message),
                    }
                }
            }
            "http_port" | "monitor_port" => {
                if let Some(port) = self.port(entry, None) {
                    self.settings.server.http_port = port;
                }
            }
            "https" => {
                if let Some((host, port)) = self.listen(entry) {
                    if host.is_some() {
                        self.settings.server.http_host = host;
                    }
                    match port_from_int(port, None) {
                        Ok(port) => self.settings.server.https_port = port,
                        Err(message) => self.error(entry, message),
                    }
                }
            }
            "https_port" => {
                if let Some(port) = self.port(entry, None) {
                    self.settings.server.https_port = port;
                }
            }
            // natrix extension: nats-server only sets the monitoring host through `http`.
            "http_host" => {
                if let Some(host) = self.string(entry) {
                    self.settings.server.http_host = Some(host);
                }
            }
            "logfile" | "log_file" => {
                if let Some(file) = self.string(entry) {
                    self.settings.log.log_file = Some(PathBuf::from(file));
                }
            }
            "logtime" => {
                if let Some(b) = self.bool(entry) {
                    self.settings.log.logtime = b;
                }
            }
            "debug" => {
                if let Some(b) = self.bool(entry) {
                    self.settings.log.debug = b;
                }
            }
            "trace" | "trace_verbose" => {
                if let Some(b) = self.bool(entry) {
                    self.settings.log.trace = b;
                }
            }
            "pidfile" | "pid_file" => {
                if let Some(file) = self.string(entry) {
                    self.settings.pid_file = Some(PathBuf::from(file));
                }
            }
            "max_payload" => {
                if let Some(n) = self.max_i32(entry) {
                    self.settings.server.limits.max_payload = n;
                }
            }
            "max_control_line" => {
                if let Some(n) = self.max_i32(entry) {
                    self.settings.server.limits.max_control_line = n;
                }
            }
            "max_pending" => {
                if let Some(n) = self.count::<u64>(entry) {
                    self.settings.server.limits.max_pending = n;
                }
            }
            "max_connections" | "max_conn" => {
                // nats-server treats 0 as "use the default".
                if let Some(n) = self.count::<u32>(entry) {
                    self.settings.server.limits.max_connections = if n == 0 {
                        natrix_server::Limits::default().max_connections
                    } else {
                        n
                    };
                }
            }
            "max_subscriptions" | "max_subs" => {
                if let Some(n) = self.count::<u32>(entry) {
                    self.settings.server.limits.max_subscriptions = n;
                }
            }
            "ping_interval" => {
                if let Some(d) = self.duration(entry) {
                    self.settings.server.limits.ping_interval = if d.is_zero() {
                        natrix_server::Limits::default().ping_interval
                    } else {
                        d
                    };
                }
            }
            "ping_max" => {
                if let Some(n) = self.count::<u32>(entry) {
                    self.settings.server.limits.ping_max = if n == 0 {
                        natrix_server::Limits::default().ping_max
                    } else {
                        n
                    };
                }
            }
            "write_deadline" => {
                if let Some(d) = self.duration(entry) {
                    self.settings.server.limits.write_deadline = if d.is_zero() {
                        natrix_server::Limits::default().write_deadline
                    } else {
                        d
                    };
                }
            }
            "lame_duck_duration" => {
                if let Some((d, text)) = self.duration_string(entry) {
                    if d < MIN_LAME_DUCK_DURATION {
                        self.error(
                            entry,
                            format!("invalid lame_duck_duration of {text}, minimum is 30 seconds"),
                        );
                    } else {
                        self.settings.server.lame_duck_duration = d;
                    }
                }
            }
            "lame_duck_grace_period" => {
                if let Some((d, _)) = self.duration_string(entry) {
                    self.settings.server.lame_duck_grace_period = d;
                }
            }
            "server_tags" => self.server_tags(entry),
            "authorization" => self.authorization(entry),
            "no_auth_user" => {
                if let Some(user) = self.string(entry) {
                    self.settings.server.auth.no_auth_user = Some(user);
                }
            }
            "jetstream" => self.jetstream(entry),
            "accounts" => self.accounts(entry),
            "system_account" | "system" => {
                if let Some(name) = self.string(entry) {
                    self.settings.system_account = Some(name);
                }
            }
            "store_dir" | "storedir" => {
                if let Some(dir) = self.string(entry) {
                    self.store_dir(entry, dir);
                }
            }
            "cluster" => self.cluster(entry),
            "tls" => self.settings.server.tls = self.tls(entry, tls::TlsBlock::Client),
            _ => match compat::top_level(&key) {
                Some(support) => self.unsupported_or_ignored(entry, support),
                None => self.unknown(entry),
            },
        }
    }

    /// `max_payload`/`max_control_line`: positive and below 2 GiB, as nats-server's int32.
    fn max_i32(&mut self, entry: &Entry) -> Option<u32> {
        let n = self.int(entry)?;
        if n > i64::from(i32::MAX) {
            self.error(entry, format!("{} value is too big", entry.key));
            return None;
        }
        match u32::try_from(n) {
            Ok(v) if v > 0 => Some(v),
            _ => {
                self.error(entry, format!("{} value must be positive", entry.key));
                None
            }
        }
    }

    fn server_tags(&mut self, entry: &Entry) {
        match &entry.value.value {
            Value::String(tag) => self.settings.server.tags.push(tag.clone()),
            Value::Array(items) => {
                for item in items {
                    match &item.value {
                        Value::String(tag) => self.settings.server.tags.push(tag.clone()),
                        other => {
                            let got = other.type_name();
                            self.errors.push(FieldError {
                                pos: Some(item.pos.clone()),
                                message: format!("error parsing tags: unsupported type {got} where string is expected"),
                            });
                        }
                    }
                }
            }
            _ => self.wrong_type(entry, "a string or an array of strings"),
        }
    }

    fn authorization(&mut self, entry: &Entry) {
        let Some(map) = self.map(entry) else { return };
        for e in map {
            let key = e.key.to_ascii_lowercase();
            match key.as_str() {
                "user" | "username" => {
                    if let Some(user) = self.string(e) {
                        self.settings.server.auth.user = Some(user);
                    }
                }
                "pass" | "password" => {
                    if let Some(password) = self.string(e) {
                        self.settings.server.auth.password = Some(password);
                    }
                }
                "token" => {
                    if let Some(token) = self.string(e) {
                        self.settings.server.auth.token = Some(token);
                    }
                }
                "users" => {
                    if let Some(users) = self.users(e) {
                        self.settings.server.auth.users = users;
                    }
                }
                // As nats-server: `permissions` here are the users' defaults too.
                "default_permission" | "default_permissions" | "permission" | "permissions" => {
                    if let Some(permissions) = self.permissions(e) {
                        self.settings.server.auth.default_permissions = Some(permissions);
                    }
                }
                // Seconds, integer or fractional.
                "timeout" => {
                    let secs = match e.value.value {
                        Value::Int(i) => i as f64,
                        Value::Float(f) => f,
                        _ => {
                            self.wrong_type(e, "a number of seconds");
                            continue;
                        }
                    };
                    match Duration::try_from_secs_f64(secs) {
                        Ok(d) => {
                            self.settings.server.limits.auth_timeout = d;
                            self.settings.auth_timeout_set = !d.is_zero();
                        }
                        Err(_) => self.error(
                            e,
                            "authorization timeout must be a non-negative number of seconds",
                        ),
                    }
                }
                _ => match compat::authorization(&key) {
                    Some(support) => self.unsupported_or_ignored(e, support),
                    None => self.unknown(e),
                },
            }
        }
    }

    fn store_dir(&mut self, entry: &Entry, dir: String) {
        if self.settings.jetstream.store_dir.is_some() {
            self.error(entry, "Duplicate 'store_dir' configuration");
        } else {
            self.settings.jetstream.store_dir = Some(PathBuf::from(dir));
        }
    }

    fn jetstream(&mut self, entry: &Entry) {
        match &entry.value.value {
            Value::Bool(enabled) => self.settings.jetstream_enabled = *enabled,
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "enabled" | "enable" => self.settings.jetstream_enabled = true,
                "disabled" | "disable" => self.settings.jetstream_enabled = false,
                _ => self.error(
                    entry,
                    format!("Expected 'enabled' or 'disabled' for string value, got '{s}'"),
                ),
            },
            Value::Map(map) => {
                let mut enabled = true;
                for e in map {
                    let key = e.key.to_ascii_lowercase();
                    match key.as_str() {
                        "store" | "store_dir" | "storedir" => {
                            if let Some(dir) = self.string(e) {
                                self.store_dir(e, dir);
                            }
                        }
                        "max_memory_store" | "max_mem_store" | "max_mem" => {
                            if let Some(size) = self.storage_size(e) {
                                self.settings.jetstream.max_memory_store = Some(size);
                            }
                        }
                        "max_file_store" | "max_file" => {
                            if let Some(size) = self.storage_size(e) {
                                self.settings.jetstream.max_file_store = Some(size);
                            }
                        }
                        "domain" => {
                            if let Some(domain) = self.string(e) {
                                self.settings.jetstream.domain = Some(domain);
                            }
                        }
                        // nats-server 2.10's option: "always" or a duration. natrix defaults
                        // to "always" (fsync before every ack), nats-server to 2 minutes.
                        "sync_interval" | "sync" => match &e.value.value {
                            Value::String(s) if s.eq_ignore_ascii_case("always") => {
                                self.settings.jetstream.sync_interval = None;
                            }
                            _ => {
                                if let Some(d) = self.duration(e) {
                                    self.settings.jetstream.sync_interval =
                                        (!d.is_zero()).then_some(d);
                                }
                            }
                        },
                        "enable" | "enabled" => {
                            if let Some(b) = self.bool(e) {
                                enabled = b;
                            }
                        }
                        // natrix's own: how often a stream group snapshots and compacts its
                        // Raft log (entries); fault tests set it low to force snapshot installs.
                        "raft_snapshot_every" => match self.count::<u64>(e) {
                            Some(0) => self.error(e, "raft_snapshot_every must be at least 1"),
                            Some(n) => self.settings.jetstream.raft_snapshot_every = Some(n),
                            None => {}
                        },
                        _ => match compat::jetstream(&key) {
                            Some(support) => self.unsupported_or_ignored(e, support),
                            None => self.unknown(e),
                        },
                    }
                }
                self.settings.jetstream_enabled = enabled;
            }
            other => {
                let got = other.type_name();
                self.error(
                    entry,
                    format!("Expected map, bool or string to define JetStream, got {got}"),
                );
            }
        }
    }

    /// JetStream sizes: an integer (with the parser's suffixes) or a string ending in K, M, G or T
    /// (powers of 1024), as nats-server's `getStorageSize`.
    fn storage_size(&mut self, entry: &Entry) -> Option<i64> {
        let result = match &entry.value.value {
            Value::Int(n) => Ok(*n),
            Value::String(s) => storage_size_from_str(s),
            other => Err(format!(
                "must be int64 or string, got {}",
                other.type_name()
            )),
        };
        match result {
            Ok(n) => Some(n),
            Err(reason) => {
                self.error(entry, format!("{} {reason}", entry.key));
                None
            }
        }
    }

    fn cluster(&mut self, entry: &Entry) {
        let Some(map) = self.map(entry) else { return };
        let mut cluster = self
            .settings
            .server
            .cluster
            .take()
            .unwrap_or_else(default_cluster);
        for e in map {
            let key = e.key.to_ascii_lowercase();
            match key.as_str() {
                "name" => {
                    if let Some(name) = self.string(e) {
                        if name.contains(' ') {
                            self.error(e, "cluster name cannot contain spaces");
                        } else {
                            cluster.name = Some(name);
                        }
                    }
                }
                "listen" => {
                    if let Some((host, port)) = self.listen(e) {
                        if let Some(host) = host {
                            cluster.host = host;
                        }
                        match port_from_int(port, Some(DEFAULT_CLUSTER_PORT)) {
                            Ok(port) => cluster.port = port.unwrap_or(DEFAULT_CLUSTER_PORT),
                            Err(message) => self.error(e, message),
                        }
                    }
                }
                "port" => {
                    if let Some(port) = self.port(e, Some(DEFAULT_CLUSTER_PORT)) {
                        cluster.port = port.unwrap_or(DEFAULT_CLUSTER_PORT);
                    }
                }
                "host" | "net" => {
                    if let Some(host) = self.string(e) {
                        cluster.host = host;
                    }
                }
                "tls" => cluster.tls = self.tls(e, tls::TlsBlock::Cluster),
                "cluster_advertise" | "advertise" => {
                    if let Some(advertise) = self.string(e) {
                        cluster.advertise = Some(advertise);
                    }
                }
                "routes" => {
                    let items: Vec<(String, Pos)> = match &e.value.value {
                        Value::Array(items) => {
                            let mut strings = Vec::new();
                            for item in items {
                                match &item.value {
                                    Value::String(s) => strings.push((s.clone(), item.pos.clone())),
                                    other => self.errors.push(FieldError {
                                        pos: Some(item.pos.clone()),
                                        message: format!(
                                            "error parsing route url: expected a string, got {}",
                                            other.type_name()
                                        ),
                                    }),
                                }
                            }
                            strings
                        }
                        Value::String(s) => vec![(s.clone(), e.value.pos.clone())],
                        _ => {
                            self.wrong_type(e, "an array of route URLs");
                            continue;
                        }
                    };
                    cluster.routes.clear();
                    for (url, pos) in items {
                        match validate_route_url(&url) {
                            Ok(()) => {
                                if !cluster.routes.contains(&url) {
                                    cluster.routes.push(url);
                                }
                            }
                            Err(reason) => self.errors.push(FieldError {
                                pos: Some(pos),
                                message: reason,
                            }),
                        }
                    }
                }
                _ => match compat::cluster(&key) {
                    Some(support) => self.unsupported_or_ignored(e, support),
                    None => self.unknown(e),
                },
            }
        }
        self.settings.server.cluster = Some(cluster);
    }
}

/// The cluster settings before any option: nats-server's route listener defaults.
pub fn default_cluster() -> ClusterConfig {
    ClusterConfig {
        name: None,
        host: "0.0.0.0".to_string(),
        port: DEFAULT_CLUSTER_PORT,
        routes: Vec::new(),
        advertise: None,
        tls: None,
    }
}

/// nats-server's port semantics: `-1` is a random port (0 for the listener), 0 is
/// `zero_means` (the default port, or "disabled" when `None`).
pub fn port_from_int(n: i64, zero_means: Option<u16>) -> Result<Option<u16>, String> {
    match n {
        -1 => Ok(Some(0)),
        0 => Ok(zero_means),
        1..=65535 => Ok(Some(n as u16)),
        _ => Err(format!(
            "invalid port {n}: must be between 1 and 65535, or -1 for a random port"
        )),
    }
}

/// Splits `host:port` / `[v6]:port` like Go's `net.SplitHostPort`; the port must be a number.
pub fn split_host_port(s: &str) -> Option<(String, i64)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':')?)
    } else {
        let (host, port) = s.rsplit_once(':')?;
        if host.contains(':') {
            return None;
        }
        (host, port)
    };
    let port = port.parse::<i64>().ok()?;
    Some((host.to_string(), port))
}

/// A URL of the form `scheme://[user[:pass]@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostUrl {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
}

pub fn parse_host_url(s: &str) -> Result<HostUrl, String> {
    let s = s.trim();
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| "missing scheme".to_string())?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err("invalid scheme".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if host_port.starts_with('[') || host_port.contains(':') {
        match split_host_port(host_port) {
            Some((host, port)) => {
                let port = u16::try_from(port).map_err(|_| format!("invalid port {port}"))?;
                (host, Some(port))
            }
            None if host_port.starts_with('[') && host_port.ends_with(']') => {
                (host_port[1..host_port.len() - 1].to_string(), None)
            }
            None => return Err("invalid host:port".into()),
        }
    } else {
        (host_port.to_string(), None)
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    Ok(HostUrl {
        scheme: scheme.to_ascii_lowercase(),
        host,
        port,
    })
}

/// A route must be a `nats-route://` or `nats://` URL with a host (nats-server's wording).
pub fn validate_route_url(url: &str) -> Result<(), String> {
    match parse_host_url(url) {
        Ok(u) if u.scheme == "nats-route" || u.scheme == "nats" => Ok(()),
        Ok(u) if u.scheme == "tls" => Err(format!(
            "error parsing route url [{url:?}]: TLS routes are not supported by natrix yet"
        )),
        Ok(u) => Err(format!(
            "error parsing route url [{url:?}]: unsupported scheme {:?}",
            u.scheme
        )),
        Err(reason) => Err(format!("error parsing route url [{url:?}]: {reason}")),
    }
}

fn storage_size_from_str(s: &str) -> Result<i64, String> {
    if s.is_empty() {
        return Ok(0);
    }
    let Some(last) = s.chars().last() else {
        return Ok(0);
    };
    let prefix = &s[..s.len() - last.len_utf8()];
    let shift = match last {
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        _ => return Err("sizes defined as strings must end in K, M, G, T".into()),
    };
    let n: i64 = prefix.parse().map_err(|_| format!("invalid size {s:?}"))?;
    n.checked_mul(1i64 << shift)
        .ok_or_else(|| format!("size {s:?} is too big"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_nats_server_conventions() {
        assert_eq!(port_from_int(-1, Some(4222)), Ok(Some(0)));
        assert_eq!(port_from_int(0, Some(4222)), Ok(Some(4222)));
        assert_eq!(port_from_int(0, None), Ok(None));
        assert_eq!(port_from_int(8222, None), Ok(Some(8222)));
        assert!(port_from_int(70000, None).is_err());
        assert!(port_from_int(-2, None).is_err());
    }

    #[test]
    fn host_port_pairs_split_like_go() {
        assert_eq!(
            split_host_port("127.0.0.1:4222"),
            Some(("127.0.0.1".into(), 4222))
        );
        assert_eq!(split_host_port("[::1]:4222"), Some(("::1".into(), 4222)));
        assert_eq!(split_host_port(":4222"), Some(("".into(), 4222)));
        assert_eq!(split_host_port("::1:4222"), None);
        assert_eq!(split_host_port("host"), None);
        assert_eq!(split_host_port("host:abc"), None);
    }

    #[test]
    fn route_urls_need_a_nats_scheme_and_a_host() {
        assert!(validate_route_url("nats-route://a:6222").is_ok());
        assert!(validate_route_url("nats://user:pw@10.0.0.1:6222").is_ok());
        assert!(validate_route_url("nats-route://[::1]:6222").is_ok());
        assert!(validate_route_url("nats-route://host").is_ok());
        assert_eq!(
            validate_route_url("::bad"),
            Err("error parsing route url [\"::bad\"]: missing scheme".into())
        );
        assert!(validate_route_url("http://a:1").is_err());
        assert!(validate_route_url("nats-route://:6222").is_err());
        assert!(validate_route_url("nats-route://a:99999").is_err());
    }

    #[test]
    fn storage_sizes_in_strings_are_powers_of_1024() {
        assert_eq!(storage_size_from_str("1K"), Ok(1024));
        assert_eq!(storage_size_from_str("10G"), Ok(10 << 30));
        assert_eq!(storage_size_from_str("2T"), Ok(2 << 40));
        assert!(storage_size_from_str("10").is_err());
        assert!(storage_size_from_str("xG").is_err());
    }
}
