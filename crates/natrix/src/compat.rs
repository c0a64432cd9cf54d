//! The one place that says which nats-server options natrix accepts without acting on them, and
//! which it refuses because ignoring them would mislead or weaken security. Everything not listed
//! here and not mapped in `options` is an unknown field, as in nats-server.

/// What natrix does with an option it does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Accepted, logged as ignored: leaving it out changes nothing a client or operator relies on.
    Ignored,
    /// Refused at start-up: running without it would silently drop security or behaviour.
    Unsupported,
}

/// Top-level options of the configuration file.
pub fn top_level(key: &str) -> Option<Support> {
    use Support::*;
    Some(match key {
        "ports_file_dir"
        | "syslog"
        | "remote_syslog"
        | "logfile_size_limit"
        | "log_size_limit"
        | "logfile_max_num"
        | "log_max_num"
        | "logtime_utc"
        | "max_traced_msg_len"
        | "connect_error_reports"
        | "reconnect_error_reports"
        | "disable_sublist_cache"
        | "no_sublist_cache"
        | "no_header_support"
        | "max_closed_clients"
        | "prof_port"
        | "prof_block_rate"
        | "http_base_path"
        | "max_sub_tokens"
        | "max_subscription_tokens"
        | "system_account"
        | "system"
        | "no_system_account"
        | "no_system"
        | "no_sys_acc"
        | "default_js_domain"
        | "allow_non_tls"
        | "jetstream_max_memory"
        | "jetstream_max_store" => Ignored,
        "tls"
        | "ocsp"
        | "ocsp_cache"
        | "accounts"
        | "leafnodes"
        | "leaf"
        | "gateway"
        | "websocket"
        | "ws"
        | "mqtt"
        | "operator"
        | "operators"
        | "roots"
        | "root"
        | "root_operators"
        | "root_operator"
        | "resolver"
        | "account_resolver"
        | "accounts_resolver"
        | "resolver_tls"
        | "resolver_preload"
        | "resolver_pinned_accounts"
        | "trusted"
        | "trusted_keys"
        | "https"
        | "https_port"
        | "mappings"
        | "maps"
        | "no_auth_user" => Unsupported,
        _ => return None,
    })
}

/// Options of the `authorization { }` block.
pub fn authorization(key: &str) -> Option<Support> {
    match key {
        "users"
        | "nkeys"
        | "permissions"
        | "default_permissions"
        | "auth_callout"
        | "callout"
        | "account" => Some(Support::Unsupported),
        _ => None,
    }
}

/// Options of the `cluster { }` block.
pub fn cluster(key: &str) -> Option<Support> {
    match key {
        "no_advertise" | "connect_retries" | "pool_size" | "compression" | "accounts"
        | "ping_interval" | "ping_max" | "write_deadline" => Some(Support::Ignored),
        "tls" | "authorization" | "permissions" => Some(Support::Unsupported),
        _ => None,
    }
}

/// Options of the `jetstream { }` block.
pub fn jetstream(key: &str) -> Option<Support> {
    match key {
        "unique_tag"
        | "max_outstanding_catchup"
        | "extension_hint"
        | "limits"
        | "strict"
        | "max_buffered_msgs"
        | "max_buffered_size"
        | "request_queue_limit" => Some(Support::Ignored),
        "key" | "ek" | "encryption_key" | "cipher" | "prev_encryption_key" | "tpm" => {
            Some(Support::Unsupported)
        }
        _ => None,
    }
}

/// Command-line flags of nats-server that natrix accepts and ignores (by their long name).
pub const IGNORED_FLAGS: &[&str] = &[
    "ports_file_dir",
    "logtime_utc",
    "syslog",
    "remote_syslog",
    "log_size_limit",
    "max_traced_msg_len",
    "no_advertise",
    "connect_retries",
    "profile",
];

/// Command-line flags of nats-server that natrix refuses (by their long name).
pub const UNSUPPORTED_FLAGS: &[&str] = &[
    "https_port",
    "tls",
    "tlscert",
    "tlskey",
    "tlsverify",
    "tlscacert",
    "help_tls",
];
