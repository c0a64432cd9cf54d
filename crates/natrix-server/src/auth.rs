//! Single-user authentication: the credentials in CONNECT against `--user/--pass` or `--auth`.

use natrix_wire::ConnectInfo;

use crate::AuthConfig;

/// True if the CONNECT credentials satisfy the configured ones.
pub(crate) fn check(config: &AuthConfig, connect: &ConnectInfo) -> bool {
    if let Some(token) = &config.token {
        return connect
            .auth_token
            .as_deref()
            .is_some_and(|t| constant_time_eq(t, token));
    }
    if let Some(user) = &config.user {
        let user_ok = connect
            .user
            .as_deref()
            .is_some_and(|u| constant_time_eq(u, user));
        let expected = config.password.as_deref().unwrap_or("");
        let pass_ok = constant_time_eq(connect.pass.as_deref().unwrap_or(""), expected);
        return user_ok && pass_ok;
    }
    true
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
mod tests {
    use super::*;

    fn connect(user: Option<&str>, pass: Option<&str>, token: Option<&str>) -> ConnectInfo {
        ConnectInfo {
            user: user.map(str::to_string),
            pass: pass.map(str::to_string),
            auth_token: token.map(str::to_string),
            ..ConnectInfo::default()
        }
    }

    #[test]
    fn token_must_match_exactly() {
        let config = AuthConfig {
            token: Some("s3cr3t".into()),
            ..AuthConfig::default()
        };
        assert!(check(&config, &connect(None, None, Some("s3cr3t"))));
        assert!(!check(&config, &connect(None, None, Some("s3cr3"))));
        assert!(!check(&config, &connect(None, None, None)));
        assert!(!check(
            &config,
            &connect(Some("s3cr3t"), Some("s3cr3t"), None)
        ));
    }

    #[test]
    fn user_and_password_must_both_match() {
        let config = AuthConfig {
            user: Some("alice".into()),
            password: Some("pw".into()),
            ..AuthConfig::default()
        };
        assert!(check(&config, &connect(Some("alice"), Some("pw"), None)));
        assert!(!check(&config, &connect(Some("alice"), Some("px"), None)));
        assert!(!check(&config, &connect(Some("bob"), Some("pw"), None)));
        assert!(!check(&config, &connect(None, None, None)));
    }
}
