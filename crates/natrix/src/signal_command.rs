//! `-sl/--signal <command>[=<pid>]`: sends a running server the signal behind a command, as
//! nats-server does, so that a shell-less image can enter lame duck mode from a `preStop` hook
//! (`natrix-server --signal ldm=1`). `<pid>` is a process id or a pid file; without it the one
//! running `natrix-server` process is found in `/proc`.

use std::path::Path;

/// What a `--signal` command sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalCommand {
    /// `stop`: SIGKILL.
    Stop,
    /// `quit`: SIGINT (graceful shutdown).
    Quit,
    /// `term`: SIGTERM (graceful shutdown).
    Term,
    /// `ldm`: SIGUSR2 (lame duck mode).
    LameDuck,
    /// `reload`: SIGHUP (the node reloads its configuration).
    Reload,
}

impl SignalCommand {
    fn signal(self) -> libc::c_int {
        match self {
            SignalCommand::Stop => libc::SIGKILL,
            SignalCommand::Quit => libc::SIGINT,
            SignalCommand::Term => libc::SIGTERM,
            SignalCommand::LameDuck => libc::SIGUSR2,
            SignalCommand::Reload => libc::SIGHUP,
        }
    }
}

/// A parsed `--signal` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalRequest {
    pub command: SignalCommand,
    /// The `=<pid>` part as given: a process id or a pid file.
    pub pid: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignalError {
    #[error("invalid signal parameters: {0:?}")]
    Parameters(Vec<String>),
    #[error("unknown signal {0:?}")]
    Unknown(String),
    /// `reopen` asks for SIGUSR1, which natrix does not handle: it would kill the server.
    #[error("signal {0:?} is not supported by natrix (log files are not reopened)")]
    Unsupported(String),
    #[error("no natrix-server processes running")]
    NoProcess,
    #[error("multiple natrix-server processes running:\n{0}")]
    Multiple(String),
    #[error("unable to resolve pid, try providing one")]
    BadPid,
    #[error("signaling pid {pid}: {reason}")]
    Kill { pid: i32, reason: String },
}

/// Parses `<command>[=<pid>]`.
pub fn parse(value: &str) -> Result<SignalRequest, SignalError> {
    let parts: Vec<&str> = value.split('=').collect();
    if parts.len() > 2 {
        return Err(SignalError::Parameters(
            parts[2..].iter().map(|p| (*p).to_owned()).collect(),
        ));
    }
    let command = match parts[0] {
        "stop" => SignalCommand::Stop,
        "quit" => SignalCommand::Quit,
        "term" => SignalCommand::Term,
        "ldm" => SignalCommand::LameDuck,
        "reload" => SignalCommand::Reload,
        "reopen" => return Err(SignalError::Unsupported(parts[0].to_owned())),
        other => return Err(SignalError::Unknown(other.to_owned())),
    };
    Ok(SignalRequest {
        command,
        pid: parts.get(1).map(|p| (*p).to_owned()),
    })
}

/// The process id named by `expr`: a number, or a file holding one (nats-server reads the
/// file when it exists and takes the text itself otherwise).
fn pid_from(expr: &str) -> Result<i32, SignalError> {
    let text = std::fs::read_to_string(expr).unwrap_or_else(|_| expr.to_owned());
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(SignalError::BadPid),
    }
}

/// The ids of the running `natrix-server` processes other than this one.
fn running_servers(proc_dir: &Path, own: u32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(proc_dir) else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| u32::try_from(*pid).is_ok_and(|p| p != own))
        .filter(|pid| {
            std::fs::read_to_string(proc_dir.join(pid.to_string()).join("comm"))
                .is_ok_and(|comm| comm.trim_end() == "natrix-server")
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Sends the request's signal; `Ok` once sent.
pub fn send(request: &SignalRequest) -> Result<(), SignalError> {
    let pid = match &request.pid {
        Some(expr) => pid_from(expr)?,
        None => match running_servers(Path::new("/proc"), std::process::id()).as_slice() {
            [] => return Err(SignalError::NoProcess),
            [pid] => *pid,
            many => {
                let list: Vec<String> = many.iter().map(i32::to_string).collect();
                return Err(SignalError::Multiple(list.join("\n")));
            }
        },
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of this process.
    let rc = unsafe { libc::kill(pid, request.command.signal()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(SignalError::Kill {
            pid,
            reason: std::io::Error::last_os_error().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_pids_parse_as_nats_server_reads_them() {
        assert_eq!(
            parse("ldm=42"),
            Ok(SignalRequest {
                command: SignalCommand::LameDuck,
                pid: Some("42".into())
            })
        );
        assert_eq!(
            parse("term"),
            Ok(SignalRequest {
                command: SignalCommand::Term,
                pid: None
            })
        );
        assert_eq!(
            parse("bogus").unwrap_err().to_string(),
            r#"unknown signal "bogus""#
        );
        assert_eq!(
            parse("ldm=1=2").unwrap_err().to_string(),
            r#"invalid signal parameters: ["2"]"#
        );
        assert!(matches!(parse("reopen"), Err(SignalError::Unsupported(_))));
    }

    #[test]
    fn a_pid_is_a_number_or_a_file_holding_one() -> std::io::Result<()> {
        assert_eq!(pid_from("17"), Ok(17));
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("natrix.pid");
        std::fs::write(&file, "4242\n")?;
        assert_eq!(pid_from(&file.to_string_lossy()), Ok(4242));
        assert_eq!(pid_from("no-such-file"), Err(SignalError::BadPid));
        assert_eq!(pid_from("0"), Err(SignalError::BadPid));
        Ok(())
    }

    #[test]
    fn running_servers_are_found_by_process_name() -> std::io::Result<()> {
        let proc_dir = tempfile::tempdir()?;
        for (pid, comm) in [
            ("10", "natrix-server\n"),
            ("11", "bash\n"),
            ("12", "natrix-server\n"),
        ] {
            std::fs::create_dir(proc_dir.path().join(pid))?;
            std::fs::write(proc_dir.path().join(pid).join("comm"), comm)?;
        }
        std::fs::create_dir(proc_dir.path().join("self"))?;
        assert_eq!(running_servers(proc_dir.path(), 12), vec![10]);
        assert_eq!(running_servers(proc_dir.path(), 1), vec![10, 12]);
        Ok(())
    }
}
