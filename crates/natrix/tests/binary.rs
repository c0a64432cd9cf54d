//! The built `natrix-server` binary behaves like nats-server at the process boundary: broken
//! configs exit non-zero with the file:line on stderr before listening, SIGTERM shuts it down
//! cleanly and promptly, SIGHUP reloads the configuration, `-v` prints the version, logs go
//! where `-l`/`log_file` say.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_natrix-server");

fn natrix(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("RUST_LOG").stdin(Stdio::null());
    cmd
}

/// Runs to completion, failing the test if it takes longer than `limit`.
fn run_to_end(args: &[&str], limit: Duration) -> Output {
    let mut child = natrix(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_with_timeout(&mut child, limit);
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    Output {
        status,
        stdout,
        stderr,
    }
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("natrix-server did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running server and the stderr lines it has printed so far.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = natrix(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle` and returns it.
    fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = self.child.kill();
        panic!(
            "no line containing {needle:?}; saw:\n{}",
            self.seen.join("\n")
        );
    }

    /// The client port, from nats-server's "Listening for client connections on" line.
    fn client_port(&mut self) -> u16 {
        let line = self.wait_for_line("Listening for client connections on");
        let port = line.rsplit(':').next().unwrap_or_default().trim();
        port.parse()
            .unwrap_or_else(|_| panic!("no port in {line:?}"))
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: sending a signal to our own child process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill failed");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_info(port: u16) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn dash_v_prints_the_version_and_exits_zero() {
    for flag in ["-v", "--version", "-version"] {
        let out = run_to_end(&[flag], Duration::from_secs(10));
        assert!(out.status.success(), "{flag}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.trim(),
            format!("natrix-server: v{}", env!("CARGO_PKG_VERSION")),
            "{flag}"
        );
    }
}

#[test]
fn a_broken_config_exits_non_zero_with_file_and_line_and_never_listens() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(dir.path(), "broken.conf", "port: -1\n\nbogus_option: 1\n");
    let out = run_to_end(&["-c", &conf], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        format!("natrix-server: {conf}:3:1: unknown field \"bogus_option\"")
    );
    assert!(!stderr.contains("Listening"), "{stderr}");
}

#[test]
fn a_syntax_error_and_a_bad_flag_also_exit_one() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "unclosed.conf",
        "port: -1\ncluster {\n  name: x\n",
    );
    let out = run_to_end(&["-c", &conf], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("natrix-server: {conf}:4:")),
        "{stderr}"
    );

    // As nats-server: --tls without a certificate is refused before starting.
    let out = run_to_end(&["-p", "-1", "--tls"], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("TLS Server certificate must be present and valid")
    );
}

#[test]
fn dash_t_checks_the_config_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(dir.path(), "ok.conf", "port: 4222\n");
    let out = run_to_end(&["-t", "-c", &conf], Duration::from_secs(10));
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        format!("natrix-server: configuration file {conf} is valid")
    );
}

#[test]
fn sigterm_shuts_down_gracefully_and_exits_zero_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "ok.conf",
        "listen: 127.0.0.1:-1\nserver_name: sig_test\n",
    );
    let mut server = Running::start(&["-c", &conf]);
    let port = server.client_port();
    server.wait_for_line("Server is ready");
    let info = read_info(port);
    assert!(info.starts_with("INFO {"), "{info}");
    assert!(info.contains("\"server_name\":\"sig_test\""), "{info}");

    server.signal(libc::SIGTERM);
    let started = Instant::now();
    let status = wait_with_timeout(&mut server.child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5));
    server.wait_for_line("Server Exiting");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening after exit"
    );
}

#[test]
fn sigusr2_enters_lame_duck_mode_then_exits_zero() {
    enters_lame_duck_mode_then_exits_zero(|server, _| server.signal(libc::SIGUSR2));
}

#[test]
fn signal_ldm_with_a_pid_file_enters_lame_duck_mode_then_exits_zero() {
    enters_lame_duck_mode_then_exits_zero(|_, pid_file| {
        // The pid file is written right after the server started.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(pid_file).map_or(true, |p| p.trim().is_empty()) {
            assert!(std::time::Instant::now() < deadline, "no pid file written");
            std::thread::sleep(Duration::from_millis(20));
        }
        let sent = run_to_end(
            &["--signal", &format!("ldm={}", pid_file.display())],
            Duration::from_secs(5),
        );
        assert!(sent.status.success(), "{sent:?}");
    });
}

#[test]
fn signal_with_an_unknown_command_or_no_such_process_fails() {
    let unknown = run_to_end(&["-sl", "bogus=1"], Duration::from_secs(5));
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains(r#"unknown signal "bogus""#),
        "{unknown:?}"
    );
    let missing = run_to_end(
        &["-sl", "ldm=/nonexistent/natrix.pid"],
        Duration::from_secs(5),
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("unable to resolve pid"),
        "{missing:?}"
    );
}

/// Starts a server with a client and a pid file, lets `enter` put it in lame duck mode, and
/// checks the client hears `"ldm":true` and the process exits zero.
fn enters_lame_duck_mode_then_exits_zero(enter: impl FnOnce(&Running, &Path)) {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "ldm.conf",
        "listen: 127.0.0.1:-1\nlame_duck_duration: \"30s\"\nlame_duck_grace_period: \"300ms\"\n",
    );
    let pid_file = dir.path().join("natrix.pid");
    let mut server = Running::start(&["-c", &conf, "-P", pid_file.to_str().unwrap()]);
    let port = server.client_port();
    server.wait_for_line("Server is ready");
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut info = String::new();
    reader.read_line(&mut info).unwrap();
    // Like nats-server, the lame-duck INFO goes to clients that speak protocol 1 or later.
    std::io::Write::write_all(
        reader.get_mut(),
        b"CONNECT {\"verbose\":false,\"protocol\":1}\r\nPING\r\n",
    )
    .unwrap();
    let mut pong = String::new();
    reader.read_line(&mut pong).unwrap();
    assert_eq!(pong, "PONG\r\n");

    enter(&server, &pid_file);
    server.wait_for_line("lame duck");
    let mut ldm = String::new();
    reader.read_line(&mut ldm).unwrap();
    assert!(ldm.contains("\"ldm\":true"), "{ldm}");
    let status = wait_with_timeout(&mut server.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigint_also_stops_the_server() {
    let mut server = Running::start(&["-a", "127.0.0.1", "-p", "-1"]);
    server.client_port();
    server.signal(libc::SIGINT);
    let status = wait_with_timeout(&mut server.child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn log_file_receives_the_logs_and_protocol_trace_with_dash_dv() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("natrix.log");
    std::fs::write(&log, "previous line\n").unwrap();
    let pid = dir.path().join("natrix.pid");
    let mut server = Running::start(&[
        "-a",
        "127.0.0.1",
        "-p",
        "-1",
        "-DV",
        "-l",
        log.to_str().unwrap(),
        "-P",
        pid.to_str().unwrap(),
    ]);
    // Nothing goes to stderr; poll the file for the listening line instead.
    let deadline = Instant::now() + Duration::from_secs(15);
    let port = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("Listening for client connections on"))
        {
            break line
                .rsplit(':')
                .next()
                .unwrap()
                .trim()
                .parse::<u16>()
                .unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no listening line in log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"CONNECT {\"verbose\":false}\r\nSUB foo 1\r\nPUB foo 5\r\nhello\r\nPING\r\n",
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap(); // INFO
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "MSG foo 1 5\r\n");
    line.clear();
    reader.read_line(&mut line).unwrap(); // hello
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "PONG\r\n");
    let written_pid = std::fs::read_to_string(&pid).unwrap();
    assert_eq!(written_pid.trim(), server.child.id().to_string());

    server.signal(libc::SIGTERM);
    assert_eq!(
        wait_with_timeout(&mut server.child, Duration::from_secs(5)).code(),
        Some(0)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.starts_with("previous line\n"),
        "log file was truncated"
    );
    assert!(
        text.contains("<<- [CONNECT"),
        "no protocol trace in:\n{text}"
    );
    // nats-server's line shape: `[pid] date time [TRC] ...`, no colour codes in a file.
    let pid_prefix = format!("[{}] ", server.child.id());
    assert!(
        text.lines()
            .any(|l| l.starts_with(&pid_prefix) && l.contains(" [DBG] ")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with(&pid_prefix)
            && l.contains(" [TRC] 127.0.0.1:")
            && l.contains(" - cid:")
            && l.contains(" - <<- [CONNECT")),
        "{text}"
    );
    // The rest of the exchange, in nats-server's words.
    for traced in [
        " - <<- [SUB foo 1]",
        " - <<- [PUB foo 5]",
        " - <<- MSG_PAYLOAD: [\"hello\"]",
        " - ->> [MSG foo 1 5]",
        " - <<- [PING]",
        " - ->> [PONG]",
    ] {
        assert!(text.contains(traced), "no `{traced}` in:\n{text}");
    }
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escapes in the log file:\n{text}"
    );
    assert!(!pid.exists(), "pid file left behind");
}

#[test]
fn without_trace_flags_no_protocol_lines_are_logged() {
    let mut server = Running::start(&["-a", "127.0.0.1", "-p", "-1"]);
    let port = server.client_port();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut stream, b"CONNECT {\"verbose\":false}\r\nPING\r\n").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "PONG\r\n");
    server.signal(libc::SIGTERM);
    server.wait_for_line("Server Exiting");
    assert!(
        !server.seen.iter().any(|l| l.contains("<<- [")),
        "{:?}",
        server.seen
    );
}

#[test]
fn a_port_in_use_is_a_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run_to_end(&["-a", "127.0.0.1", "-p", &port], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("natrix-server: cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

/// CONNECTs as `user`/`pass` and returns the server's first answer line (`PONG` or `-ERR ...`).
fn login(port: u16, user: &str, pass: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut info = String::new();
    reader.read_line(&mut info).unwrap();
    let connect = format!(
        "CONNECT {{\"verbose\":false,\"user\":\"{user}\",\"pass\":\"{pass}\"}}\r\nPING\r\n"
    );
    stream.write_all(connect.as_bytes()).unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

#[test]
fn sighup_reloads_users_and_log_levels_and_refuses_a_change_that_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let with_users = |users: &str, extra: &str| {
        format!("listen: 127.0.0.1:-1\n{extra}authorization {{ users: [{users}] }}\n")
    };
    let conf = write(
        dir.path(),
        "reload.conf",
        &with_users("{user: a, password: a}", ""),
    );
    let mut server = Running::start(&["-c", &conf]);
    let port = server.client_port();
    server.wait_for_line("Server is ready");
    assert_eq!(login(port, "a", "a"), "PONG");
    assert_eq!(login(port, "b", "b"), "-ERR 'Authorization Violation'");

    write(
        dir.path(),
        "reload.conf",
        &with_users("{user: a, password: a}, {user: b, password: b}", ""),
    );
    server.signal(libc::SIGHUP);
    server.wait_for_line("Reloaded: authorization");
    server.wait_for_line("Reloaded server configuration");
    assert_eq!(login(port, "b", "b"), "PONG");

    // A new max_payload needs a restart: the whole reload is refused, users included.
    write(
        dir.path(),
        "reload.conf",
        &with_users("{user: c, password: c}", "max_payload: 100\n"),
    );
    server.signal(libc::SIGHUP);
    server.wait_for_line(
        "Failed to reload server configuration: config reload not supported for max_payload",
    );
    assert_eq!(login(port, "b", "b"), "PONG");
    assert_eq!(login(port, "c", "c"), "-ERR 'Authorization Violation'");

    // Log levels change at once.
    write(
        dir.path(),
        "reload.conf",
        &with_users(
            "{user: a, password: a}, {user: b, password: b}",
            "debug: true\n",
        ),
    );
    server.signal(libc::SIGHUP);
    server.wait_for_line("Reloaded: debug = true");
    assert_eq!(login(port, "a", "a"), "PONG");
    server.wait_for_line("[DBG]");
}
