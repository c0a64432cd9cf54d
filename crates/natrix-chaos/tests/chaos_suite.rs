//! The chaos suite's short run in the default test suite: two seeds of 20 seconds of faults each
//! against the debug `natrix-server` that the workspace build puts next to this package's
//! binary (`cargo test --workspace` builds it for the `natrix` package's tests). Random seeds,
//! printed first; `NATRIX_CHAOS_SEED` fixes the first one. `deploy/chaos/run.sh` runs many more.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Seeds per suite run, and seconds of faults per seed.
const RUNS: u64 = 2;
const DURATION_SECS: u64 = 20;
/// The whole test, start to end: both runs, with their setup, drain and checks.
const DEADLINE: Duration = Duration::from_secs(540);

fn server_bin() -> PathBuf {
    let chaos = PathBuf::from(env!("CARGO_BIN_EXE_natrix-chaos"));
    chaos.with_file_name(format!("natrix-server{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn two_seeds_of_faults_break_no_promise() {
    let server = server_bin();
    assert!(
        server.is_file(),
        "{} is missing: the chaos suite runs against the debug natrix-server, which \
         `cargo test --workspace` builds for the natrix package's tests; alone, build it first \
         with `cargo build -p natrix --bin natrix-server`",
        server.display()
    );
    let seed = std::env::var("NATRIX_CHAOS_SEED")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| fastrand::u64(..u64::MAX / 2));
    println!(
        "chaos suite: seeds {seed}..{} (NATRIX_CHAOS_SEED={seed} replays them)",
        seed + RUNS - 1
    );
    let work = tempfile::tempdir().expect("a temporary directory");
    let mut child = Command::new(env!("CARGO_BIN_EXE_natrix-chaos"))
        .arg("--server-bin")
        .arg(&server)
        .args(["--seed", &seed.to_string()])
        .args(["--runs", &RUNS.to_string()])
        .args(["--duration", &DURATION_SECS.to_string()])
        .arg("--workdir")
        .arg(work.path())
        .stdin(Stdio::null())
        .spawn()
        .expect("starting natrix-chaos");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for natrix-chaos") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            // SIGTERM lets it kill its nodes and remove its namespaces.
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            std::thread::sleep(Duration::from_secs(10));
            let _ = child.kill();
            let _ = child.wait();
            let kept = work.keep();
            panic!(
                "natrix-chaos (seed {seed}) did not finish within {DEADLINE:?}; work dirs in {}",
                kept.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        let kept = work.keep();
        panic!(
            "the chaos suite failed ({status}) for seeds {seed}..{}: see the output above; \
             histories, stores and logs are in {}",
            seed + RUNS - 1,
            kept.display()
        );
    }
    println!("chaos suite passed in {:?}", started.elapsed());
}
