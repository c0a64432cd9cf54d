//! The natrix-server process: its command line (nats-server's flags), the mapping of a
//! nats-server configuration file onto `ServerConfig`, and logging. `main.rs` only wires these
//! to the runtime and signals.

pub mod cli;
pub mod compat;
pub mod logging;
pub mod options;
pub mod signal_command;

pub use cli::{Cli, CliError, Command};
pub use options::{LogConfig, OptionsError, Settings};
