//! natrix-server: parse the command line and config file, set up logging, run the node until
//! SIGINT/SIGTERM, then shut it down gracefully. Errors print as `natrix-server: <error>` and exit
//! with status 1, as nats-server does.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use natrix::{Cli, Command, Settings, logging};
use natrix_conf::Loader;
use natrix_server::{LEADERSHIP_HANDOFF, Server};
use tokio::signal::unix::{SignalKind, signal};

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("natrix-server: {message}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let cli = match Cli::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            print!("{err}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            let text = err.to_string();
            return fail(text.trim_start_matches("error: ").trim_end());
        }
    };
    let settings = match cli.into_command(&Loader::new()) {
        Ok(Command::Version) => {
            println!("natrix-server: v{}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::TestConfig(settings)) => {
            match &settings.server.config_file {
                Some(path) => eprintln!(
                    "natrix-server: configuration file {} is valid",
                    path.display()
                ),
                None => eprintln!("natrix-server: configuration is valid"),
            }
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(settings)) => settings,
        Ok(Command::Signal(request)) => {
            return match natrix::signal_command::send(&request) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(err),
            };
        }
        Err(err) => return fail(err),
    };
    let levels = match logging::init(&settings.log) {
        Ok(levels) => levels,
        Err(err) => return fail(err),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(format_args!("cannot start the runtime: {err}")),
    };
    match runtime.block_on(serve(*settings, levels)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            fail(err)
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Server(#[from] natrix_server::ServerError),
    #[error("cannot install the {signal} handler: {source}")]
    Signal {
        signal: &'static str,
        source: std::io::Error,
    },
    #[error("cannot write pid file '{}': {source}", path.display())]
    PidFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

async fn serve(settings: Settings, levels: logging::LogLevels) -> Result<(), RunError> {
    tracing::info!("Starting natrix-server");
    tracing::info!(
        "  Version:  {} (nats-server {} compatible)",
        env!("CARGO_PKG_VERSION"),
        natrix_server::VERSION
    );
    if let Some(path) = &settings.server.config_file {
        tracing::info!("Using configuration file: {}", path.display());
    }
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }

    // Installed before the listeners open, so that a signal right after start is not lost.
    let mut sigint = listen_for(SignalKind::interrupt(), "SIGINT")?;
    let mut sigterm = listen_for(SignalKind::terminate(), "SIGTERM")?;
    let mut sighup = listen_for(SignalKind::hangup(), "SIGHUP")?;
    let mut sigusr2 = listen_for(SignalKind::user_defined2(), "SIGUSR2")?;

    let mut log = settings.log.clone();
    let server = Server::start(settings.server).await?;
    tracing::info!("  Name:     {}", server.server_name());
    tracing::info!("  ID:       {}", server.server_id());
    let pid_file = settings.pid_file;
    let pid_written = pid_file.as_ref().map(|path| {
        std::fs::write(path, std::process::id().to_string()).map_err(|source| RunError::PidFile {
            path: path.clone(),
            source,
        })
    });
    if let Some(Err(err)) = pid_written {
        server.shutdown().await;
        return Err(err);
    }

    loop {
        tokio::select! {
            _ = sigint.recv() => {
                tracing::info!("Trapped \"interrupt\" signal");
                server.hand_off_leadership(LEADERSHIP_HANDOFF).await;
                break;
            }
            _ = sigterm.recv() => {
                tracing::info!("Trapped \"terminated\" signal");
                server.hand_off_leadership(LEADERSHIP_HANDOFF).await;
                break;
            }
            _ = sighup.recv() => {
                tracing::info!("Trapped \"hangup\" signal");
                reload(&server, &mut log, &levels).await;
            }
            _ = sigusr2.recv() => {
                tracing::info!("Trapped \"user defined signal 2\" signal: entering lame duck mode");
                server.enter_lame_duck();
            }
            _ = server.stopped() => break,
        }
    }
    server.shutdown().await;
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Reads the command line and configuration file again and applies what changed (SIGHUP, as
/// nats-server's reload); a configuration that does not load, or changes what needs a restart,
/// is logged and leaves the node as it was.
async fn reload(server: &Server, log: &mut natrix::LogConfig, levels: &logging::LogLevels) {
    let settings = Cli::parse_args(std::env::args_os())
        .map_err(|err| err.to_string())
        .and_then(|cli| {
            cli.into_command(&Loader::new())
                .map_err(|err| err.to_string())
        });
    let settings = match settings {
        Ok(Command::Run(settings)) => settings,
        Ok(_) => return,
        Err(err) => {
            tracing::error!("Failed to reload server configuration: {err}");
            return;
        }
    };
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    match server.reload(settings.server).await {
        Ok(changed) => {
            for option in changed {
                tracing::info!("Reloaded: {option}");
            }
        }
        Err(err) => {
            tracing::error!("Failed to reload server configuration: {err}");
            return;
        }
    }
    // The levels (`debug`, `trace`) change at once; where and how lines are written
    // (`log_file`, `logtime`) only at the next start.
    let new = settings.log;
    if (new.debug, new.trace) != (log.debug, log.trace) {
        match levels.apply(&new) {
            Ok(()) => {
                tracing::info!("Reloaded: debug = {}, trace = {}", new.debug, new.trace);
                (log.debug, log.trace) = (new.debug, new.trace);
            }
            Err(err) => tracing::error!("Failed to reload the log levels: {err}"),
        }
    }
    if (&new.log_file, new.logtime) != (&log.log_file, log.logtime) {
        tracing::warn!("log_file and logtime are not reloaded: they take effect at the next start");
    }
    tracing::info!("Reloaded server configuration");
}

fn listen_for(
    kind: SignalKind,
    name: &'static str,
) -> Result<tokio::signal::unix::Signal, RunError> {
    signal(kind).map_err(|source| RunError::Signal {
        signal: name,
        source,
    })
}
