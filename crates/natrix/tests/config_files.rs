//! nats-server style configuration files and command lines map onto the `ServerConfig` natrix
//! starts from; broken ones are refused with the file and line of the mistake.

use std::path::{Path, PathBuf};
use std::time::Duration;

use natrix::{Cli, CliError, Command, OptionsError, Settings};
use natrix_conf::Loader;
use natrix_server::{AuthConfig, ClusterConfig, JetStreamConfig, Limits, ServerConfig};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn loader() -> Loader {
    Loader::with_env(|name| match name {
        "NATRIX_IT_CLIENT_PORT" => Some("4333".to_string()),
        "NATRIX_IT_TOKEN" => Some("s3cr3t".to_string()),
        _ => None,
    })
}

fn run(args: &[&str]) -> Result<Command, CliError> {
    let argv = std::iter::once("natrix-server").chain(args.iter().copied());
    let cli = Cli::parse_args(argv).map_err(|e| CliError::Usage(e.to_string()))?;
    cli.into_command(&loader())
}

fn settings(args: &[&str]) -> Settings {
    match run(args) {
        Ok(Command::Run(settings)) => *settings,
        Ok(other) => panic!("expected Run, got {other:?}"),
        Err(err) => panic!("unexpected error: {err}"),
    }
}

fn error(args: &[&str]) -> String {
    match run(args) {
        Ok(other) => panic!("expected an error, got {other:?}"),
        Err(err) => err.to_string(),
    }
}

fn config_error(dir: &Path, text: &str) -> String {
    let path = write(dir, "broken.conf", text);
    error(&["-c", path.to_str().unwrap()])
}

const DOC_STYLE_MAIN: &str = r#"
# natrix test configuration, written like the nats-server documentation examples.
server_name: "n1"
listen: 127.0.0.1:4222
port = $NATRIX_IT_CLIENT_PORT      // from the environment
client_advertise "nats.example.com:4222"
http: "127.0.0.1:8222"

SIZE_LIMIT = 8MB
max_payload: $SIZE_LIMIT
max_pending: 128MB
max_control_line: 8KB
max_connections: 10K
max_subscriptions = 1000
ping_interval: "1m30s"
ping_max: 3
write_deadline: 5s
lame_duck_duration: "1m"
lame_duck_grace_period: "3s"
server_tags: ["az:1", region:eu]

debug: false
trace: false
logtime: true
log_file: "/var/log/natrix.log"

authorization {
  user: alice
  password: "p@ss word"
  timeout: 0.5
}

include ./conf.d/jetstream.conf

cluster {
  name: "c1"
  listen: 0.0.0.0:6333
  cluster_advertise: "n1.example:16333"
  routes = [
    nats-route://n2:6333
    nats-route://n3:6333, nats://user:pw@n4:6333
  ]
}
"#;

const DOC_STYLE_JETSTREAM: &str = r#"
jetstream {
  store_dir: "/data/js"
  max_memory_store: 1GB
  max_file_store: "10G"
  domain = hub
  raft_snapshot_every: 500
}
"#;

#[test]
fn a_documentation_style_file_with_includes_variables_and_env_maps_to_the_expected_config() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(dir.path(), "main.conf", DOC_STYLE_MAIN);
    write(dir.path(), "conf.d/jetstream.conf", DOC_STYLE_JETSTREAM);

    let s = settings(&["-c", main.to_str().unwrap()]);

    let expected = ServerConfig {
        server_name: Some("n1".into()),
        host: "127.0.0.1".into(),
        port: 4333,
        client_advertise: Some("nats.example.com:4222".into()),
        http_host: Some("127.0.0.1".into()),
        http_port: Some(8222),
        https_port: None,
        limits: Limits {
            max_payload: 8 * 1024 * 1024,
            max_control_line: 8 * 1024,
            max_pending: 128 * 1024 * 1024,
            max_connections: 10_000,
            max_subscriptions: 1000,
            ping_interval: Duration::from_secs(90),
            ping_max: 3,
            write_deadline: Duration::from_secs(5),
            auth_timeout: Duration::from_millis(500),
        },
        auth: AuthConfig {
            user: Some("alice".into()),
            password: Some("p@ss word".into()),
            ..AuthConfig::default()
        },
        account: natrix_server::AccountConfig::default(),
        jetstream: Some(JetStreamConfig {
            store_dir: Some("/data/js".into()),
            max_memory_store: Some(1 << 30),
            max_file_store: Some(10 << 30),
            domain: Some("hub".into()),
            sync_interval: None,
            raft_snapshot_every: Some(500),
        }),
        cluster: Some(ClusterConfig {
            name: Some("c1".into()),
            host: "0.0.0.0".into(),
            port: 6333,
            routes: vec![
                "nats-route://n2:6333".into(),
                "nats-route://n3:6333".into(),
                "nats://user:pw@n4:6333".into(),
            ],
            advertise: Some("n1.example:16333".into()),
            tls: None,
        }),
        lame_duck_duration: Duration::from_secs(60),
        lame_duck_grace_period: Duration::from_secs(3),
        tags: vec!["az:1".into(), "region:eu".into()],
        config_file: Some(main.clone()),
        tls: None,
    };
    assert_eq!(s.server, expected);
    assert_eq!(s.log.log_file, Some(PathBuf::from("/var/log/natrix.log")));
    assert!(s.log.logtime && !s.log.debug && !s.log.trace);
    // Clustering is active: no warning about it.
    assert!(
        !s.warnings
            .iter()
            .any(|w| w.contains("Clustering is not available")),
        "{:?}",
        s.warnings
    );
}

#[test]
fn an_empty_file_gives_nats_server_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "empty.conf", "# nothing here\n");
    let s = settings(&["-c", path.to_str().unwrap()]);
    let expected = ServerConfig {
        config_file: Some(path),
        ..ServerConfig::default()
    };
    assert_eq!(s.server, expected);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn option_names_are_case_insensitive_and_aliases_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "aliases.conf",
        "PORT: 4444\nnet: 10.0.0.1\nmonitor_port: 9222\nmax_conn: 5\nmax_subs: 6\nlogfile: x.log\ntrace_verbose: true\njetstream: enabled\nstore_dir: /js\n",
    );
    let s = settings(&["-c", path.to_str().unwrap()]);
    assert_eq!(s.server.port, 4444);
    assert_eq!(s.server.host, "10.0.0.1");
    assert_eq!(s.server.http_port, Some(9222));
    assert_eq!(s.server.limits.max_connections, 5);
    assert_eq!(s.server.limits.max_subscriptions, 6);
    assert_eq!(s.log.log_file, Some(PathBuf::from("x.log")));
    assert!(s.log.trace);
    assert_eq!(
        s.server.jetstream.and_then(|j| j.store_dir),
        Some(PathBuf::from("/js"))
    );
}

#[test]
fn random_ports_and_integer_durations_follow_nats_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "p.conf",
        "port: -1\nhttp_port: -1\nping_interval: 60\nwrite_deadline: 2\n",
    );
    let s = settings(&["-c", path.to_str().unwrap()]);
    assert_eq!(s.server.port, 0);
    assert_eq!(s.server.http_port, Some(0));
    assert_eq!(s.server.limits.ping_interval, Duration::from_secs(60));
    assert_eq!(s.server.limits.write_deadline, Duration::from_secs(2));
    assert!(
        s.warnings.iter().any(|w| w.ends_with("p.conf:3:1: invalid use of field \"ping_interval\": ping_interval should be converted to a duration")),
        "{:?}",
        s.warnings
    );
}

#[test]
fn a_token_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "t.conf",
        "authorization { token: $NATRIX_IT_TOKEN }\n",
    );
    assert_eq!(
        settings(&["-c", path.to_str().unwrap()])
            .server
            .auth
            .token
            .as_deref(),
        Some("s3cr3t")
    );
}

#[test]
fn variables_used_by_reference_are_not_unknown_fields_but_unused_ones_are() {
    let dir = tempfile::tempdir().unwrap();
    let ok = write(dir.path(), "used.conf", "P = 4555\nport: $P\n");
    assert_eq!(settings(&["-c", ok.to_str().unwrap()]).server.port, 4555);
    let err = config_error(dir.path(), "P = 4555\nport: 4222\n");
    assert!(
        err.ends_with("broken.conf:1:1: unknown field \"P\""),
        "{err}"
    );
}

#[test]
fn an_unknown_field_names_file_line_and_column_like_nats_server() {
    let dir = tempfile::tempdir().unwrap();
    let err = config_error(
        dir.path(),
        "port: 4222\ncluster {\n  name: x\n  bogus: 2\n}\n",
    );
    assert!(
        err.ends_with("broken.conf:4:3: unknown field \"bogus\""),
        "{err}"
    );
    assert!(err.contains(dir.path().to_str().unwrap()), "{err}");
}

#[test]
fn bad_values_name_the_option_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let err = config_error(dir.path(), "\nport: \"abc\"\n");
    assert!(
        err.ends_with(
            "broken.conf:2:1: invalid value for \"port\": expected an integer, got string"
        ),
        "{err}"
    );
    let err = config_error(dir.path(), "port: 70000\n");
    assert!(err.contains("broken.conf:1:1: invalid port 70000"), "{err}");
    let err = config_error(dir.path(), "ping_interval: \"soon\"\n");
    assert!(
        err.ends_with(
            "broken.conf:1:1: error parsing ping_interval: time: invalid duration \"soon\""
        ),
        "{err}"
    );
    let err = config_error(dir.path(), "lame_duck_duration: \"10s\"\n");
    assert!(
        err.ends_with("broken.conf:1:1: invalid lame_duck_duration of 10s, minimum is 30 seconds"),
        "{err}"
    );
    let err = config_error(dir.path(), "server_name: \"a b\"\n");
    assert!(
        err.ends_with("broken.conf:1:1: server name cannot contain spaces"),
        "{err}"
    );
    let err = config_error(dir.path(), "max_payload: 3GB\n");
    assert!(
        err.ends_with("broken.conf:1:1: max_payload value is too big"),
        "{err}"
    );
    let err = config_error(
        dir.path(),
        "cluster {\n  routes: [\"nats-route://a:1\", \"::bad\"]\n}\n",
    );
    assert!(
        err.contains("broken.conf:2:32: error parsing route url [\"::bad\"]"),
        "{err}"
    );
    let err = config_error(dir.path(), "jetstream: sometimes\n");
    assert!(
        err.contains("Expected 'enabled' or 'disabled' for string value, got 'sometimes'"),
        "{err}"
    );
}

#[test]
fn every_mistake_of_a_file_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let err = config_error(dir.path(), "foo: 1\nport: true\nbar: 2\n");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].ends_with("broken.conf:1:1: unknown field \"foo\""),
        "{err}"
    );
    assert!(
        lines[1].contains("broken.conf:2:1: invalid value for \"port\""),
        "{err}"
    );
    assert!(
        lines[2].ends_with("broken.conf:3:1: unknown field \"bar\""),
        "{err}"
    );
}

#[test]
fn a_payload_larger_than_max_pending_is_refused_with_nats_server_wording() {
    let dir = tempfile::tempdir().unwrap();
    let err = config_error(dir.path(), "max_pending: 1K\nmax_payload: 2K\n");
    assert_eq!(
        err,
        "max_payload (2000) cannot be higher than max_pending (1000)"
    );
}

#[test]
fn user_and_token_together_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = config_error(dir.path(), "authorization { user: a, token: b }\n");
    assert_eq!(err, "Cannot have a user/pass and token");
}

const USERS_CONF: &str = r#"
no_auth_user: guest
authorization {
  timeout: 3
  default_permissions: { subscribe: { deny: "admin.>" } }
  users: [
    { user: alice, password: "$2b$04$xaBmIBJnThhjuylTwyw4F.1cryKdT0kzLF/dc.PyqdD90eixfkoeW" }
    { user: guest, password: "", permissions: { publish: "public.>", subscribe: ["public.>", "work workers"] } }
    { user: svc, pass: pw, permissions: { pub: { deny: "admin.>" }, sub: "req", allow_responses: { max: 3, expires: "1m" } } }
    { nkey: UAB2CB576PHBBPQ5ODORRZ2LYCMWPZGWGCN2KDK7DXOIMZASKUY3RLKK, permission: { publish: { allow: ["nk.>"] } } }
  ]
}
"#;

#[test]
fn users_permissions_and_no_auth_user_map_like_nats_server() {
    use natrix_server::{
        PermissionsConfig, ResponsePermissionConfig, SubjectPermissionConfig, UserConfig,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "users.conf", USERS_CONF);
    let s = settings(&["-c", path.to_str().unwrap()]);
    let auth = &s.server.auth;
    assert_eq!(auth.no_auth_user.as_deref(), Some("guest"));
    assert_eq!(s.server.limits.auth_timeout, Duration::from_secs(3));
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let deny_admin = SubjectPermissionConfig {
        allow: None,
        deny: strings(&["admin.>"]),
    };
    assert_eq!(
        auth.default_permissions,
        Some(PermissionsConfig {
            subscribe: Some(deny_admin.clone()),
            ..PermissionsConfig::default()
        })
    );
    assert_eq!(auth.users.len(), 4);
    assert_eq!(
        auth.users[0],
        UserConfig {
            user: Some("alice".into()),
            password: Some("$2b$04$xaBmIBJnThhjuylTwyw4F.1cryKdT0kzLF/dc.PyqdD90eixfkoeW".into()),
            ..UserConfig::default()
        }
    );
    let guest = auth.users[1].permissions.clone().unwrap_or_default();
    assert_eq!(
        guest.publish,
        Some(SubjectPermissionConfig {
            allow: Some(strings(&["public.>"])),
            deny: vec![],
        })
    );
    assert_eq!(
        guest.subscribe,
        Some(SubjectPermissionConfig {
            allow: Some(strings(&["public.>", "work workers"])),
            deny: vec![],
        })
    );
    let svc = auth.users[2].permissions.clone().unwrap_or_default();
    assert_eq!(svc.publish, Some(deny_admin));
    assert_eq!(
        svc.allow_responses,
        Some(ResponsePermissionConfig {
            max: 3,
            expires: Duration::from_secs(60)
        })
    );
    assert_eq!(
        auth.users[3].nkey.as_deref(),
        Some("UAB2CB576PHBBPQ5ODORRZ2LYCMWPZGWGCN2KDK7DXOIMZASKUY3RLKK")
    );
}

const ACCOUNT_CONF: &str = r#"
jetstream: enabled
accounts {
  APP: {
    jetstream: { max_streams: 3, max_consumers: 2, max_file: 1MB, max_mem: 512KB,
                 max_ack_pending: 100, max_bytes_required: true,
                 store_max_stream_bytes: 300000, memory_max_stream_bytes: 200000 }
    default_permissions: { subscribe: { deny: "admin.>" } }
    users: [ {user: a, password: a}, {user: b, password: b} ]
  }
}
no_auth_user: b
"#;

#[test]
fn a_single_account_with_jetstream_limits_maps_like_nats_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "account.conf", ACCOUNT_CONF);
    let s = settings(&["-c", path.to_str().unwrap()]);
    let account = &s.server.account;
    assert_eq!(account.name, "APP");
    assert_eq!(
        account.jetstream,
        Some(natrix_server::AccountLimits {
            max_memory: 512 * 1024,
            max_storage: 1024 * 1024,
            max_streams: 3,
            max_consumers: 2,
            max_ack_pending: 100,
            memory_max_stream_bytes: 200_000,
            storage_max_stream_bytes: 300_000,
            max_bytes_required: true,
        })
    );
    let auth = &s.server.auth;
    let users: Vec<_> = auth
        .users
        .iter()
        .filter_map(|u| u.user.as_deref())
        .collect();
    assert_eq!(users, ["a", "b"]);
    assert_eq!(auth.no_auth_user.as_deref(), Some("b"));
    assert!(auth.default_permissions.is_some());
    // `jetstream: enabled` and no `jetstream` at all.
    let enabled = write(
        dir.path(),
        "enabled.conf",
        "accounts { A: { jetstream: enabled, users: [{user: a}] } }\n",
    );
    let s = settings(&["-c", enabled.to_str().unwrap()]);
    assert_eq!(
        s.server.account.jetstream,
        Some(natrix_server::AccountLimits::default())
    );
    let without = write(
        dir.path(),
        "without.conf",
        "accounts { A: { users: [{user: a}] } }\n",
    );
    let s = settings(&["-c", without.to_str().unwrap()]);
    assert_eq!(
        (s.server.account.name.as_str(), s.server.account.jetstream),
        ("A", None)
    );
    // The system account is left out (natrix serves no `$SYS` requests): its users cannot log
    // in, and the application's account is the one served.
    let with_system = write(
        dir.path(),
        "system.conf",
        "system_account: SYS\naccounts {\n  SYS: { users: [{user: admin, password: x}] }\n  \
         APP: { jetstream: enabled, users: [{user: a}] }\n}\n",
    );
    let s = settings(&["-c", with_system.to_str().unwrap()]);
    assert_eq!(s.server.account.name, "APP");
    let users: Vec<_> = s
        .server
        .auth
        .users
        .iter()
        .filter_map(|u| u.user.as_deref())
        .collect();
    assert_eq!(users, ["a"]);
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("system account \"SYS\"")),
        "{:?}",
        s.warnings
    );
    // Without accounts: the global account, JetStream without account limits.
    let s = settings(&[]);
    assert_eq!(s.server.account.name, "$G");
    assert_eq!(
        s.server.account.jetstream,
        Some(natrix_server::AccountLimits::default())
    );
}

#[test]
fn accounts_natrix_cannot_serve_are_refused_and_bad_limits_named_like_nats_server() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "accounts { $G: { users: [{user: a}] } }\n",
            "\"$G\" is a Reserved Account",
        ),
        (
            "accounts { A: { jetstream: { max_streams: 1, bogus: 2 }, users: [{user: a}] } }\n",
            "broken.conf:1:46: unknown field \"bogus\"",
        ),
        (
            "accounts { A: { jetstream: { max_mem: \"1G\" }, users: [{user: a}] } }\n",
            "broken.conf:1:30: Expected a parseable size for \"max_mem\", got 1G",
        ),
        (
            "accounts { A: { jetstream: maybe, users: [{user: a}] } }\n",
            "Expected 'enabled' or 'disabled' for string value, got 'maybe'",
        ),
        (
            "accounts { A: { bogus: 1, users: [{user: a}] } }\n",
            "broken.conf:1:17: unknown field \"bogus\"",
        ),
        (
            "accounts { A: { users: [{user: a}] }, B: { users: [{user: b}] } }\n",
            "natrix serves a single account, but `accounts` defines 2: A, B",
        ),
        (
            "authorization { users: [{user: x}] }\naccounts { A: { users: [{user: a}] } }\n",
            "natrix serves a single account: define users either in `authorization` or in account \"A\", not both",
        ),
    ];
    for (text, expected) in cases {
        let err = config_error(dir.path(), text);
        assert!(err.ends_with(expected), "{text:?}: {err}");
    }
}

#[test]
fn bad_users_and_permissions_are_refused_with_nats_server_texts() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "authorization { token: abc, users: [{user: a, password: b}] }\n",
            "Can not have a token and a users array",
        ),
        (
            "authorization { user: x, password: y, users: [{user: a, password: b}] }\n",
            "Can not have a single user/pass and a users array",
        ),
        (
            "authorization { users: [{user: a, password: b}, {user: a, password: c}] }\n",
            "Duplicate user \"a\" detected",
        ),
        (
            "no_auth_user: zed\nauthorization { users: [{user: a, password: b}] }\n",
            "no_auth_user: \"zed\" not present as user in authorization block or account configuration",
        ),
        (
            "no_auth_user: zed\n",
            "no_auth_user: \"zed\" present, but users are not defined",
        ),
        (
            "authorization { users: [{user: a, password: b, permissions: {publish: {allow: \"x\", bogus: 1}}}] }\n",
            "Unknown field name \"bogus\" parsing subject permissions, only 'allow' or 'deny' are permitted",
        ),
        (
            "authorization { users: [{user: a, password: b, permissions: {bogus: 1}}] }\n",
            "Unknown field \"bogus\" parsing permissions",
        ),
        (
            "authorization { users: [{user: a, password: b, flavor: 1}] }\n",
            "unknown field \"flavor\"",
        ),
        (
            "authorization { users: [{nkey: UAB2CB576PHBBPQ5ODORRZ2LYCMWPZGWGCN2KDK7DXOIMZASKUY3RLKK, password: x}] }\n",
            "Nkey users do not take usernames or passwords",
        ),
        (
            "authorization { users: [{nkey: bad}] }\n",
            "Not a valid public nkey for a user: \"bad\"",
        ),
        (
            "authorization { users: [{user: a, password: b, permissions: {subscribe: \"foo..bar\"}}] }\n",
            "subject \"foo..bar\" is not a valid subject",
        ),
        (
            "authorization { users: [{user: a, account: A}] }\n",
            "\"account\" is not supported by natrix yet",
        ),
    ];
    for (text, expected) in cases {
        let err = config_error(dir.path(), text);
        assert!(
            err.contains(expected),
            "{text}: got {err:?}, want {expected:?}"
        );
    }
}

#[test]
fn https_monitoring_is_configured_like_nats_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "https.conf", "https: \"127.0.0.1:8443\"\n");
    let s = settings(&["-c", path.to_str().unwrap()]);
    assert_eq!(s.server.https_port, Some(8443));
    assert_eq!(s.server.http_host.as_deref(), Some("127.0.0.1"));
    assert_eq!(settings(&["-ms", "9443"]).server.https_port, Some(9443));
    assert_eq!(settings(&["--https_port", "-1"]).server.https_port, Some(0));
    let path = write(dir.path(), "port.conf", "https_port: 8444\n");
    assert_eq!(
        settings(&["-c", path.to_str().unwrap()]).server.https_port,
        Some(8444)
    );
}

#[test]
fn syntax_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let err = config_error(dir.path(), "port: 4222\ncluster {\n  name: x\n");
    assert!(
        err.contains("broken.conf:4:") && err.contains("unexpected EOF processing map"),
        "{err}"
    );
    let err = config_error(dir.path(), "port: 4222 debug: true\n");
    assert!(err.contains("broken.conf:1:12:"), "{err}");
    let err = config_error(dir.path(), "a: 1\nport: $NOT_DEFINED_ANYWHERE_X\n");
    assert!(
        err.ends_with(
            "broken.conf:2:7: variable reference for 'NOT_DEFINED_ANYWHERE_X' can not be found"
        ),
        "{err}"
    );
}

#[test]
fn a_missing_include_names_the_including_line() {
    let dir = tempfile::tempdir().unwrap();
    let err = config_error(dir.path(), "port: 4222\n\ninclude ./nope.conf\n");
    assert!(
        err.contains("broken.conf:3:1: error parsing include file './nope.conf'"),
        "{err}"
    );
}

#[test]
fn an_include_cycle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.conf", "port: 1\ninclude b.conf\n");
    write(dir.path(), "b.conf", "debug: true\ninclude a.conf\n");
    let err = config_error(dir.path(), "include a.conf\n");
    assert!(err.contains("b.conf:2:1: include cycle: 'a.conf'"), "{err}");
}

#[test]
fn a_mistake_inside_an_included_file_names_that_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "inc/limits.conf",
        "max_payload: 1MB\nmax_bogus: 1\n",
    );
    let err = config_error(dir.path(), "include inc/limits.conf\n");
    assert!(
        err.ends_with("limits.conf:2:1: unknown field \"max_bogus\""),
        "{err}"
    );
}

#[test]
fn security_relevant_options_natrix_lacks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "port: 1\ntls {\n  cert_file: c\n  key_file: k\n  verify_and_map: true\n}\n",
            "broken.conf:5:3: \"verify_and_map\" is not supported by natrix yet",
        ),
        (
            "accounts { A: { users: [{user: a}], exports: [] } }\n",
            "broken.conf:1:37: \"exports\" is not supported by natrix yet",
        ),
        (
            "authorization {\n  auth_callout {}\n}\n",
            "broken.conf:2:3: \"auth_callout\" is not supported by natrix yet",
        ),
        (
            "leafnodes {}\n",
            "\"leafnodes\" is not supported by natrix yet",
        ),
        ("gateway {}\n", "\"gateway\" is not supported by natrix yet"),
        (
            "websocket {}\n",
            "\"websocket\" is not supported by natrix yet",
        ),
        ("mqtt {}\n", "\"mqtt\" is not supported by natrix yet"),
        (
            "operator: x.jwt\n",
            "\"operator\" is not supported by natrix yet",
        ),
        (
            "resolver: MEMORY\n",
            "\"resolver\" is not supported by natrix yet",
        ),
        (
            "cluster { tls { cert_file: c, key_file: k, pinned_certs: [] } }\n",
            "\"pinned_certs\" is not supported by natrix yet",
        ),
        (
            "jetstream { cipher: aes }\n",
            "\"cipher\" is not supported by natrix yet",
        ),
    ];
    for (text, expected) in cases {
        let err = config_error(dir.path(), text);
        assert!(err.ends_with(expected), "{text:?}: {err}");
    }
}

#[test]
fn harmless_options_natrix_lacks_are_accepted_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "h.conf",
        "pid_file: /tmp/n.pid\nports_file_dir: /tmp\nsyslog: false\nmax_traced_msg_len: 10\nconnect_error_reports: 5\nreconnect_error_reports: 5\ndisable_sublist_cache: true\nno_header_support: false\n",
    );
    let s = settings(&["-c", path.to_str().unwrap()]);
    assert_eq!(s.pid_file, Some(PathBuf::from("/tmp/n.pid")));
    assert_eq!(s.warnings.len(), 7, "{:?}", s.warnings);
    assert!(
        s.warnings[0].ends_with(
            "h.conf:2:1: \"ports_file_dir\" is not implemented by natrix and is ignored"
        )
    );
}

#[test]
fn nats_server_command_lines_map_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("js");
    let path = write(
        dir.path(),
        "f.conf",
        "server_name: from-file\nport: 4222\nhttp_port: 8222\ndebug: false\n",
    );
    let s = settings(&[
        "-p",
        "4333",
        "-m",
        "8333",
        "-js",
        "-sd",
        store.to_str().unwrap(),
        "-DV",
        "--user",
        "a",
        "--pass",
        "b",
        "-c",
        path.to_str().unwrap(),
    ]);
    assert_eq!(s.server.port, 4333);
    assert_eq!(s.server.http_port, Some(8333));
    assert_eq!(s.server.server_name.as_deref(), Some("from-file"));
    assert_eq!(
        s.server.jetstream,
        Some(JetStreamConfig {
            store_dir: Some(store),
            ..JetStreamConfig::default()
        })
    );
    assert!(s.log.debug && s.log.trace);
    assert_eq!(
        s.server.auth,
        AuthConfig {
            user: Some("a".into()),
            password: Some("b".into()),
            ..AuthConfig::default()
        }
    );
    assert_eq!(s.server.config_file, Some(path));
}

#[test]
fn flags_override_file_values_in_every_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "f.conf",
        "port: 1111\nhost: 10.0.0.1\nserver_name: file\nlogtime: true\ndebug: true\n",
    );
    let p = path.to_str().unwrap();
    let config_eq = format!("-config={p}");
    for args in [
        vec![
            "-c",
            p,
            "-port",
            "2222",
            "-a",
            "127.0.0.1",
            "-n",
            "flag",
            "-T=false",
            "-D=false",
        ],
        vec![
            "--config",
            p,
            "--port=2222",
            "--net",
            "127.0.0.1",
            "--server_name=flag",
            "--logtime=false",
            "--debug=false",
        ],
        vec![
            &config_eq,
            "-p",
            "2222",
            "-addr=127.0.0.1",
            "-name",
            "flag",
            "-logtime=0",
            "-debug=f",
        ],
    ] {
        let s = settings(&args);
        assert_eq!(s.server.port, 2222, "{args:?}");
        assert_eq!(s.server.host, "127.0.0.1", "{args:?}");
        assert_eq!(s.server.server_name.as_deref(), Some("flag"), "{args:?}");
        assert!(!s.log.logtime && !s.log.debug, "{args:?}");
    }
}

#[test]
fn random_port_and_cluster_flags_are_parsed_and_validated() {
    let s = settings(&[
        "-p",
        "-1",
        "--cluster",
        "nats://127.0.0.1:6444",
        "--routes",
        "nats-route://a:6444, nats://b:6444",
        "--cluster_name",
        "c9",
        "--cluster_advertise",
        "node9.example",
    ]);
    assert_eq!(s.server.port, 0);
    assert_eq!(
        s.server.cluster,
        Some(ClusterConfig {
            name: Some("c9".into()),
            host: "127.0.0.1".into(),
            port: 6444,
            routes: vec!["nats-route://a:6444".into(), "nats://b:6444".into()],
            advertise: Some("node9.example".into()),
            tls: None,
        })
    );
    assert!(error(&["--routes", "a:1"]).contains("error parsing route url"));
    assert!(error(&["--cluster", "http://x:1"]).contains("unsupported scheme"));
    assert!(error(&["-p", "99999"]).contains("invalid port 99999"));
}

#[test]
fn version_test_and_unsupported_flags() {
    assert!(matches!(run(&["-v"]), Ok(Command::Version)));
    assert!(matches!(run(&["--version"]), Ok(Command::Version)));
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "ok.conf", "port: 4222\n");
    assert!(matches!(
        run(&["-t", "-c", path.to_str().unwrap()]),
        Ok(Command::TestConfig(_))
    ));
    assert_eq!(
        error(&["--help_tls"]),
        "flag --help_tls is not supported by natrix yet"
    );
    assert!(matches!(run(&["-sl", "ldm=42"]), Ok(Command::Signal(_))));
    assert_eq!(error(&["-sl", "hup"]), r#"unknown signal "hup""#);
    assert!(error(&["-bogus"]).contains("--bogus"));
}

#[test]
fn max_payload_flag_is_a_size_and_still_bounded_by_max_pending() {
    assert_eq!(
        settings(&["--max_payload", "8MB"])
            .server
            .limits
            .max_payload,
        8 << 20
    );
    let err = error(&["--max_payload", "1GB"]);
    assert!(err.contains("cannot be higher than max_pending"), "{err}");
}

#[test]
fn a_missing_config_file_is_an_error_naming_it() {
    let err = error(&["-c", "/nonexistent/dir/natrix.conf"]);
    assert!(err.contains("/nonexistent/dir/natrix.conf"), "{err}");
}

#[test]
fn raft_snapshot_every_must_be_a_positive_count() {
    let dir = tempfile::tempdir().unwrap();
    for (value, expected) in [
        ("0", "raft_snapshot_every must be at least 1"),
        ("-5", "raft_snapshot_every value can not be negative"),
        ("\"often\"", "raft_snapshot_every"),
    ] {
        let err = config_error(
            dir.path(),
            &format!("jetstream {{ raft_snapshot_every: {value} }}\n"),
        );
        assert!(err.contains(expected), "{value}: {err}");
    }
}

#[test]
fn settings_from_a_map_report_options_errors_typed() {
    let map = loader()
        .parse_str("bogus: 1\n", "inline.conf", None)
        .unwrap();
    let mut s = Settings::default();
    match s.apply_map(&map) {
        Err(OptionsError::Invalid(errors)) => {
            assert_eq!(errors.len(), 1);
            assert_eq!(
                errors[0].to_string(),
                "inline.conf:1:1: unknown field \"bogus\""
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn tls_blocks_with_readable_files_map_to_the_config_and_raise_the_auth_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ca = natrix_testkit::tls::TestCa::new("conf").unwrap();
    let files = ca.issue(dir.path(), "node").unwrap();
    let text = format!(
        "tls {{\n  cert_file: {cert:?}\n  key_file: {key:?}\n  ca_file: {ca:?}\n  verify: true\n  timeout: \"1500ms\"\n}}\ncluster {{\n  listen: 127.0.0.1:-1\n  tls {{ cert_file: {cert:?}, key_file: {key:?}, ca_file: {ca:?} }}\n}}\n",
        cert = files.cert_file,
        key = files.key_file,
        ca = files.ca_file,
    );
    let path = write(dir.path(), "tls.conf", &text);
    let s = settings(&["-c", path.to_str().unwrap()]);
    assert_eq!(
        s.server.tls,
        Some(natrix_server::TlsConfig {
            verify: true,
            timeout: Duration::from_millis(1500),
            ..files.config()
        })
    );
    assert_eq!(
        s.server.cluster.as_ref().and_then(|c| c.tls.clone()),
        Some(files.config())
    );
    // nats-server: with TLS, an unset authorization timeout is the TLS timeout plus a second.
    assert_eq!(s.server.limits.auth_timeout, Duration::from_millis(2500));

    // One that is set stays.
    let path = write(
        dir.path(),
        "tls-auth.conf",
        &format!("{text}authorization {{ token: t, timeout: 5 }}\n"),
    );
    let s = settings(&["-c", path.to_str().unwrap()]);
    assert_eq!(s.server.limits.auth_timeout, Duration::from_secs(5));
}

#[test]
fn unusable_tls_files_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ca = natrix_testkit::tls::TestCa::new("conf").unwrap();
    let files = ca.issue(dir.path(), "node").unwrap();
    let other = natrix_testkit::tls::TestCa::new("other")
        .unwrap()
        .issue(dir.path(), "other")
        .unwrap();
    let cert = files.cert_file.display().to_string();
    let key = files.key_file.display().to_string();
    let cases = [
        (
            format!("tls {{ cert_file: \"/nonexistent/c.pem\", key_file: {key:?} }}\n"),
            "tls: error parsing X509 certificate/key pair: open /nonexistent/c.pem: No such file or directory".to_string(),
        ),
        (
            format!(
                "tls {{ cert_file: {cert:?}, key_file: {:?} }}\n",
                other.key_file.display().to_string()
            ),
            "tls: error parsing X509 certificate/key pair".to_string(),
        ),
        (
            format!("tls {{ cert_file: {cert:?}, key_file: {key:?}, verify: true }}\n"),
            "tls: TLS verify needs 'ca_file'".to_string(),
        ),
        (
            format!("cluster {{ tls {{ cert_file: {cert:?}, key_file: {key:?} }} }}\n"),
            "cluster tls: cluster TLS needs 'ca_file'".to_string(),
        ),
    ];
    for (text, expected) in cases {
        let err = config_error(dir.path(), &text);
        assert!(err.starts_with(&expected), "{text}: {err}");
    }

    // `-t` checks the files too, as nats-server's does.
    let path = write(
        dir.path(),
        "missing.conf",
        &format!("tls {{ cert_file: \"/nonexistent/c.pem\", key_file: {key:?} }}\n"),
    );
    assert!(run(&["-t", "-c", path.to_str().unwrap()]).is_err());
}

#[test]
fn tls_flags_enable_tls_like_nats_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = natrix_testkit::tls::TestCa::new("flags").unwrap();
    let files = ca.issue(dir.path(), "node").unwrap();
    let cert = files.cert_file.to_str().unwrap();
    let key = files.key_file.to_str().unwrap();
    let ca_file = files.ca_file.to_str().unwrap();

    // A certificate and key are enough: no --tls needed.
    let s = settings(&["--tlscert", cert, "--tlskey", key]);
    assert_eq!(s.server.tls, Some(natrix_server::TlsConfig::new(cert, key)));
    let s = settings(&[
        "-tlsverify",
        "-tlscert",
        cert,
        "-tlskey",
        key,
        "-tlscacert",
        ca_file,
    ]);
    assert_eq!(
        s.server.tls,
        Some(natrix_server::TlsConfig {
            verify: true,
            ..files.config()
        })
    );
    assert_eq!(
        error(&["--tls", "--tlscert", cert]),
        "TLS Server private key must be present and valid"
    );
    assert_eq!(
        error(&["--tlsverify", "--tlscert", cert, "--tlskey", key]),
        "tls: TLS verify needs 'ca_file': natrix does not verify client certificates against the system roots"
    );

    // --tls=false turns off the file's TLS.
    let path = write(
        dir.path(),
        "tls.conf",
        &format!("tls {{ cert_file: {cert:?}, key_file: {key:?} }}\n"),
    );
    let s = settings(&["-c", path.to_str().unwrap(), "--tls=false"]);
    assert_eq!(s.server.tls, None);
    assert_eq!(s.server.limits.auth_timeout, Duration::from_secs(2));
}
