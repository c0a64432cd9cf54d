//! Configuration reload (SIGHUP, `--signal reload`), as nats-server's: what a node can take on
//! without a restart (who may connect and with which permissions, and the client TLS
//! certificates) is applied to the running node and to the clients already connected; a
//! change to anything else refuses the whole reload with nats-server's "config reload not
//! supported for ..." and changes nothing.

use std::sync::Arc;

use crate::auth::{Authenticator, Verdict};
use crate::client::{Client, CloseReason};
use crate::config::ServerConfig;
use crate::state::ServerState;

/// Why a reload was refused; the node goes on with the configuration it had.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("config reload not supported for {0}")]
    NotSupported(&'static str),
    #[error("{0}")]
    Authorization(String),
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// What a reload changes that the node applies: `authorization` (users, passwords, tokens,
/// NKeys, permissions, `no_auth_user`, the account's users) and `tls` (certificate, key, CA,
/// verify, timeout). Everything else must be as before, or the reload is refused, naming the
/// first option that differs.
pub(crate) fn changes(
    old: &ServerConfig,
    new: &ServerConfig,
) -> Result<Vec<&'static str>, ReloadError> {
    let (a, b) = (&old.limits, &new.limits);
    let fixed = [
        ("server_name", old.server_name == new.server_name),
        ("host", old.host == new.host),
        ("port", old.port == new.port),
        (
            "client_advertise",
            old.client_advertise == new.client_advertise,
        ),
        ("http_host", old.http_host == new.http_host),
        ("http_port", old.http_port == new.http_port),
        ("https_port", old.https_port == new.https_port),
        ("max_payload", a.max_payload == b.max_payload),
        ("max_control_line", a.max_control_line == b.max_control_line),
        ("max_pending", a.max_pending == b.max_pending),
        ("max_connections", a.max_connections == b.max_connections),
        (
            "max_subscriptions",
            a.max_subscriptions == b.max_subscriptions,
        ),
        ("ping_interval", a.ping_interval == b.ping_interval),
        ("ping_max", a.ping_max == b.ping_max),
        ("write_deadline", a.write_deadline == b.write_deadline),
        ("authorization timeout", a.auth_timeout == b.auth_timeout),
        ("accounts", old.account == new.account),
        ("jetstream", old.jetstream == new.jetstream),
        ("cluster", old.cluster == new.cluster),
        (
            "lame_duck_duration",
            old.lame_duck_duration == new.lame_duck_duration,
        ),
        (
            "lame_duck_grace_period",
            old.lame_duck_grace_period == new.lame_duck_grace_period,
        ),
        ("server_tags", old.tags == new.tags),
        // Turning TLS on or off changes what every client must speak; new certificates do not.
        ("tls", old.tls.is_some() == new.tls.is_some()),
    ];
    if let Some((name, _)) = fixed.iter().find(|(_, same)| !same) {
        return Err(ReloadError::NotSupported(name));
    }
    let mut changed = Vec::new();
    if old.auth != new.auth {
        changed.push("authorization");
    }
    if old.tls != new.tls {
        changed.push("tls");
    }
    Ok(changed)
}

/// Checks every connected client's credentials against `auth`, as nats-server does after a
/// reload: a client they no longer let in is closed (without an `-ERR`, as nats-server closes
/// it; a new CONNECT with those credentials gets `Authorization Violation`); the others
/// go on with their user's new permissions. A client that has not sent CONNECT yet meets the
/// new settings when it does (and runs as the new `no_auth_user`, if any, until then).
pub(crate) async fn reauthorize(state: &ServerState, auth: &Authenticator) {
    let clients: Vec<Arc<Client>> = state.clients.read().values().cloned().collect();
    for client in clients {
        let credentials = client.credentials.lock().clone();
        let Some(credentials) = credentials else {
            client
                .access
                .set(auth.no_auth_identity().and_then(|i| i.permissions));
            continue;
        };
        let identity = match auth.authenticate(&credentials.connect, credentials.nonce.as_deref()) {
            Verdict::Accepted(identity) => Some(identity),
            Verdict::Rejected => None,
            Verdict::NeedsBcrypt {
                password,
                hash,
                identity,
            } => auth.check_bcrypt(password, hash).await.then_some(identity),
        };
        match identity {
            Some(identity) => {
                client.access.set(identity.permissions);
                client.meta.lock().user = identity.user;
            }
            None => {
                tracing::warn!(
                    cid = client.id,
                    addr = %client.addr,
                    "authorization violation after a configuration reload"
                );
                client.close(CloseReason::AuthenticationViolation);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthConfig, Limits};

    #[test]
    fn only_authorization_and_tls_certificates_are_reloadable() {
        let old = ServerConfig::default();
        let users = ServerConfig {
            auth: AuthConfig {
                token: Some("t".into()),
                ..AuthConfig::default()
            },
            ..ServerConfig::default()
        };
        assert_eq!(changes(&old, &users).ok(), Some(vec!["authorization"]));
        assert_eq!(changes(&old, &old).ok(), Some(vec![]));
        let port = ServerConfig {
            port: 4333,
            ..ServerConfig::default()
        };
        assert_eq!(
            changes(&old, &port).err().map(|e| e.to_string()),
            Some("config reload not supported for port".to_string())
        );
        let payload = ServerConfig {
            limits: Limits {
                max_payload: 1,
                ..Limits::default()
            },
            ..users
        };
        assert_eq!(
            changes(&old, &payload).err().map(|e| e.to_string()),
            Some("config reload not supported for max_payload".to_string())
        );
    }
}
