//! The `accounts { NAME { users, default_permissions, jetstream } }` block, read as nats-server's
//! `parseAccounts` and `parseJetStreamForAccount` read it, with their error texts. natrix serves
//! one account, so [`Settings::finish`](super::Settings::finish) refuses a second one.

use natrix_conf::{Entry, Value};
use natrix_server::{AccountConfig, AccountLimits, GLOBAL_ACCOUNT, PermissionsConfig, UserConfig};

use super::{FieldError, Mapper, Settings};
use crate::compat;

/// One account of the `accounts` block, as written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountSettings {
    pub name: String,
    pub users: Vec<UserConfig>,
    pub default_permissions: Option<PermissionsConfig>,
    /// `None`: JetStream not enabled for the account.
    pub jetstream: Option<AccountLimits>,
}

impl Settings {
    /// Settles the one account natrix serves: the global account `$G`, or the single account of
    /// `accounts`, whose users become the node's users. natrix keeps one subject space and one
    /// JetStream per node, so a second account (or users in `authorization` beside the
    /// account's, which nats-server would put in `$G`) is refused rather than merged.
    pub(super) fn finish_account(&mut self, errors: &mut Vec<FieldError>) {
        let refuse = |errors: &mut Vec<FieldError>, message: String| {
            errors.push(FieldError { pos: None, message });
        };
        // natrix serves none of the system account's requests (`$SYS.REQ.>`), so it does not
        // take that account's users in beside the application's: they cannot log in at all,
        // which grants nothing nats-server would not.
        if let Some(system) = &self.system_account
            && let Some(at) = self.accounts.iter().position(|a| &a.name == system)
        {
            self.accounts.remove(at);
            self.warnings.push(format!(
                "system account {system:?} is not served by natrix: its users cannot log in"
            ));
        }
        match self.accounts.as_slice() {
            [] => {}
            [account] if account.users.is_empty() => self.warnings.push(format!(
                "account {:?} has no users: clients use the global account {GLOBAL_ACCOUNT}",
                account.name
            )),
            [account] => {
                let auth = &mut self.server.auth;
                if auth.user.is_some() || auth.token.is_some() || !auth.users.is_empty() {
                    refuse(
                        errors,
                        format!(
                            "natrix serves a single account: define users either in \
                             `authorization` or in account {:?}, not both",
                            account.name
                        ),
                    );
                    return;
                }
                auth.users = account.users.clone();
                if account.default_permissions.is_some() {
                    auth.default_permissions = account.default_permissions.clone();
                }
                self.server.account = AccountConfig {
                    name: account.name.clone(),
                    jetstream: account.jetstream,
                };
            }
            many => {
                let names: Vec<&str> = many.iter().map(|a| a.name.as_str()).collect();
                refuse(
                    errors,
                    format!(
                        "natrix serves a single account, but `accounts` defines {}: {}",
                        names.len(),
                        names.join(", ")
                    ),
                );
            }
        }
    }
}

impl Mapper<'_> {
    /// `accounts { NAME: { ... }, ... }`.
    pub(super) fn accounts(&mut self, entry: &Entry) {
        let Some(map) = self.map(entry) else { return };
        for e in map {
            if e.key == GLOBAL_ACCOUNT {
                self.error(e, format!("{:?} is a Reserved Account", e.key));
                continue;
            }
            let mut account = AccountSettings {
                name: e.key.clone(),
                ..AccountSettings::default()
            };
            let Some(fields) = self.map(e) else { continue };
            for f in fields {
                let key = f.key.to_ascii_lowercase();
                match key.as_str() {
                    "users" => {
                        if let Some(users) = self.users(f) {
                            account.users = users;
                        }
                    }
                    "default_permission" | "default_permissions" => {
                        account.default_permissions = self.permissions(f);
                    }
                    "jetstream" => account.jetstream = self.account_jetstream(f),
                    _ => match compat::account(&key) {
                        Some(support) => self.unsupported_or_ignored(f, support),
                        None => self.unknown(f),
                    },
                }
            }
            self.settings.accounts.push(account);
        }
    }

    /// An account's `jetstream`: `enabled`/`disabled`, a bool, or a map of limits.
    fn account_jetstream(&mut self, entry: &Entry) -> Option<AccountLimits> {
        match &entry.value.value {
            Value::Bool(enabled) => enabled.then(AccountLimits::default),
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "enabled" | "enable" => Some(AccountLimits::default()),
                "disabled" | "disable" => None,
                _ => {
                    self.error(
                        entry,
                        format!("Expected 'enabled' or 'disabled' for string value, got '{s}'"),
                    );
                    None
                }
            },
            Value::Map(map) => {
                let mut limits = AccountLimits::default();
                for e in map {
                    let key = e.key.to_ascii_lowercase();
                    let slot = match key.as_str() {
                        "max_memory" | "max_mem" | "mem" | "memory" => &mut limits.max_memory,
                        "max_store" | "max_file" | "max_disk" | "store" | "disk" => {
                            &mut limits.max_storage
                        }
                        "max_streams" | "streams" => &mut limits.max_streams,
                        "max_consumers" | "consumers" => &mut limits.max_consumers,
                        "max_ack_pending" => &mut limits.max_ack_pending,
                        "mem_max_stream_bytes" | "memory_max_stream_bytes" => {
                            &mut limits.memory_max_stream_bytes
                        }
                        "disk_max_stream_bytes" | "store_max_stream_bytes" => {
                            &mut limits.storage_max_stream_bytes
                        }
                        "max_bytes_required" | "max_stream_bytes" | "max_bytes" => {
                            if let Some(required) = self.bool(e) {
                                limits.max_bytes_required = required;
                            }
                            continue;
                        }
                        _ => {
                            self.unknown(e);
                            continue;
                        }
                    };
                    match e.value.value {
                        Value::Int(n) => *slot = n,
                        ref other => {
                            let got = match other {
                                Value::String(s) => s.clone(),
                                other => other.type_name().to_string(),
                            };
                            self.error(
                                e,
                                format!("Expected a parseable size for {:?}, got {got}", e.key),
                            );
                        }
                    }
                }
                Some(limits)
            }
            other => {
                let got = other.type_name();
                self.error(
                    entry,
                    format!("Expected map, bool or string to define JetStream, got {got}"),
                );
                None
            }
        }
    }
}
