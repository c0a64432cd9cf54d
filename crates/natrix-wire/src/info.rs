//! The JSON of INFO (server to client) and CONNECT (client to server), with nats-server's
//! field names, field order and defaults (nats-server 2.9 `Info` and `ClientOpts`).

use serde::{Deserialize, Serialize};

/// INFO sent to each client on connect (and again when cluster membership changes).
/// Fields are declared in nats-server's order, so the JSON reads the same; optional fields are
/// omitted when empty, as Go's `omitempty` does.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServerInfo {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: i32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub git_commit: String,
    pub go: String,
    pub host: String,
    pub port: u16,
    pub headers: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_available: bool,
    pub max_payload: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub jetstream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub client_id: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster_dynamic: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ws_connect_urls: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ldm: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// CONNECT options a client sends. Missing fields take nats-server's defaults: `verbose` and
/// `pedantic` are TRUE when absent (so `CONNECT {}` gets `+OK` replies), `echo` absent means
/// true. Unknown fields are ignored, as Go's `encoding/json` does.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct ConnectInfo {
    pub verbose: bool,
    pub pedantic: bool,
    pub tls_required: bool,
    pub echo: Option<bool>,
    pub headers: bool,
    pub no_responders: bool,
    pub name: Option<String>,
    pub lang: Option<String>,
    pub version: Option<String>,
    pub protocol: i32,
    pub user: Option<String>,
    pub pass: Option<String>,
    pub auth_token: Option<String>,
    pub jwt: Option<String>,
    pub nkey: Option<String>,
    pub sig: Option<String>,
    pub account: Option<String>,
    pub new_account: bool,
}

impl Default for ConnectInfo {
    fn default() -> Self {
        Self {
            verbose: true,
            pedantic: true,
            tls_required: false,
            echo: None,
            headers: false,
            no_responders: false,
            name: None,
            lang: None,
            version: None,
            protocol: 0,
            user: None,
            pass: None,
            auth_token: None,
            jwt: None,
            nkey: None,
            sig: None,
            account: None,
            new_account: false,
        }
    }
}

impl ConnectInfo {
    /// Whether the client wants its own publishes delivered back (nats-server default: yes).
    pub fn echo(&self) -> bool {
        self.echo.unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_info_json_has_nats_server_keys_in_its_order() {
        let info = ServerInfo {
            server_id: "NID".into(),
            server_name: "n1".into(),
            version: "2.9.10".into(),
            proto: 1,
            go: "go1.19.8".into(),
            host: "0.0.0.0".into(),
            port: 4222,
            headers: true,
            max_payload: 1_048_576,
            client_id: 131,
            client_ip: "127.0.0.1".into(),
            ..ServerInfo::default()
        };
        // Captured from nats-server 2.9.10 (ids shortened).
        let expected = r#"{"server_id":"NID","server_name":"n1","version":"2.9.10","proto":1,"go":"go1.19.8","host":"0.0.0.0","port":4222,"headers":true,"max_payload":1048576,"client_id":131,"client_ip":"127.0.0.1"}"#;
        assert_eq!(serde_json::to_string(&info).unwrap(), expected);
    }

    #[test]
    fn server_info_with_auth_jetstream_and_cluster_matches_nats_server() {
        let info = ServerInfo {
            server_id: "NID".into(),
            server_name: "NID".into(),
            version: "2.9.10".into(),
            proto: 1,
            go: "go1.19.8".into(),
            host: "0.0.0.0".into(),
            port: 14223,
            headers: true,
            auth_required: true,
            max_payload: 1_048_576,
            jetstream: true,
            client_id: 4,
            client_ip: "127.0.0.1".into(),
            cluster: Some("c1".into()),
            ..ServerInfo::default()
        };
        // nats-server 2.9.10 -js --user a --pass b --cluster_name c1 (ids shortened).
        let expected = r#"{"server_id":"NID","server_name":"NID","version":"2.9.10","proto":1,"go":"go1.19.8","host":"0.0.0.0","port":14223,"headers":true,"auth_required":true,"max_payload":1048576,"jetstream":true,"client_id":4,"client_ip":"127.0.0.1","cluster":"c1"}"#;
        assert_eq!(serde_json::to_string(&info).unwrap(), expected);
    }

    #[test]
    fn server_info_optional_fields_appear_when_set() {
        let info = ServerInfo {
            auth_required: true,
            jetstream: true,
            nonce: Some("abc".into()),
            connect_urls: vec!["10.0.0.1:4222".into()],
            ldm: true,
            ..ServerInfo::default()
        };
        let json = serde_json::to_string(&info).unwrap();
        for key in [
            r#""auth_required":true"#,
            r#""jetstream":true"#,
            r#""nonce":"abc""#,
            r#""connect_urls":["10.0.0.1:4222"]"#,
            r#""ldm":true"#,
        ] {
            assert!(json.contains(key), "{json} lacks {key}");
        }
        assert_eq!(serde_json::from_str::<ServerInfo>(&json).unwrap(), info);
    }

    #[test]
    fn empty_connect_takes_nats_server_defaults() {
        let c: ConnectInfo = serde_json::from_str("{}").unwrap();
        assert!(c.verbose && c.pedantic && c.echo() && !c.headers);
    }

    #[test]
    fn connect_from_a_nats_go_client_parses_and_ignores_unknown_fields() {
        let json = r#"{"verbose":false,"pedantic":false,"tls_required":false,"name":"svc","lang":"go","version":"1.28.0","protocol":1,"echo":false,"headers":true,"no_responders":true,"user":"u","pass":"p","future_field":[1,2]}"#;
        let c: ConnectInfo = serde_json::from_str(json).unwrap();
        assert!(!c.verbose && !c.pedantic && !c.echo() && c.headers && c.no_responders);
        assert_eq!(
            (c.name.as_deref(), c.user.as_deref(), c.pass.as_deref()),
            (Some("svc"), Some("u"), Some("p"))
        );
        assert_eq!(c.protocol, 1);
    }
}
