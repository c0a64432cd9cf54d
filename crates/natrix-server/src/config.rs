//! The typed configuration of one node. The binary builds it from the command line and the
//! configuration file; nothing below reads flags or files.

use std::path::PathBuf;
use std::time::Duration;

/// Everything a node needs to start. Defaults are nats-server's.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// `server_name`; defaults to the generated server id.
    pub server_name: Option<String>,
    /// Client listener host (`host`, `net`, `-a`).
    pub host: String,
    /// Client listener port; 0 picks a free port (nats-server's `-1`, "RANDOM_PORT").
    pub port: u16,
    /// Address advertised to clients in INFO and `connect_urls` (`client_advertise`): `host` or
    /// `host:port` (IPv6 in brackets), if not the listen address.
    pub client_advertise: Option<String>,
    /// Monitoring host (`http_host`, defaults to `host`).
    pub http_host: Option<String>,
    /// Monitoring port (`http_port`, `-m`); `None` disables monitoring; 0 picks a free port.
    pub http_port: Option<u16>,
    /// Monitoring over HTTPS (`https_port`, `https`, `-ms`) with the client `tls` certificate;
    /// exclusive with `http_port`, as in nats-server.
    pub https_port: Option<u16>,
    pub limits: Limits,
    pub auth: AuthConfig,
    /// The account every client of this node belongs to.
    pub account: AccountConfig,
    pub jetstream: Option<JetStreamConfig>,
    pub cluster: Option<ClusterConfig>,
    /// `tls { ... }` / `--tls*`: clients must connect with TLS.
    pub tls: Option<TlsConfig>,
    /// `lame_duck_duration`: how long a graceful shutdown spreads client disconnects over.
    pub lame_duck_duration: Duration,
    /// `lame_duck_grace_period`.
    pub lame_duck_grace_period: Duration,
    /// Server tags (`server_tags`).
    pub tags: Vec<String>,
    /// The config file this came from (reported in /varz).
    pub config_file: Option<PathBuf>,
}

/// Per-connection and per-server limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// `max_payload` (1 MiB).
    pub max_payload: u32,
    /// `max_control_line` (4 KiB).
    pub max_control_line: u32,
    /// `max_pending`: bytes queued to one client before it is cut off as a slow consumer (64 MiB).
    pub max_pending: u64,
    /// `max_connections` (64K).
    pub max_connections: u32,
    /// `max_subscriptions` per connection; 0 is unlimited.
    pub max_subscriptions: u32,
    /// `ping_interval` (2 minutes).
    pub ping_interval: Duration,
    /// `ping_max`: unanswered PINGs before 'Stale Connection' (2).
    pub ping_max: u32,
    /// `write_deadline`: a flush blocked this long marks a slow consumer (10 s).
    pub write_deadline: Duration,
    /// `authorization.timeout` / `auth_timeout`: time allowed for CONNECT (2 s; 1 s w/o auth in
    /// nats-server is the same 2 s default).
    pub auth_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload: 1024 * 1024,
            max_control_line: 4096,
            max_pending: 64 * 1024 * 1024,
            max_connections: 64 * 1024,
            max_subscriptions: 0,
            ping_interval: Duration::from_secs(120),
            ping_max: 2,
            write_deadline: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(2),
        }
    }
}

/// Client authentication and authorization, as nats-server's `authorization { ... }` block,
/// `no_auth_user` and `--user/--pass`, `--auth`. Passwords and tokens are plain text or bcrypt
/// hashes (`$2a$`, `$2b$`, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthConfig {
    /// The single user (`authorization { user, password }`, `--user/--pass`).
    pub user: Option<String>,
    pub password: Option<String>,
    /// `authorization { token }`, `--auth`.
    pub token: Option<String>,
    /// `authorization { users: [...] }`: users with passwords and NKey users.
    pub users: Vec<UserConfig>,
    /// `authorization { default_permissions }` (or `permissions`): for users in `users`
    /// without their own. As in nats-server, the single user and the token have none.
    pub default_permissions: Option<PermissionsConfig>,
    /// `no_auth_user`: the user a client that presents no credentials connects as.
    pub no_auth_user: Option<String>,
}

impl AuthConfig {
    /// True if clients must present credentials (or get `no_auth_user`'s).
    pub fn required(&self) -> bool {
        self.user.is_some() || self.token.is_some() || !self.users.is_empty()
    }

    /// True if some user signs in with an NKey, so INFO carries a nonce to sign.
    pub fn has_nkeys(&self) -> bool {
        self.users.iter().any(|u| u.nkey.is_some())
    }
}

/// One entry of `authorization { users: [...] }`: a user with a password, or an NKey user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserConfig {
    pub user: Option<String>,
    pub password: Option<String>,
    /// The user's public NKey (`U...`).
    pub nkey: Option<String>,
    pub permissions: Option<PermissionsConfig>,
}

/// `permissions { publish, subscribe, allow_responses }` of a user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PermissionsConfig {
    pub publish: Option<SubjectPermissionConfig>,
    pub subscribe: Option<SubjectPermissionConfig>,
    /// `allow_responses`: may publish to the reply subjects of messages it received.
    pub allow_responses: Option<ResponsePermissionConfig>,
}

/// `{ allow: [...], deny: [...] }` (or a bare list, which is `allow`). Subscribe rules may be
/// `"subject queue"`, to allow or deny one queue group only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubjectPermissionConfig {
    /// `None`: everything not denied is allowed; `Some(empty)`: nothing is.
    pub allow: Option<Vec<String>>,
    pub deny: Vec<String>,
}

/// `allow_responses: true` or `{ max, expires }`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsePermissionConfig {
    /// Responses allowed per received reply subject; 0 is unlimited.
    pub max: u32,
    /// How long after the request a response is allowed; zero is forever.
    pub expires: Duration,
}

impl Default for ResponsePermissionConfig {
    /// nats-server's `allow_responses: true`: one response within two minutes.
    fn default() -> Self {
        Self {
            max: 1,
            expires: Duration::from_secs(120),
        }
    }
}

/// The one account clients belong to: nats-server's global account `$G`, or the single account
/// of `accounts { NAME { users, jetstream } }`. natrix serves one account per cluster, so every
/// client shares one subject space and one JetStream (see docs/security.md).
#[derive(Debug, Clone, PartialEq)]
pub struct AccountConfig {
    pub name: String,
    /// The account's JetStream limits; `None`: JetStream is not enabled for the account (every
    /// API request is answered with 10039), as for an account without `jetstream` in nats-server.
    pub jetstream: Option<natrix_stream::AccountLimits>,
}

impl Default for AccountConfig {
    /// `$G`, with JetStream (when the server runs it) and no account limits.
    fn default() -> Self {
        Self {
            name: GLOBAL_ACCOUNT.to_string(),
            jetstream: Some(natrix_stream::AccountLimits::default()),
        }
    }
}

/// nats-server's global account, which clients belong to when no `accounts` are configured.
pub const GLOBAL_ACCOUNT: &str = "$G";

/// `jetstream { ... }` / `-js`, `-sd`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JetStreamConfig {
    pub store_dir: Option<PathBuf>,
    /// Bytes; `None` means the nats-server default (75% of memory).
    pub max_memory_store: Option<i64>,
    /// Bytes; `None` means the nats-server default (up to 1 TB / available disk).
    pub max_file_store: Option<i64>,
    pub domain: Option<String>,
    /// `sync_interval`: `None` (the default, `sync: always`) fsyncs every write batch before its
    /// publishes are acknowledged; `Some(d)` acknowledges after the write and fsyncs every `d`
    /// (nats-server's behaviour, which a power cut can make lose acknowledged messages).
    pub sync_interval: Option<std::time::Duration>,
    /// Clustered JetStream: a stream group snapshots its state and compacts its Raft log every
    /// this many log entries, keeping at most as many (up to 1,000) behind the snapshot for
    /// followers that lag a little; `None` is every 10,000. natrix's own setting (tests use a
    /// small value to make a lagging follower catch up from a snapshot); in a config file
    /// `jetstream { raft_snapshot_every: N }` (not a nats-server option).
    pub raft_snapshot_every: Option<u64>,
}

/// `cluster { name, listen, routes }` / `--cluster`, `--routes`, `--cluster_name`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterConfig {
    pub name: Option<String>,
    pub host: String,
    pub port: u16,
    /// Route URLs as given, e.g. `nats-route://host:6222`.
    pub routes: Vec<String>,
    /// The address peers are told to dial this node at (`cluster_advertise`): `host` or
    /// `host:port` (a missing port is the listen port); `None` is the listen address.
    pub advertise: Option<String>,
    /// `cluster { tls { ... } }`: mutual TLS on the cluster endpoint, both ways.
    pub tls: Option<TlsConfig>,
}

impl ClusterConfig {
    /// The `host:port` peers are told to dial: `cluster_advertise`, else the listen host.
    pub fn advertised(&self, listen_port: u16) -> (String, u16) {
        match &self.advertise {
            Some(advertise) => split_advertise(advertise, listen_port),
            None => (self.host.clone(), listen_port),
        }
    }
}

/// nats-server's `TLS_TIMEOUT`: the default `tls { timeout }`.
pub const DEFAULT_TLS_TIMEOUT: Duration = Duration::from_secs(2);

/// A `tls { cert_file, key_file, ca_file, verify, timeout, handshake_first }` block, of the
/// client listener or of the cluster endpoint. Files are read when the node starts
/// ([`crate::tls`]); an unreadable or mismatched file stops it there.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    /// The node's certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// The private key of `cert_file` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates (PEM) that client certificates (`verify`) and, on the cluster endpoint,
    /// peers' certificates must chain to.
    pub ca_file: Option<PathBuf>,
    /// Require a client certificate signed by `ca_file`. The cluster endpoint always requires
    /// one, whatever this says (as nats-server).
    pub verify: bool,
    /// How long the TLS handshake may take (`timeout`, 2 s).
    pub timeout: Duration,
    /// nats-server 2.10's `handshake_first`: the TLS handshake comes before INFO (clients
    /// opt in, e.g. async-nats' `tls_first()`). Client listener only.
    pub handshake_first: bool,
}

impl TlsConfig {
    /// A block with `cert_file` and `key_file` and nats-server's defaults for the rest.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            ca_file: None,
            verify: false,
            timeout: DEFAULT_TLS_TIMEOUT,
            handshake_first: false,
        }
    }
}

impl ServerConfig {
    /// The host and port clients are told to use: `client_advertise` (a missing port is the
    /// listen port), else the listen host and port.
    pub fn advertised_client(&self, listen_port: u16) -> (String, u16) {
        match &self.client_advertise {
            Some(advertise) => split_advertise(advertise, listen_port),
            None => (self.host.clone(), listen_port),
        }
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address, as nats-server reads
/// `client_advertise`.
fn split_advertise(advertise: &str, default_port: u16) -> (String, u16) {
    let advertise = advertise.trim();
    if let Some(rest) = advertise.strip_prefix('[')
        && let Some((host, after)) = rest.split_once(']')
    {
        let port = after
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(default_port);
        return (host.to_owned(), port);
    }
    match advertise.split_once(':') {
        Some((host, port)) if !port.contains(':') => match port.parse() {
            Ok(port) => (host.to_owned(), port),
            Err(_) => (advertise.to_owned(), default_port),
        },
        _ => (advertise.to_owned(), default_port),
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            server_name: None,
            host: "0.0.0.0".to_string(),
            port: 4222,
            client_advertise: None,
            http_host: None,
            http_port: None,
            https_port: None,
            limits: Limits::default(),
            auth: AuthConfig::default(),
            account: AccountConfig::default(),
            jetstream: None,
            cluster: None,
            tls: None,
            lame_duck_duration: Duration::from_secs(120),
            lame_duck_grace_period: Duration::from_secs(10),
            tags: Vec::new(),
            config_file: None,
        }
    }
}

#[cfg(test)]
mod advertise_tests {
    use super::split_advertise;

    #[test]
    fn client_advertise_takes_a_host_or_a_host_and_port() {
        let cases = [
            ("nats.example.com", ("nats.example.com", 4222)),
            ("10.0.0.7:14222", ("10.0.0.7", 14222)),
            ("[::1]:5222", ("::1", 5222)),
            ("[fe80::1]", ("fe80::1", 4222)),
            ("fe80::1", ("fe80::1", 4222)),
            ("host:notaport", ("host:notaport", 4222)),
        ];
        for (advertise, (host, port)) in cases {
            assert_eq!(
                split_advertise(advertise, 4222),
                (host.to_owned(), port),
                "{advertise}"
            );
        }
    }
}
