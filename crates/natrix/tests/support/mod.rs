//! Shared by the process-level tests (`jetstream_crash.rs`, `cluster_crash/`): starting the real
//! `natrix-server` binary with its output appended to a log file the test keeps on failure.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

pub const BIN: &str = env!("CARGO_BIN_EXE_natrix-server");

/// Spawns `natrix-server args...` (no RUST_LOG from the test's environment, no stdin), its
/// stdout and stderr appended to `log` after a `==== banner ====` line.
pub fn spawn_logged<I, S>(args: I, log: &Path, banner: &str) -> anyhow::Result<Child>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut out = OpenOptions::new().create(true).append(true).open(log)?;
    writeln!(out, "==== {banner} ====")?;
    let stderr = out.try_clone()?;
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(stderr))
        .spawn()
        .context("spawning natrix-server")
}
