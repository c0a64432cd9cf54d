//! Resource usage of this process for /varz (`mem`, `cpu`), read from Linux procfs. On other
//! systems both read as 0.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Clock ticks per second of `utime`/`stime` in /proc/<pid>/stat. The kernel reports these in
/// USER_HZ, which is 100 on every architecture we run on (x86_64, aarch64, armv7).
const TICKS_PER_SEC: f64 = 100.0;

/// How long a CPU sample stays current; polling faster would report the noise of single ticks.
const CPU_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Resident set size in bytes (`VmRSS`).
pub(crate) fn resident_memory() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// User plus system CPU time consumed so far, in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields after the last ')'
    // start at field 3 (`state`); utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SEC)
}

/// CPU usage in percent of one core (like `ps` and nats-server's `cpu`), averaged over the time
/// since the previous sample (at least `CPU_SAMPLE_INTERVAL`).
#[derive(Debug)]
pub(crate) struct CpuMeter {
    last: Mutex<CpuSample>,
}

#[derive(Debug)]
struct CpuSample {
    at: Instant,
    cpu_seconds: f64,
    percent: f64,
}

impl CpuMeter {
    pub fn new() -> Self {
        let sample = CpuSample {
            at: Instant::now(),
            cpu_seconds: cpu_seconds().unwrap_or(0.0),
            percent: 0.0,
        };
        Self {
            last: Mutex::new(sample),
        }
    }

    pub fn percent(&self) -> f64 {
        let mut last = self.last.lock();
        let now = Instant::now();
        let elapsed = now.duration_since(last.at);
        if elapsed < CPU_SAMPLE_INTERVAL {
            return last.percent;
        }
        let Some(used) = cpu_seconds() else {
            return 0.0;
        };
        let percent = ((used - last.cpu_seconds).max(0.0) / elapsed.as_secs_f64()) * 100.0;
        // One decimal, as nats-server reports it.
        let percent = (percent * 10.0).round() / 10.0;
        *last = CpuSample {
            at: now,
            cpu_seconds: used,
            percent,
        };
        percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_this_process_memory_and_cpu() {
        assert!(
            resident_memory() > 1024 * 1024,
            "a test binary uses more than 1 MiB"
        );
        let spent = cpu_seconds().expect("procfs stat parses");
        assert!(spent >= 0.0);
    }
}
