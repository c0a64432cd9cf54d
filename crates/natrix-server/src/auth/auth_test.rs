use super::*;
use crate::config::UserConfig;

fn connect(user: Option<&str>, pass: Option<&str>, token: Option<&str>) -> ConnectInfo {
    ConnectInfo {
        user: user.map(str::to_string),
        pass: pass.map(str::to_string),
        auth_token: token.map(str::to_string),
        ..ConnectInfo::default()
    }
}

fn accepted(verdict: Verdict) -> Option<Identity> {
    match verdict {
        Verdict::Accepted(identity) => Some(identity),
        Verdict::NeedsBcrypt {
            password,
            hash,
            identity,
        } => bcrypt_matches(&password, &hash).then_some(identity),
        Verdict::Rejected => None,
    }
}

fn auth(config: AuthConfig) -> Authenticator {
    match Authenticator::new(&config) {
        Ok(a) => a,
        Err(err) => panic!("config refused: {err}"),
    }
}

fn user(name: &str, password: &str) -> UserConfig {
    UserConfig {
        user: Some(name.into()),
        password: Some(password.into()),
        ..UserConfig::default()
    }
}

/// bcrypt of "s3cret" at cost 4 (cheap enough for tests).
const S3CRET_BCRYPT: &str = "$2b$04$xaBmIBJnThhjuylTwyw4F.1cryKdT0kzLF/dc.PyqdD90eixfkoeW";

#[test]
fn token_must_match_exactly() {
    let a = auth(AuthConfig {
        token: Some("s3cr3t".into()),
        ..AuthConfig::default()
    });
    assert!(accepted(a.authenticate(&connect(None, None, Some("s3cr3t")), None)).is_some());
    assert!(accepted(a.authenticate(&connect(None, None, Some("s3cr3")), None)).is_none());
    assert!(accepted(a.authenticate(&connect(None, None, None), None)).is_none());
    assert!(
        accepted(a.authenticate(&connect(Some("s3cr3t"), Some("s3cr3t"), None), None)).is_none()
    );
}

#[test]
fn user_and_password_must_both_match() {
    let a = auth(AuthConfig {
        user: Some("alice".into()),
        password: Some("pw".into()),
        ..AuthConfig::default()
    });
    let who = accepted(a.authenticate(&connect(Some("alice"), Some("pw"), None), None));
    assert_eq!(who.and_then(|i| i.user).as_deref(), Some("alice"));
    assert!(accepted(a.authenticate(&connect(Some("alice"), Some("px"), None), None)).is_none());
    assert!(accepted(a.authenticate(&connect(Some("bob"), Some("pw"), None), None)).is_none());
    assert!(accepted(a.authenticate(&connect(None, None, None), None)).is_none());
}

#[test]
fn bcrypt_passwords_and_tokens_are_checked_against_the_hash() {
    assert!(is_bcrypt(S3CRET_BCRYPT));
    assert!(is_bcrypt("$2a$11$abc"));
    assert!(!is_bcrypt("$2c$11$abc"));
    assert!(!is_bcrypt("$2a$1$abc"));
    assert!(!is_bcrypt("plain"));
    let a = auth(AuthConfig {
        users: vec![user("alice", S3CRET_BCRYPT)],
        ..AuthConfig::default()
    });
    assert!(
        accepted(a.authenticate(&connect(Some("alice"), Some("s3cret"), None), None)).is_some()
    );
    assert!(accepted(a.authenticate(&connect(Some("alice"), Some("wrong"), None), None)).is_none());
    // The hash itself is not the password.
    assert!(
        accepted(a.authenticate(&connect(Some("alice"), Some(S3CRET_BCRYPT), None), None))
            .is_none()
    );
    let t = auth(AuthConfig {
        token: Some(S3CRET_BCRYPT.into()),
        ..AuthConfig::default()
    });
    assert!(accepted(t.authenticate(&connect(None, None, Some("s3cret")), None)).is_some());
}

#[test]
fn users_get_their_own_or_the_default_permissions() {
    let own = PermissionsConfig {
        publish: Some(crate::config::SubjectPermissionConfig {
            allow: Some(vec!["own.>".into()]),
            deny: vec![],
        }),
        ..PermissionsConfig::default()
    };
    let default = PermissionsConfig {
        publish: Some(crate::config::SubjectPermissionConfig {
            allow: Some(vec!["default.>".into()]),
            deny: vec![],
        }),
        ..PermissionsConfig::default()
    };
    let a = auth(AuthConfig {
        users: vec![
            UserConfig {
                permissions: Some(own),
                ..user("a", "pw")
            },
            user("b", "pw"),
        ],
        default_permissions: Some(default),
        ..AuthConfig::default()
    });
    let perms = |name| {
        accepted(a.authenticate(&connect(Some(name), Some("pw"), None), None))
            .and_then(|i| i.permissions)
            .expect("accepted with permissions")
    };
    assert!(perms("a").can_publish(b"own.x"));
    assert!(!perms("a").can_publish(b"default.x"));
    assert!(perms("b").can_publish(b"default.x"));
}

#[test]
fn no_auth_user_is_used_only_without_credentials() {
    let a = auth(AuthConfig {
        users: vec![user("guest", "pw"), user("admin", "root")],
        no_auth_user: Some("guest".into()),
        ..AuthConfig::default()
    });
    assert!(a.required());
    assert!(!a.advertise_required());
    let who = accepted(a.authenticate(&connect(None, None, None), None));
    assert_eq!(who.and_then(|i| i.user).as_deref(), Some("guest"));
    let who = accepted(a.authenticate(&connect(Some("admin"), Some("root"), None), None));
    assert_eq!(who.and_then(|i| i.user).as_deref(), Some("admin"));
    assert!(accepted(a.authenticate(&connect(Some("admin"), Some("bad"), None), None)).is_none());
    assert!(accepted(a.authenticate(&connect(None, None, Some("tok")), None)).is_none());
}

#[test]
fn nkey_users_sign_the_nonce() {
    let key = nkeys::KeyPair::new_user();
    let public = key.public_key();
    let a = auth(AuthConfig {
        users: vec![UserConfig {
            nkey: Some(public.clone()),
            ..UserConfig::default()
        }],
        ..AuthConfig::default()
    });
    assert!(a.needs_nonce());
    let nonce = new_nonce();
    assert_eq!(nonce.len(), 15);
    let sig = key.sign(nonce.as_bytes()).expect("sign");
    let with_sig = |sig: String, nkey: &str| ConnectInfo {
        nkey: Some(nkey.into()),
        sig: Some(sig),
        ..ConnectInfo::default()
    };
    let raw_url = URL_SAFE_NO_PAD.encode(&sig);
    let who = accepted(a.authenticate(&with_sig(raw_url.clone(), &public), Some(&nonce)));
    assert_eq!(who.and_then(|i| i.user), Some(public.clone()));
    // nats-server also takes standard base64 with padding, but not base64url with padding.
    let std = STANDARD.encode(&sig);
    assert!(accepted(a.authenticate(&with_sig(std, &public), Some(&nonce))).is_some());
    let url_padded = base64::engine::general_purpose::URL_SAFE.encode(&sig);
    if url_padded != raw_url && url_padded.contains(['-', '_']) {
        assert!(accepted(a.authenticate(&with_sig(url_padded, &public), Some(&nonce))).is_none());
    }
    // Another nonce, another key, or garbage: refused.
    let other_nonce = new_nonce();
    assert!(
        accepted(a.authenticate(&with_sig(raw_url.clone(), &public), Some(&other_nonce))).is_none()
    );
    let stranger = nkeys::KeyPair::new_user().public_key();
    assert!(accepted(a.authenticate(&with_sig(raw_url, &stranger), Some(&nonce))).is_none());
    assert!(accepted(a.authenticate(&with_sig("!!".into(), &public), Some(&nonce))).is_none());
}

#[test]
fn bad_settings_are_refused_with_nats_server_texts() {
    let err = |config: AuthConfig| match Authenticator::new(&config) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted {config:?}"),
    };
    assert_eq!(
        err(AuthConfig {
            users: vec![UserConfig {
                nkey: Some("bad".into()),
                ..UserConfig::default()
            }],
            ..AuthConfig::default()
        }),
        "Not a valid public nkey for a user: \"bad\""
    );
    assert_eq!(
        err(AuthConfig {
            users: vec![user("a", "b"), user("a", "c")],
            ..AuthConfig::default()
        }),
        "Duplicate user \"a\" detected"
    );
    assert_eq!(
        err(AuthConfig {
            no_auth_user: Some("zed".into()),
            ..AuthConfig::default()
        }),
        "no_auth_user: \"zed\" present, but users are not defined"
    );
    assert_eq!(
        err(AuthConfig {
            users: vec![user("a", "b")],
            no_auth_user: Some("zed".into()),
            ..AuthConfig::default()
        }),
        "no_auth_user: \"zed\" not present as user in authorization block or account configuration"
    );
}
