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
        | "no_system_account"
        | "no_system"
        | "no_sys_acc"
        | "default_js_domain"
        | "allow_non_tls"
        | "jetstream_max_memory"
        | "jetstream_max_store" => Ignored,
        "ocsp"
        | "ocsp_cache"
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
        | "mappings"
        | "maps" => Unsupported,
        _ => return None,
    })
}

/// Options of the `authorization { }` block.
pub fn authorization(key: &str) -> Option<Support> {
    match key {
        "auth_callout" | "callout" | "account" => Some(Support::Unsupported),
        _ => None,
    }
}

/// Options of one account of `accounts { NAME { ... } }`.
pub fn account(key: &str) -> Option<Support> {
    match key {
        // Imports, exports and mappings connect or reshape subject spaces of several accounts;
        // account limits and NKeys (operator mode) would restrict clients: natrix has none of
        // them, so running without them would grant more than the operator meant.
        "imports" | "exports" | "mappings" | "maps" | "limits" | "nkey" | "msg_trace"
        | "trace_dest" => Some(Support::Unsupported),
        _ => None,
    }
}

/// Options of one entry of `authorization { users: [...] }`.
pub fn user(key: &str) -> Option<Support> {
    match key {
        // Accounts and connection types: natrix has one account and one kind of client
        // connection; refusing is safer than granting what the operator meant to restrict.
        "account" | "allowed_connection_types" | "connection_types" | "clients" => {
            Some(Support::Unsupported)
        }
        _ => None,
    }
}

/// Options of the `cluster { }` block.
pub fn cluster(key: &str) -> Option<Support> {
    match key {
        "no_advertise" | "connect_retries" | "pool_size" | "compression" | "accounts"
        | "ping_interval" | "ping_max" | "write_deadline" => Some(Support::Ignored),
        "authorization" | "permissions" => Some(Support::Unsupported),
        _ => None,
    }
}

/// Options of a `tls { }` block (top level or in `cluster`).
pub fn tls(key: &str) -> Option<Support> {
    match key {
        // rustls offers only AEAD suites with forward secrecy and its own curve order; a list
        // written for Go's crypto/tls names suites rustls does not have, so it is not applied.
        "cipher_suites" | "curve_preferences" => Some(Support::Ignored),
        // Each would narrow who may connect or how certificates are checked: running without
        // it would let in clients the operator meant to keep out.
        "insecure"
        | "verify_and_map"
        | "verify_cert_and_check_known_urls"
        | "pinned_certs"
        | "cert_store"
        | "cert_match_by"
        | "cert_match"
        | "cert_match_skip_invalid"
        | "ca_certs_match"
        | "ocsp_peer"
        | "certs"
        | "min_version"
        | "connection_rate_limit" => Some(Support::Unsupported),
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
pub const UNSUPPORTED_FLAGS: &[&str] = &["help_tls"];
