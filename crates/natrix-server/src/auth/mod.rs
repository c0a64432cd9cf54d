//! Client authentication and authorization with nats-server's model: a token, a single user,
//! a list of users with plain or bcrypt passwords, NKey users who sign the server's nonce,
//! `no_auth_user`, and per-user permissions. [`Authenticator`] is built once from the config;
//! a connection asks it who a CONNECT is and gets the [`Identity`] with its permissions.

mod bcrypt_limiter;
mod permissions;
mod responses;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use natrix_wire::ConnectInfo;

pub(crate) use permissions::Permissions;
pub(crate) use responses::ReplyTracker;

use self::bcrypt_limiter::BcryptLimiter;
use crate::config::{AuthConfig, PermissionsConfig};

/// Why the authorization settings cannot be used (reported at start-up).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthConfigError {
    #[error("Not a valid public nkey for a user: {0:?}")]
    InvalidNkey(String),
    #[error("Duplicate user {0:?} detected")]
    DuplicateUser(String),
    #[error("Duplicate nkey {0:?} detected")]
    DuplicateNkey(String),
    #[error("no_auth_user: {0:?} present, but users are not defined")]
    NoAuthUserWithoutUsers(String),
    #[error(
        "no_auth_user: {0:?} not present as user in authorization block or account configuration"
    )]
    NoAuthUserUnknown(String),
}

/// A password or token as configured: plain text, or a bcrypt hash (nats-server's `isBcrypt`).
#[derive(Debug, Clone)]
enum Secret {
    Plain(String),
    Bcrypt(String),
}

impl Secret {
    fn new(text: &str) -> Self {
        if is_bcrypt(text) {
            Secret::Bcrypt(text.to_owned())
        } else {
            Secret::Plain(text.to_owned())
        }
    }

    /// Grants `identity` if `given` is this secret. Bcrypt hashes cost milliseconds of CPU to
    /// check, so that check is left to the caller, off the connection's task (see
    /// [`Verdict::NeedsBcrypt`]).
    fn grant(&self, given: &str, identity: Identity) -> Verdict {
        match self {
            Secret::Plain(expected) if constant_time_eq(given, expected) => {
                Verdict::Accepted(identity)
            }
            Secret::Plain(_) => Verdict::Rejected,
            Secret::Bcrypt(hash) => Verdict::NeedsBcrypt {
                password: given.to_owned(),
                hash: hash.clone(),
                identity,
            },
        }
    }
}

/// `$2a$`, `$2b$`, `$2x$`, `$2y$` (or `$2$`) followed by a two-digit cost and `$`.
fn is_bcrypt(text: &str) -> bool {
    let b = text.as_bytes();
    let rest = match b {
        [b'$', b'2', b'$', rest @ ..] => rest,
        [b'$', b'2', b'a' | b'b' | b'x' | b'y', b'$', rest @ ..] => rest,
        _ => return false,
    };
    matches!(rest, [d1, d2, b'$', ..] if d1.is_ascii_digit() && d2.is_ascii_digit())
}

/// Who a connection is, once authenticated.
#[derive(Debug, Clone, Default)]
pub(crate) struct Identity {
    /// The user name or NKey, for monitoring (`authorized_user`); `None` for a token or no auth.
    pub user: Option<String>,
    pub permissions: Option<Arc<Permissions>>,
}

/// Checks the authorization settings as the node will at start-up (for `-t` and early errors).
pub fn check_config(config: &AuthConfig) -> Result<(), AuthConfigError> {
    Authenticator::new(config).map(|_| ())
}

/// The outcome of checking credentials.
#[derive(Debug)]
pub(crate) enum Verdict {
    Accepted(Identity),
    Rejected,
    /// Accepted as `identity` if `password` matches the bcrypt `hash`.
    NeedsBcrypt {
        password: String,
        hash: String,
        identity: Identity,
    },
}

/// Checks a password against a bcrypt hash (slow: run it on a blocking thread, through
/// [`Authenticator::check_bcrypt`]).
pub(crate) fn bcrypt_matches(password: &str, hash: &str) -> bool {
    bcrypt::verify(password, hash).unwrap_or(false)
}

#[derive(Debug)]
struct User {
    secret: Secret,
    permissions: Option<Arc<Permissions>>,
}

/// The compiled authorization settings of a node.
#[derive(Debug, Default)]
pub(crate) struct Authenticator {
    token: Option<Secret>,
    single_user: Option<(String, Secret)>,
    users: HashMap<String, User>,
    nkeys: HashMap<String, Option<Arc<Permissions>>>,
    no_auth_user: Option<String>,
    /// Bounds the bcrypt checks of all connections running at once.
    bcrypt: BcryptLimiter,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Result<Self, AuthConfigError> {
        let compile = |p: &PermissionsConfig| Arc::new(Permissions::compile(p));
        let default_permissions = config.default_permissions.as_ref().map(compile);
        let mut users = HashMap::new();
        let mut nkeys = HashMap::new();
        for user in &config.users {
            let permissions = user
                .permissions
                .as_ref()
                .map(compile)
                .or_else(|| default_permissions.clone());
            if let Some(nkey) = &user.nkey {
                if !is_user_nkey(nkey) {
                    return Err(AuthConfigError::InvalidNkey(nkey.clone()));
                }
                if nkeys.insert(nkey.clone(), permissions).is_some() {
                    return Err(AuthConfigError::DuplicateNkey(nkey.clone()));
                }
            } else {
                let name = user.user.clone().unwrap_or_default();
                let secret = Secret::new(user.password.as_deref().unwrap_or(""));
                if users
                    .insert(
                        name.clone(),
                        User {
                            secret,
                            permissions,
                        },
                    )
                    .is_some()
                {
                    return Err(AuthConfigError::DuplicateUser(name));
                }
            }
        }
        if let Some(name) = &config.no_auth_user {
            if users.is_empty() && nkeys.is_empty() {
                return Err(AuthConfigError::NoAuthUserWithoutUsers(name.clone()));
            }
            if !users.contains_key(name) {
                return Err(AuthConfigError::NoAuthUserUnknown(name.clone()));
            }
        }
        Ok(Self {
            token: config.token.as_deref().map(Secret::new),
            single_user: config.user.as_ref().map(|u| {
                (
                    u.clone(),
                    Secret::new(config.password.as_deref().unwrap_or("")),
                )
            }),
            users,
            nkeys,
            no_auth_user: config.no_auth_user.clone(),
            bcrypt: BcryptLimiter::default(),
        })
    }

    /// Whether `password` matches the bcrypt `hash` (a [`Verdict::NeedsBcrypt`]): checked on a
    /// blocking thread, after waiting for one of the node's bcrypt permits.
    pub fn check_bcrypt(
        &self,
        password: String,
        hash: String,
    ) -> impl Future<Output = bool> + Send + 'static {
        let check = self.bcrypt.run(move || bcrypt_matches(&password, &hash));
        async move { check.await.unwrap_or(false) }
    }

    /// Clients must authenticate (they may still connect without credentials through
    /// `no_auth_user`).
    pub fn required(&self) -> bool {
        self.token.is_some()
            || self.single_user.is_some()
            || !self.users.is_empty()
            || !self.nkeys.is_empty()
    }

    /// INFO's `auth_required`: as nats-server, not advertised when `no_auth_user` lets a
    /// client in without credentials.
    pub fn advertise_required(&self) -> bool {
        self.required() && self.no_auth_user.is_none()
    }

    /// The identity of a client without credentials under `no_auth_user` (also before its
    /// CONNECT, as nats-server applies that user's permissions from the start).
    pub fn no_auth_identity(&self) -> Option<Identity> {
        let name = self.no_auth_user.as_ref()?;
        let user = self.users.get(name)?;
        Some(Identity {
            user: Some(name.clone()),
            permissions: user.permissions.clone(),
        })
    }

    /// INFO carries a nonce for NKey users to sign.
    pub fn needs_nonce(&self) -> bool {
        !self.nkeys.is_empty()
    }

    /// Who the CONNECT is. `nonce` is the one this connection's INFO carried.
    pub fn authenticate(&self, connect: &ConnectInfo, nonce: Option<&str>) -> Verdict {
        if !self.required() {
            return Verdict::Accepted(Identity::default());
        }
        if let Some(nkey) = connect.nkey.as_deref().filter(|k| !k.is_empty())
            && !self.nkeys.is_empty()
        {
            return self.check_nkey(nkey, connect.sig.as_deref(), nonce);
        }
        let no_credentials = is_blank(&connect.user)
            && is_blank(&connect.pass)
            && is_blank(&connect.auth_token)
            && is_blank(&connect.nkey)
            && is_blank(&connect.jwt);
        if no_credentials && self.no_auth_user.is_some() {
            return match self.no_auth_identity() {
                Some(identity) => Verdict::Accepted(identity),
                None => Verdict::Rejected,
            };
        }
        if !self.users.is_empty()
            && let Some(name) = connect.user.as_deref().filter(|u| !u.is_empty())
        {
            let Some(user) = self.users.get(name) else {
                return Verdict::Rejected;
            };
            let identity = Identity {
                user: Some(name.to_owned()),
                permissions: user.permissions.clone(),
            };
            return user
                .secret
                .grant(connect.pass.as_deref().unwrap_or(""), identity);
        }
        if let Some(token) = &self.token {
            let identity = Identity::default();
            let given = connect.auth_token.as_deref().unwrap_or("");
            if given.is_empty() {
                return Verdict::Rejected;
            }
            return token.grant(given, identity);
        }
        if let Some((name, secret)) = &self.single_user {
            if !constant_time_eq(connect.user.as_deref().unwrap_or(""), name) {
                return Verdict::Rejected;
            }
            let identity = Identity {
                user: Some(name.clone()),
                permissions: None,
            };
            return secret.grant(connect.pass.as_deref().unwrap_or(""), identity);
        }
        Verdict::Rejected
    }

    fn check_nkey(&self, nkey: &str, sig: Option<&str>, nonce: Option<&str>) -> Verdict {
        let Some(permissions) = self.nkeys.get(nkey) else {
            return Verdict::Rejected;
        };
        let (Some(sig), Some(nonce)) = (sig, nonce) else {
            return Verdict::Rejected;
        };
        // As nats-server: base64url without padding, else standard base64.
        let Ok(sig) = URL_SAFE_NO_PAD
            .decode(sig)
            .or_else(|_| STANDARD.decode(sig))
        else {
            return Verdict::Rejected;
        };
        let verified = nkeys::KeyPair::from_public_key(nkey)
            .and_then(|key| key.verify(nonce.as_bytes(), &sig))
            .is_ok();
        if !verified {
            return Verdict::Rejected;
        }
        Verdict::Accepted(Identity {
            user: Some(nkey.to_owned()),
            permissions: permissions.clone(),
        })
    }
}

fn is_blank(field: &Option<String>) -> bool {
    field.as_deref().is_none_or(str::is_empty)
}

/// A user's public NKey: `U` followed by the rest of a valid encoded key.
fn is_user_nkey(key: &str) -> bool {
    key.starts_with('U') && nkeys::KeyPair::from_public_key(key).is_ok()
}

/// A fresh nonce for INFO: 11 random bytes, base64url without padding (nats-server's format).
pub(crate) fn new_nonce() -> String {
    let mut bytes = [0u8; 11];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: fall back to the process PRNG rather than refusing clients; a
        // nonce only needs to be unpredictable enough that a signature cannot be replayed.
        bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Compares without an early exit, so the time taken does not reveal a matching prefix.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[path = "auth_test.rs"]
mod tests;
