//! The server's JetStream resource limits when the configuration sets none, as nats-server
//! derives them, and the free space the store's file system must keep. Pure arithmetic apart
//! from [`total_memory`], so it is unit-tested without a disk.

use std::sync::atomic::{AtomicU64, Ordering};

use natrix_stream::StorageType;

/// Free space the file system must keep at most: below it, file-stored writes are refused with
/// "insufficient resources" instead of failing half-way on a full disk.
const DISK_RESERVE_MAX: u64 = 64 << 20;

/// `max_memory_store` when none is configured: three quarters of the machine's memory, as
/// nats-server (`None` when the memory cannot be read: no limit).
pub(crate) fn default_max_memory_store(total_memory: Option<u64>) -> Option<i64> {
    total_memory.map(three_quarters)
}

/// `max_file_store` when none is configured: three quarters of the store file system's free
/// space, as nats-server, counted with what the store already holds there. (nats-server takes
/// three quarters of the free space alone, so a store that already fills most of its disk
/// refuses every write after a restart; natrix does not.)
pub(crate) fn default_max_file_store(fs_available: u64, store_bytes: u64) -> i64 {
    three_quarters(fs_available.saturating_add(store_bytes))
}

/// How much free space the store's file system keeps: 64 MiB, or a twentieth of a smaller file
/// system (a 40 MB volume would otherwise take no write at all).
pub(crate) fn disk_reserve(fs_total: u64) -> u64 {
    DISK_RESERVE_MAX.min(fs_total / 20)
}

/// When a publish sums what every stream stores to check a server limit. A configured limit is
/// checked on every publish, as before; a limit natrix derived (a safety net three quarters of
/// memory or disk away) only once what was stored at the last once-a-second sample, plus what
/// publishes asked to add since, passes half of it, so a server without configured limits does
/// no per-publish summing while far below them.
#[derive(Debug, Default)]
pub(crate) struct LimitChecks {
    memory: Check,
    file: Check,
}

#[derive(Debug, Default)]
struct Check {
    derived: bool,
    /// Bytes stored at the last sample.
    sampled: AtomicU64,
    /// Bytes publishes asked to store since the last sample.
    added: AtomicU64,
}

impl LimitChecks {
    /// Which limits were derived rather than configured.
    pub(crate) fn new(memory_derived: bool, file_derived: bool) -> LimitChecks {
        let check = |derived| Check {
            derived,
            ..Check::default()
        };
        LimitChecks {
            memory: check(memory_derived),
            file: check(file_derived),
        }
    }

    fn check(&self, storage: StorageType) -> &Check {
        match storage {
            StorageType::Memory => &self.memory,
            StorageType::File => &self.file,
        }
    }

    /// Whether a publish of `more` bytes of `storage` must check the server limit `max`
    /// against the exact usage.
    pub(crate) fn exact(&self, storage: StorageType, more: u64, max: u64) -> bool {
        let check = self.check(storage);
        if !check.derived {
            return true;
        }
        let added = check
            .added
            .fetch_add(more, Ordering::Relaxed)
            .saturating_add(more);
        check.sampled.load(Ordering::Relaxed).saturating_add(added) >= max / 2
    }

    /// Takes a sample of the bytes stored.
    pub(crate) fn sample(&self, storage: StorageType, used: u64) {
        let check = self.check(storage);
        check.sampled.store(used, Ordering::Relaxed);
        check.added.store(0, Ordering::Relaxed);
    }
}

fn three_quarters(bytes: u64) -> i64 {
    i64::try_from(bytes / 4 * 3).unwrap_or(i64::MAX)
}

/// The machine's memory (`MemTotal` of `/proc/meminfo`), where the system tells it.
pub(crate) fn total_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&meminfo)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut fields = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    let unit = match fields.next() {
        Some("kB") => 1024,
        None => 1,
        Some(_) => return None,
    };
    value.checked_mul(unit)
}

/// A byte count as nats-server's start-up banner writes it: `512 B`, `30.00 MB`, `17.66 GB`
/// (powers of 1024).
pub(crate) fn friendly_bytes(bytes: i64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    value /= 1024.0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}B", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_three_quarters_as_in_nats_server() {
        // Measured: nats-server 2.9.10 on a 40 MiB tmpfs reports max_storage 31457280, and on a
        // machine with MemTotal 24684092 kB max_memory 18957382656 (rounded down to 4 bytes).
        assert_eq!(default_max_file_store(40 << 20, 0), 31_457_280);
        assert_eq!(
            default_max_memory_store(Some(24_684_092 * 1024)),
            Some(18_957_382_656)
        );
        assert_eq!(default_max_memory_store(None), None);
    }

    #[test]
    fn the_file_default_counts_what_the_store_already_holds() {
        assert_eq!(default_max_file_store(1_000, 3_000), 3_000);
        assert_eq!(default_max_file_store(u64::MAX, u64::MAX), i64::MAX);
    }

    #[test]
    fn the_disk_reserve_shrinks_on_small_file_systems() {
        assert_eq!(disk_reserve(40 << 20), 2 << 20);
        assert_eq!(disk_reserve(1 << 40), 64 << 20);
        assert_eq!(disk_reserve(0), 0);
    }

    #[test]
    fn derived_limits_are_checked_exactly_only_past_half() {
        let checks = LimitChecks::new(true, false);
        assert!(
            checks.exact(StorageType::File, 1, 1_000),
            "configured: always"
        );
        assert!(
            !checks.exact(StorageType::Memory, 100, 1_000),
            "derived, far below"
        );
        checks.sample(StorageType::Memory, 300);
        assert!(!checks.exact(StorageType::Memory, 100, 1_000), "300 + 100");
        assert!(
            checks.exact(StorageType::Memory, 100, 1_000),
            "300 + 200 since the sample: half"
        );
        checks.sample(StorageType::Memory, 10);
        assert!(
            !checks.exact(StorageType::Memory, 1, 1_000),
            "back below half"
        );
        checks.sample(StorageType::Memory, 600);
        assert!(checks.exact(StorageType::Memory, 1, 1_000));
    }

    #[test]
    fn mem_total_is_read_in_kibibytes() {
        let meminfo = "MemTotal:       24684092 kB\nMemFree:        1 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(24_684_092 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: x kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: 1 MB\n"), None);
    }

    #[test]
    fn byte_counts_read_as_in_the_nats_server_banner() {
        assert_eq!(friendly_bytes(512), "512 B");
        assert_eq!(friendly_bytes(31_457_280), "30.00 MB");
        assert_eq!(friendly_bytes(2_000_000), "1.91 MB");
        assert_eq!(friendly_bytes(18_957_382_656), "17.66 GB");
        assert_eq!(friendly_bytes(1 << 40), "1.00 TB");
    }
}
