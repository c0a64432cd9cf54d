//! The one-line JSON result every scenario produces, and its human-readable rendering.

use serde::{Deserialize, Serialize};

/// One measurement of one scenario against one server. Field names are the JSON contract
/// read by `report`, `chart` and `benches/run.sh`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BenchResult {
    pub scenario: String,
    /// The label given with `--label` (e.g. `natrix`, `nats-2.15.1`).
    pub server: String,
    /// The version the server announced in its INFO.
    pub server_version: String,
    pub round: u32,
    /// Payload size in bytes.
    pub size: usize,
    pub pubs: usize,
    pub subs: usize,
    /// Messages (requests for reqrep) published.
    pub msgs: u64,
    /// Deliveries expected: `msgs` x subscribers for fan-out, `msgs` otherwise.
    pub expected: u64,
    /// Deliveries (replies for reqrep) received.
    pub received: u64,
    /// `expected - received`: dropped by the server, the client, or never answered.
    pub lost: u64,
    /// Of `lost`, messages the client library itself dropped because a buffer was full.
    pub client_dropped: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Seconds from the first publish to the last delivery.
    pub elapsed_s: f64,
    /// Seconds from the first publish to the last publisher's flush.
    pub publish_elapsed_s: f64,
    pub publish_msgs_per_s: f64,
    pub receive_msgs_per_s: f64,
    /// Payload megabytes (10^6) per second received.
    pub receive_mb_per_s: f64,
    /// Latency percentiles in microseconds: the request/reply round trip (reqrep), publish to
    /// PubAck (js-pub), put to ack (kv-put), request to value (kv-get).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p999_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_us: Option<f64>,
    /// The server's peak resident set (VmHWM), added by `run.sh` after the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_kib: Option<u64>,
    /// CPU seconds (user + system) this load generator used, connecting included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cpu_s: Option<f64>,
    /// CPU seconds the server process used over its life (added by `run.sh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu_s: Option<f64>,
    /// Share of the machine's CPU used by neither the server nor this client during the run,
    /// in percent (added by `run.sh`): other engineers' builds and tests on a shared machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_cpu_pct: Option<f64>,
    /// Whether `run.sh` saw a compiler running during this measurement (the machine is shared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_busy: Option<bool>,
    /// How acknowledgements were sent (js-consume): `explicit` (one per message), `all` (the
    /// last message of each batch) or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<String>,
    /// Publishes kept in flight (unacknowledged) at once (js-pub, kv, js-recovery's fill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
    /// js-recovery: seconds from starting the server process until `$JS.API.STREAM.INFO`
    /// reported every stored message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_s: Option<f64>,
    /// js-recovery: seconds from starting the server process until it accepted a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_s: Option<f64>,
    /// js-recovery: seconds the server took to exit after SIGTERM (or SIGKILL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_s: Option<f64>,
    /// js-recovery: `term` (clean shutdown) or `kill` (SIGKILL) before the restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    /// Bytes the stream reported holding (js-recovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_bytes: Option<u64>,
}

/// Linux reports process times in USER_HZ ticks, which is 100 on every mainstream
/// architecture (`getconf CLK_TCK`).
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system) used so far by this process, from `/proc/self/stat`;
/// `None` where that file is missing or unreadable.
pub fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks as f64 / USER_HZ)
}

/// utime + stime from a `/proc/<pid>/stat` line. The command name (field 2) may contain
/// spaces and parentheses, so fields are counted from the last `)`: field 3 is index 0 there,
/// utime (field 14) index 11, stime (field 15) index 12.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Rates and sizes computed from raw counts, so every scenario derives them the same way.
pub struct Rates {
    pub publish_msgs_per_s: f64,
    pub receive_msgs_per_s: f64,
    pub receive_mb_per_s: f64,
}

impl Rates {
    pub fn new(published: u64, publish_s: f64, received: u64, bytes: u64, elapsed_s: f64) -> Rates {
        let per_s = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        Rates {
            publish_msgs_per_s: per_s(published, publish_s),
            receive_msgs_per_s: per_s(received, elapsed_s),
            receive_mb_per_s: per_s(bytes, elapsed_s) / 1e6,
        }
    }
}

impl BenchResult {
    pub fn print_human(&self) {
        println!(
            "{} @ {} ({}) size={}B pubs={} subs={}",
            self.scenario, self.server, self.server_version, self.size, self.pubs, self.subs
        );
        println!(
            "  published {} in {:.3}s: {:.0} msgs/s",
            self.msgs, self.publish_elapsed_s, self.publish_msgs_per_s
        );
        println!(
            "  received  {}/{} in {:.3}s: {:.0} msgs/s, {:.1} MB/s",
            self.received,
            self.expected,
            self.elapsed_s,
            self.receive_msgs_per_s,
            self.receive_mb_per_s
        );
        if self.lost > 0 {
            println!(
                "  LOST {} ({} dropped by the client library)",
                self.lost, self.client_dropped
            );
        }
        if let (Some(p50), Some(p99), Some(p999)) = (self.p50_us, self.p99_us, self.p999_us) {
            println!("  latency p50 {p50:.1}us  p99 {p99:.1}us  p99.9 {p999:.1}us");
        }
        if let Some(recovery) = self.recovery_s {
            println!(
                "  recovery after {}: listening after {:.3}s, all {} messages in STREAM.INFO after {recovery:.3}s (stop took {:.3}s)",
                self.stop.as_deref().unwrap_or("?"),
                self.listen_s.unwrap_or(f64::NAN),
                self.received,
                self.stop_s.unwrap_or(f64::NAN),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_zero_rather_than_infinite_for_an_empty_interval() {
        let r = Rates::new(10, 0.0, 10, 100, 0.0);
        assert_eq!(r.publish_msgs_per_s, 0.0);
        assert_eq!(r.receive_msgs_per_s, 0.0);
    }

    #[test]
    fn cpu_ticks_are_read_after_a_command_name_with_spaces() {
        let line = "42 (natrix (bench)) S 1 42 42 0 -1 4194304 100 0 0 0 250 30 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(line), Some(280));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn megabytes_are_decimal() {
        let r = Rates::new(1, 1.0, 1, 2_000_000, 2.0);
        assert_eq!(r.receive_mb_per_s, 1.0);
    }
}
