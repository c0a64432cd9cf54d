//! The oracle: the same raw protocol exchanges against natrix and against the reference
//! nats-server, asserting byte-identical replies (INFO compared by key order and stable values)
//! and the same close/no-close outcome. It needs a nats-server binary (`$NATS_SERVER_BIN`, the
//! copy from `scripts/install-test-deps.sh`, or one on `PATH`) and FAILS without one: CI installs
//! it. The reference servers listen on 127.0.0.1:19222-19229.

use std::net::SocketAddr;
use std::time::Duration;

use natrix_server::{AuthConfig, Limits, ServerConfig};
use natrix_testkit::{RawClient, ReferenceServer, TestServer, test_config};

/// One thing a test client does on its connection.
enum Step {
    /// Send the bytes followed by a PING, and read until its PONG (or the close): everything the
    /// server sends in reply to the bytes, deterministically.
    Sync(String),
    /// Send the bytes (which leave an operation unfinished, or are empty), then read until
    /// nothing arrives for `quiet` (or the close).
    Quiet(String, Duration),
}

struct Case {
    name: &'static str,
    steps: Vec<Step>,
}

fn case(name: &'static str, steps: Vec<Step>) -> Case {
    Case { name, steps }
}

fn sync(bytes: impl Into<String>) -> Step {
    Step::Sync(bytes.into())
}

fn quiet(bytes: impl Into<String>) -> Step {
    Step::Quiet(bytes.into(), Duration::from_millis(250))
}

fn wait(duration: Duration) -> Step {
    Step::Quiet(String::new(), duration)
}

const NOT_VERBOSE: &str = "CONNECT {\"verbose\":false,\"pedantic\":false}\r\n";
const HEADERS: &str = "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n";

/// Lines of `input` that are a PING (each gets a PONG besides the sentinel's).
fn pings_in(input: &str) -> usize {
    input
        .split('\n')
        .filter(|l| l.trim_end_matches('\r').eq_ignore_ascii_case("ping"))
        .count()
}

/// INFO with the values that differ between servers and runs replaced by `*`; key order kept.
fn normalise_info(info: &str) -> String {
    let Some(json) = info.strip_prefix("INFO ") else {
        return format!("not INFO: {info:?}");
    };
    let trailing_space = json.ends_with(' ');
    let Ok(serde_json::Value::Object(map)) =
        serde_json::from_str::<serde_json::Value>(json.trim_end())
    else {
        return format!("bad INFO json: {json:?}");
    };
    let fields: Vec<String> = map
        .into_iter()
        .map(|(key, value)| match key.as_str() {
            "server_id" | "server_name" | "version" | "go" | "git_commit" | "port"
            | "client_id" => format!("{key}=*"),
            _ => format!("{key}={value}"),
        })
        .collect();
    format!(
        "INFO {} (space before CRLF: {trailing_space})",
        fields.join(",")
    )
}

/// Runs one case and writes down everything observed.
async fn transcript(addr: SocketAddr, case: &Case) -> String {
    let mut out = String::new();
    let mut raw = match RawClient::connect(addr).await {
        Ok(raw) => raw,
        Err(err) => return format!("connect failed: {err}"),
    };
    out.push_str(&normalise_info(&raw.info));
    out.push('\n');
    for step in &case.steps {
        let (input, got, closed) = match step {
            Step::Sync(input) => {
                if raw.send(format!("{input}PING\r\n")).await.is_err() {
                    out.push_str("write failed\n");
                    break;
                }
                let (got, closed) = raw
                    .read_until_lines("PONG", pings_in(input) + 1, Duration::from_secs(3))
                    .await;
                (input, got, closed)
            }
            Step::Quiet(input, quiet) => {
                if !input.is_empty() && raw.send(input).await.is_err() {
                    out.push_str("write failed\n");
                    break;
                }
                let (got, closed) = raw.read_until_quiet(*quiet, Duration::from_secs(4)).await;
                (input, got, closed)
            }
        };
        let shown: String = if input.len() > 80 {
            format!("{}...({} bytes)", &input[..80], input.len())
        } else {
            input.clone()
        };
        out.push_str(&format!(
            "> {shown:?}\n< {:?}\n",
            String::from_utf8_lossy(&got)
        ));
        if closed {
            out.push_str("[closed]\n");
            return out;
        }
    }
    out.push_str("[open]\n");
    // Leave no subscriptions behind for the next case.
    let _ = raw.close_and_wait(Duration::from_secs(2)).await;
    out
}

/// Runs the cases one after the other (they share subjects), returning their transcripts.
async fn transcripts(addr: SocketAddr, cases: &[Case]) -> Vec<String> {
    let mut out = Vec::with_capacity(cases.len());
    for case in cases {
        out.push(transcript(addr, case).await);
    }
    out
}

/// Runs every case against natrix (configured by `natrix`) and nats-server (`args`, `config`)
/// and asserts identical transcripts, reporting every difference at once.
async fn compare(
    port: u16,
    natrix: ServerConfig,
    args: &[&str],
    config: Option<&str>,
    cases: Vec<Case>,
) -> anyhow::Result<()> {
    let reference = ReferenceServer::start(port, args, config).await?;
    let ours = TestServer::start_with(natrix).await?;
    let (theirs, mine) = tokio::join!(
        transcripts(reference.addr(), &cases),
        transcripts(ours.addr(), &cases)
    );
    let mut differences = Vec::new();
    for ((case, theirs), mine) in cases.iter().zip(theirs).zip(mine) {
        if theirs != mine {
            differences.push(format!(
                "--- {}\nnats-server:\n{theirs}natrix:\n{mine}",
                case.name
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} exchanges differ from {} (the oracle is nats-server 2.9.10; set NATS_SERVER_BIN):\n{}",
        differences.len(),
        cases.len(),
        reference.describe(),
        differences.join("\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_exchanges_match_nats_server() -> anyhow::Result<()> {
    let long = |n: usize| "a".repeat(n);
    let cases = vec![
        case(
            "verbose connect",
            vec![sync("CONNECT {\"verbose\":true}\r\n")],
        ),
        case(
            "empty connect defaults to verbose and pedantic",
            vec![sync("CONNECT {}\r\n"), sync("PUB foo.* 0\r\n\r\n")],
        ),
        case(
            "connect without a separator",
            vec![sync("CONNECT{\"verbose\":true}\r\n")],
        ),
        case(
            "operations before connect",
            vec![sync("SUB foo 1\r\nPUB foo 1\r\na\r\n")],
        ),
        case("ping before connect", vec![sync("PING\r\n")]),
        case(
            "verbose acknowledgements",
            vec![
                sync("CONNECT {\"verbose\":true}\r\n"),
                sync("SUB foo 1\r\nPUB foo 2\r\nhi\r\nUNSUB 1\r\nPONG\r\n"),
            ],
        ),
        case(
            "pedantic publish subjects",
            vec![
                sync("CONNECT {\"verbose\":true,\"pedantic\":true}\r\n"),
                sync(
                    "SUB foo.* 1\r\nPUB foo.* 1\r\na\r\nPUB foo..bar 0\r\n\r\nPUB foo.> 0\r\n\r\nPUB * 0\r\n\r\n",
                ),
            ],
        ),
        case(
            "wildcard publish without pedantic",
            vec![
                sync(NOT_VERBOSE),
                sync(
                    "SUB foo.bar 1\r\nSUB foo.* 2\r\nPUB foo.* 1\r\na\r\nPUB foo..bar 1\r\nb\r\nPUB .foo 1\r\nc\r\n",
                ),
            ],
        ),
        case(
            "invalid subjects on sub",
            vec![
                sync("CONNECT {\"verbose\":true}\r\n"),
                sync(
                    "SUB foo..bar 1\r\nSUB foo.>.bar 2\r\nSUB .foo 3\r\nSUB foo. 4\r\nSUB > 5\r\n",
                ),
            ],
        ),
        case(
            "queue names are not checked",
            vec![
                sync("CONNECT {\"verbose\":true}\r\n"),
                sync("SUB foo q.* 1\r\nSUB foo > 2\r\nSUB foo q..x 3\r\n"),
            ],
        ),
        case(
            "reused sid",
            vec![
                sync("CONNECT {\"verbose\":true}\r\n"),
                sync("SUB foo 1\r\nSUB bar 1\r\nPUB bar 1\r\nb\r\nPUB foo 1\r\nf\r\n"),
            ],
        ),
        case(
            "unsub unknown sid",
            vec![
                sync("CONNECT {\"verbose\":true}\r\n"),
                sync("UNSUB 99\r\nUNSUB 99 5\r\n"),
            ],
        ),
        case(
            "unsub max counts earlier deliveries",
            vec![
                sync(NOT_VERBOSE),
                sync(
                    "SUB foo 1\r\nPUB foo 1\r\na\r\nUNSUB 1 3\r\nPUB foo 1\r\nb\r\nPUB foo 1\r\nc\r\nPUB foo 1\r\nd\r\n",
                ),
            ],
        ),
        case(
            "unsub max already reached",
            vec![
                sync(NOT_VERBOSE),
                sync(
                    "SUB foo 1\r\nPUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nUNSUB 1 2\r\nPUB foo 1\r\nc\r\n",
                ),
            ],
        ),
        case(
            "unsub zero or bad max",
            vec![
                sync(NOT_VERBOSE),
                sync("SUB foo 1\r\nSUB foo 2\r\nUNSUB 1 0\r\nUNSUB 2 x\r\nPUB foo 1\r\na\r\n"),
            ],
        ),
        case(
            "unknown operation",
            vec![sync(NOT_VERBOSE), sync("FOO bar\r\n")],
        ),
        case(
            "verb without separator",
            vec![sync(NOT_VERBOSE), sync("PUBX foo 1\r\n")],
        ),
        case(
            "control line over the limit",
            vec![sync(NOT_VERBOSE), sync(format!("SUB {} 1\r\n", long(4095)))],
        ),
        case(
            "control line at the limit",
            vec![
                sync("CONNECT {\"verbose\":true}\r\n"),
                sync(format!("SUB {} 1\r\n", long(4094))),
            ],
        ),
        case(
            "unterminated control line",
            vec![sync(NOT_VERBOSE), quiet(format!("PUB {}", long(5000)))],
        ),
        case(
            "long connect",
            vec![sync(format!("CONNECT {{\"name\":\"{}\"}}\r\n", long(5000)))],
        ),
        case(
            "payload over max",
            vec![sync(HEADERS), quiet("PUB foo 1048577\r\n")],
        ),
        case(
            "hpub total over max",
            vec![sync(HEADERS), quiet("HPUB foo 12 1048577\r\n")],
        ),
        case(
            "payload longer than announced",
            vec![sync(NOT_VERBOSE), sync("PUB foo 2\r\nhello\r\n")],
        ),
        case(
            "payload shorter than announced",
            vec![sync(NOT_VERBOSE), sync("PUB foo 5\r\nhi\r\n")],
        ),
        case(
            "pub without size",
            vec![sync(NOT_VERBOSE), sync("PUB foo\r\n")],
        ),
        case(
            "pub with a bad size",
            vec![sync(NOT_VERBOSE), sync("PUB foo abc\r\n")],
        ),
        case(
            "pub with a negative size",
            vec![sync(NOT_VERBOSE), sync("PUB foo -1\r\n")],
        ),
        case(
            "pub with too many arguments",
            vec![sync(NOT_VERBOSE), sync("PUB foo a b 1\r\n")],
        ),
        case(
            "sub without sid",
            vec![sync(NOT_VERBOSE), sync("SUB foo\r\n")],
        ),
        case(
            "sub with too many arguments",
            vec![sync(NOT_VERBOSE), sync("SUB foo q 1 x\r\n")],
        ),
        case(
            "unsub without sid",
            vec![sync(NOT_VERBOSE), sync("UNSUB\r\n")],
        ),
        case(
            "unsub with too many arguments",
            vec![sync(NOT_VERBOSE), sync("UNSUB 1 2 3\r\n")],
        ),
        case(
            "hpub header size over total",
            vec![sync(HEADERS), sync("HPUB foo 14 12\r\n")],
        ),
        case(
            "hpub without headers in connect",
            vec![
                sync(NOT_VERBOSE),
                sync("HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"),
            ],
        ),
        case(
            "hpub before connect",
            vec![sync("HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")],
        ),
        case(
            "hpub and hmsg framing",
            vec![
                sync(HEADERS),
                sync(
                    "SUB foo 1\r\nHPUB foo bar 24 26\r\nNATS/1.0\r\nA: b\r\nA: c\r\n\r\nhi\r\nHPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\n",
                ),
            ],
        ),
        case(
            "headers off means plain msg",
            vec![
                sync(NOT_VERBOSE),
                sync("SUB foo 1\r\nPUB foo r 2\r\nhi\r\n"),
            ],
        ),
        case("bad connect json", vec![sync("CONNECT {bad}\r\n")]),
        case("connect not an object", vec![sync("CONNECT 5\r\n")]),
        case(
            "connect twice",
            vec![
                sync("CONNECT {\"verbose\":true}\r\n"),
                sync("CONNECT {\"verbose\":false}\r\n"),
            ],
        ),
        case(
            "no responders without headers",
            vec![sync(
                "CONNECT {\"verbose\":false,\"no_responders\":true}\r\n",
            )],
        ),
        case(
            "no responders status",
            vec![
                sync("CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\n"),
                sync("SUB _INBOX.* 7\r\nPUB nobody _INBOX.abc 2\r\nhi\r\n"),
            ],
        ),
        case(
            "no responders after ok",
            vec![
                sync(
                    "CONNECT {\"verbose\":true,\"pedantic\":false,\"headers\":true,\"no_responders\":true}\r\n",
                ),
                sync("SUB _INBOX.1 2\r\nPUB foo _INBOX.1 1\r\na\r\n"),
            ],
        ),
        case(
            "no responders without echo",
            vec![
                sync(
                    "CONNECT {\"verbose\":false,\"echo\":false,\"headers\":true,\"no_responders\":true}\r\n",
                ),
                sync("SUB foo 1\r\nSUB _INBOX.1 2\r\nPUB foo _INBOX.1 1\r\na\r\n"),
            ],
        ),
        case(
            "no responders ignores queue inboxes",
            vec![
                sync("CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\n"),
                sync("SUB _INBOX.1 q 2\r\nPUB foo _INBOX.1 1\r\na\r\n"),
            ],
        ),
        case(
            "echo off",
            vec![
                sync("CONNECT {\"verbose\":false,\"echo\":false}\r\n"),
                sync("SUB foo 1\r\nPUB foo 1\r\na\r\n"),
            ],
        ),
        case(
            "client err",
            vec![sync(NOT_VERBOSE), sync("-ERR 'oops'\r\n")],
        ),
        case(
            "client info and ok",
            vec![
                sync("CONNECT {\"verbose\":true}\r\n"),
                sync("INFO {}\r\n+OK\r\n"),
            ],
        ),
        case(
            "client info not json",
            vec![sync(NOT_VERBOSE), sync("INFO bad\r\n")],
        ),
        case(
            "bare newlines",
            vec![
                sync("CONNECT {\"verbose\":false}\n"),
                sync("SUB foo 1\nPUB foo 1\na\r\n"),
            ],
        ),
        case(
            "bare newline after payload",
            vec![sync(NOT_VERBOSE), sync("PUB foo 1\na\n")],
        ),
        case(
            "verbs in any case",
            vec![
                sync("connect {\"verbose\":false}\r\n"),
                sync("sUb foo 1\r\npub foo 1\r\na\r\nPiNg\r\n"),
            ],
        ),
        case(
            "tabs and blanks",
            vec![
                sync("CONNECT\t{\"verbose\":false}\r\n"),
                sync("SUB\tfoo\t\tq  7\r\nPUB \t foo\t 3\r\nabc\r\n"),
            ],
        ),
        case(
            "msg with reply",
            vec![
                sync(NOT_VERBOSE),
                sync("SUB foo.* 42\r\nPUB foo.bar _INBOX.r 5\r\nhello\r\n"),
            ],
        ),
        case(
            "payload with crlf",
            vec![
                sync(NOT_VERBOSE),
                sync("SUB b 1\r\nPUB b 6\r\nPING\r\n\r\n"),
            ],
        ),
    ];
    compare(19222, test_config(), &[], None, cases).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_exchanges_match_nats_server() -> anyhow::Result<()> {
    let natrix = ServerConfig {
        auth: AuthConfig {
            user: Some("alice".into()),
            password: Some("s3cret".into()),
            ..AuthConfig::default()
        },
        limits: Limits {
            auth_timeout: Duration::from_millis(500),
            ..Limits::default()
        },
        ..test_config()
    };
    let config = "authorization { user: alice, password: s3cret, timeout: 0.5 }\n";
    let cases = vec![
        case(
            "good credentials",
            vec![sync(
                "CONNECT {\"verbose\":true,\"user\":\"alice\",\"pass\":\"s3cret\"}\r\n",
            )],
        ),
        case(
            "wrong password",
            vec![sync("CONNECT {\"user\":\"alice\",\"pass\":\"nope\"}\r\n")],
        ),
        case("no credentials", vec![sync("CONNECT {}\r\n")]),
        case(
            "token instead",
            vec![sync("CONNECT {\"auth_token\":\"s3cret\"}\r\n")],
        ),
        case("ping first", vec![quiet("PING\r\n")]),
        case("sub first", vec![quiet("SUB foo 1\r\n")]),
        case("unknown operation first", vec![quiet("FOO\r\n")]),
        case("malformed pub first", vec![quiet("PUB foo\r\n")]),
        case("c but not connect first", vec![quiet("CXX\r\n")]),
        case("bad json first", vec![quiet("CONNECT {x}\r\n")]),
        case(
            "no connect in time",
            vec![wait(Duration::from_millis(1200))],
        ),
    ];
    compare(19223, natrix, &[], Some(config), cases).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_exchanges_match_nats_server() -> anyhow::Result<()> {
    let natrix = ServerConfig {
        auth: AuthConfig {
            token: Some("t0ken".into()),
            ..AuthConfig::default()
        },
        ..test_config()
    };
    let cases = vec![
        case(
            "good token",
            vec![sync(
                "CONNECT {\"verbose\":true,\"auth_token\":\"t0ken\"}\r\n",
            )],
        ),
        case(
            "wrong token",
            vec![sync("CONNECT {\"auth_token\":\"nope\"}\r\n")],
        ),
        case(
            "token as user",
            vec![sync("CONNECT {\"user\":\"t0ken\"}\r\n")],
        ),
        case(
            "token as password",
            vec![sync("CONNECT {\"pass\":\"t0ken\"}\r\n")],
        ),
    ];
    compare(19224, natrix, &["--auth", "t0ken"], None, cases).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_limit_exchanges_match_nats_server() -> anyhow::Result<()> {
    let natrix = ServerConfig {
        limits: Limits {
            max_subscriptions: 2,
            max_payload: 1024,
            max_control_line: 256,
            ..Limits::default()
        },
        ..test_config()
    };
    let config = "max_subscriptions: 2\nmax_payload: 1024\nmax_control_line: 256\n";
    let cases = vec![
        case(
            "max subscriptions",
            vec![
                sync("CONNECT {\"verbose\":true}\r\n"),
                sync("SUB a 1\r\nSUB b 2\r\nSUB c 3\r\n"),
                sync("SUB a 1\r\nUNSUB 2\r\nSUB d 4\r\nPUB d 1\r\nx\r\n"),
            ],
        ),
        case(
            "max subscriptions before subject check",
            vec![
                sync(NOT_VERBOSE),
                sync("SUB a 1\r\nSUB b 2\r\nSUB foo..bar 3\r\n"),
            ],
        ),
        case(
            "configured max payload",
            vec![
                sync("CONNECT {\"verbose\":true}\r\n"),
                sync(format!("PUB foo 1024\r\n{}\r\n", "x".repeat(1024))),
                quiet("PUB foo 1025\r\n"),
            ],
        ),
        case(
            "configured control line",
            vec![
                sync(NOT_VERBOSE),
                sync(format!("SUB {} 1\r\n", "a".repeat(255))),
            ],
        ),
        case(
            "configured control line at the limit",
            vec![
                sync("CONNECT {\"verbose\":true}\r\n"),
                sync(format!("SUB {} 1\r\n", "a".repeat(254))),
            ],
        ),
    ];
    compare(19225, natrix, &[], Some(config), cases).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_connection_exchanges_match_nats_server() -> anyhow::Result<()> {
    let natrix = ServerConfig {
        limits: Limits {
            ping_interval: Duration::from_millis(100),
            ping_max: 2,
            ..Limits::default()
        },
        ..test_config()
    };
    let config = "ping_interval: \"100ms\"\nping_max: 2\n";
    let cases = vec![
        case("silent client after connect", vec![quiet(NOT_VERBOSE)]),
        case(
            "silent client without connect",
            vec![wait(Duration::from_millis(250))],
        ),
    ];
    compare(19226, natrix, &[], Some(config), cases).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_exchange_matches_nats_server() -> anyhow::Result<()> {
    let natrix = ServerConfig {
        limits: Limits {
            max_connections: 1,
            ..Limits::default()
        },
        ..test_config()
    };
    let reference = ReferenceServer::start(19227, &[], Some("max_connections: 1\n")).await?;
    let ours = TestServer::start_with(natrix).await?;
    let mut outcomes = Vec::new();
    for addr in [reference.addr(), ours.addr()] {
        // The reference server may still count the connection its readiness probe opened;
        // retry the first client (bounded) until the slot is free.
        let mut attempts = 0;
        let mut first = loop {
            let mut client = RawClient::connect(addr).await?;
            match client.handshake(r#"{"verbose":false}"#).await {
                Ok(()) => break client,
                Err(_) if attempts < 100 => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(err) => return Err(err),
            }
        };
        let over = case("over the limit", vec![quiet("")]);
        outcomes.push(transcript(addr, &over).await);
        first.send("PING\r\n").await?;
        first.expect_line("PONG").await?;
    }
    assert_eq!(
        outcomes[1], outcomes[0],
        "natrix (left) vs nats-server (right)"
    );
    Ok(())
}

/// The users of the permission exchanges, as a nats-server config and as natrix's config.
const PERMISSIONS_CONFIG: &str = r#"
authorization {
  users: [
    { user: bob, password: pw, permissions: { publish: { allow: ["foo.>", "req"], deny: ["foo.secret"] }, subscribe: { allow: ["foo.*", "_INBOX.>"], deny: "foo.bar" } } }
    { user: q, password: pw, permissions: { subscribe: ["work workers", "x"] } }
    { user: svc, password: pw, permissions: { subscribe: "req", allow_responses: true } }
    { user: alice, password: "$2b$04$xaBmIBJnThhjuylTwyw4F.1cryKdT0kzLF/dc.PyqdD90eixfkoeW" }
  ]
}
"#;

fn permission_users() -> Vec<natrix_server::UserConfig> {
    use natrix_server::{
        PermissionsConfig, ResponsePermissionConfig, SubjectPermissionConfig, UserConfig,
    };
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let rules = |allow: &[&str], deny: &[&str]| {
        Some(SubjectPermissionConfig {
            allow: Some(strings(allow)),
            deny: strings(deny),
        })
    };
    let user = |name: &str, password: &str, permissions| UserConfig {
        user: Some(name.into()),
        password: Some(password.into()),
        nkey: None,
        permissions,
    };
    vec![
        user(
            "bob",
            "pw",
            Some(PermissionsConfig {
                publish: rules(&["foo.>", "req"], &["foo.secret"]),
                subscribe: rules(&["foo.*", "_INBOX.>"], &["foo.bar"]),
                allow_responses: None,
            }),
        ),
        user(
            "q",
            "pw",
            Some(PermissionsConfig {
                subscribe: rules(&["work workers", "x"], &[]),
                ..PermissionsConfig::default()
            }),
        ),
        user(
            "svc",
            "pw",
            Some(PermissionsConfig {
                subscribe: rules(&["req"], &[]),
                allow_responses: Some(ResponsePermissionConfig::default()),
                ..PermissionsConfig::default()
            }),
        ),
        user(
            "alice",
            "$2b$04$xaBmIBJnThhjuylTwyw4F.1cryKdT0kzLF/dc.PyqdD90eixfkoeW",
            None,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_exchanges_match_nats_server() -> anyhow::Result<()> {
    let natrix = ServerConfig {
        auth: AuthConfig {
            users: permission_users(),
            ..AuthConfig::default()
        },
        ..test_config()
    };
    let bob = "CONNECT {\"verbose\":true,\"user\":\"bob\",\"pass\":\"pw\"}\r\n";
    let alice = "CONNECT {\"verbose\":true,\"user\":\"alice\",\"pass\":\"s3cret\"}\r\n";
    let cases = vec![
        case(
            "publish allowed and denied",
            vec![
                sync(bob),
                sync(
                    "PUB foo.a 1\r\nx\r\nPUB foo.secret 1\r\nx\r\nPUB bar 1\r\nx\r\nPUB req 0\r\n\r\n",
                ),
            ],
        ),
        case(
            "subscribe allowed and denied",
            vec![
                sync(bob),
                sync(
                    "SUB foo.a 1\r\nSUB foo.bar 2\r\nSUB foo.> 3\r\nSUB bar 4\r\nSUB bar q 5\r\nSUB foo.* q 6\r\n",
                ),
            ],
        ),
        case(
            "deny filter on a wildcard subscription",
            vec![
                sync(bob),
                sync("SUB foo.* 1\r\nPUB foo.bar 1\r\nx\r\nPUB foo.baz 1\r\ny\r\n"),
            ],
        ),
        case(
            "queue rules",
            vec![
                sync("CONNECT {\"verbose\":true,\"user\":\"q\",\"pass\":\"pw\"}\r\n"),
                sync(
                    "SUB work workers 1\r\nSUB work others 2\r\nSUB work 3\r\nSUB x 4\r\nSUB x any 5\r\n",
                ),
            ],
        ),
        case(
            "responses only to received replies",
            vec![
                sync("CONNECT {\"verbose\":false,\"user\":\"svc\",\"pass\":\"pw\"}\r\n"),
                sync("SUB req 1\r\nPUB _INBOX.never 1\r\nx\r\nPUB other 1\r\nx\r\n"),
            ],
        ),
        case(
            "bcrypt password",
            vec![sync(
                "CONNECT {\"verbose\":true,\"user\":\"alice\",\"pass\":\"s3cret\"}\r\n",
            )],
        ),
        case(
            "the hash is not the password",
            vec![sync(
                "CONNECT {\"user\":\"alice\",\"pass\":\"$2b$04$xaBmIBJnThhjuylTwyw4F.1cryKdT0kzLF/dc.PyqdD90eixfkoeW\"}\r\n",
            )],
        ),
        case(
            "unknown user",
            vec![sync("CONNECT {\"user\":\"mallory\",\"pass\":\"pw\"}\r\n")],
        ),
        case(
            "a second connect as a user without permissions",
            vec![
                sync(bob),
                sync(
                    "SUB foo.* 1\r\nPUB bar 1\r\nx\r\nPUB foo.bar 1\r\nx\r\nPUB foo.baz 1\r\ny\r\n",
                ),
                sync(alice),
                sync("PUB bar 1\r\nx\r\nPUB foo.bar 1\r\nz\r\n"),
            ],
        ),
        case(
            "a second connect as a user with permissions",
            vec![
                sync(alice),
                sync(bob),
                sync(
                    "PUB bar 1\r\nx\r\nSUB bar 2\r\nSUB foo.* 3\r\nPUB foo.bar 1\r\nx\r\nPUB foo.baz 1\r\ny\r\n",
                ),
            ],
        ),
        case(
            "a second connect with a wrong password",
            vec![
                sync(bob),
                sync("CONNECT {\"user\":\"alice\",\"pass\":\"nope\"}\r\n"),
            ],
        ),
    ];
    compare(19228, natrix, &[], Some(PERMISSIONS_CONFIG), cases).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_auth_user_exchanges_match_nats_server() -> anyhow::Result<()> {
    let natrix = ServerConfig {
        auth: AuthConfig {
            users: permission_users(),
            no_auth_user: Some("bob".into()),
            ..AuthConfig::default()
        },
        ..test_config()
    };
    let config = format!("no_auth_user: bob\n{PERMISSIONS_CONFIG}");
    let cases = vec![
        case(
            "no credentials",
            vec![
                sync("CONNECT {\"verbose\":true}\r\n"),
                sync("PUB foo.a 1\r\nx\r\nPUB bar 1\r\nx\r\n"),
            ],
        ),
        case(
            "operations before connect",
            vec![sync("PING\r\nSUB bar 1\r\nSUB foo.a 2\r\n")],
        ),
        case(
            "deny filter before connect",
            vec![sync(
                "SUB foo.* 1\r\nPUB foo.bar 1\r\nx\r\nPUB foo.baz 1\r\ny\r\n",
            )],
        ),
        case(
            "credentials after operations as the no_auth_user",
            vec![
                sync("SUB foo.* 1\r\nPUB bar 1\r\nx\r\n"),
                sync("CONNECT {\"verbose\":true,\"user\":\"alice\",\"pass\":\"s3cret\"}\r\n"),
                sync("PUB bar 1\r\nx\r\nPUB foo.bar 1\r\nz\r\n"),
            ],
        ),
        case(
            "wrong credentials are not replaced",
            vec![sync("CONNECT {\"user\":\"alice\",\"pass\":\"nope\"}\r\n")],
        ),
        case(
            "a token is a credential",
            vec![sync("CONNECT {\"auth_token\":\"x\"}\r\n")],
        ),
    ];
    compare(19229, natrix, &[], Some(&config), cases).await
}
