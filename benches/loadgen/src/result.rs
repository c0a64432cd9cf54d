//! The one-line JSON result every scenario produces, and its human-readable rendering.

use serde::{Deserialize, Serialize};

/// One measurement of one scenario against one server. Field names are the JSON contract
/// read by `report`, `chart` and `benches/run.sh`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
    /// Request/reply round-trip percentiles in microseconds (reqrep only).
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
    /// Whether `run.sh` saw a compiler running during this measurement (the machine is shared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_busy: Option<bool>,
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
    fn megabytes_are_decimal() {
        let r = Rates::new(1, 1.0, 1, 2_000_000, 2.0);
        assert_eq!(r.receive_mb_per_s, 1.0);
    }
}
