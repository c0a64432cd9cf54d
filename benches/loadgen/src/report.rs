//! Reads results.jsonl, takes the median of every metric over rounds, and prints the
//! side-by-side markdown tables (values per server, then subject/other ratios).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::result::BenchResult;

/// All results grouped by benchmark (scenario + payload size) and server label,
/// both kept in order of first appearance.
pub struct Summary {
    pub benchmarks: Vec<String>,
    pub servers: Vec<String>,
    runs: BTreeMap<(usize, usize), Vec<BenchResult>>,
}

/// A metric to summarise: its column name and how to read it from one run.
pub struct Metric {
    pub title: &'static str,
    pub unit: &'static str,
    pub read: fn(&BenchResult) -> Option<f64>,
    pub higher_is_better: bool,
    /// Mark cells where a round lost messages: the rate then counts less work and is suspect.
    pub flag_loss: bool,
}

/// Runs that measure a recovery have no rate; every rate metric skips them.
fn is_rate_run(r: &BenchResult) -> bool {
    r.recovery_s.is_none()
}

pub const RECEIVE_RATE: Metric = Metric {
    title: "Throughput, received messages (js-pub: acknowledged publishes; kv: operations)",
    unit: "msgs/s",
    read: |r| is_rate_run(r).then_some(r.receive_msgs_per_s),
    higher_is_better: true,
    flag_loss: true,
};

const METRICS: [Metric; 8] = [
    RECEIVE_RATE,
    Metric {
        title: "Latency p50 (reqrep round trip; js-pub publish to PubAck; kv operation)",
        unit: "us",
        read: |r| r.p50_us,
        higher_is_better: false,
        flag_loss: false,
    },
    Metric {
        title: "Latency p99",
        unit: "us",
        read: |r| r.p99_us,
        higher_is_better: false,
        flag_loss: false,
    },
    Metric {
        title: "Latency p99.9",
        unit: "us",
        read: |r| r.p999_us,
        higher_is_better: false,
        flag_loss: false,
    },
    Metric {
        title: "Server CPU time per million deliveries",
        unit: "CPU s",
        read: |r| match (r.server_cpu_s, r.received) {
            (Some(cpu), n) if n > 0 && is_rate_run(r) => Some(cpu / n as f64 * 1e6),
            _ => None,
        },
        higher_is_better: false,
        flag_loss: true,
    },
    Metric {
        title: "Server peak RSS, VmHWM",
        unit: "MiB",
        read: |r| r.peak_rss_kib.map(|k| k as f64 / 1024.0),
        higher_is_better: false,
        flag_loss: false,
    },
    Metric {
        title: "Recovery: process start until STREAM.INFO reports every message",
        unit: "s",
        read: |r| r.recovery_s,
        higher_is_better: false,
        flag_loss: true,
    },
    Metric {
        title: "Recovery: process start until it accepts a connection",
        unit: "s",
        read: |r| r.listen_s,
        higher_is_better: false,
        flag_loss: false,
    },
];

/// Bench label used in tables and charts.
pub fn benchmark_name(r: &BenchResult) -> String {
    format!("{} {}B", r.scenario, r.size)
}

impl Summary {
    pub fn load(path: &Path) -> Result<Summary> {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut results = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<BenchResult>(line) {
                Ok(r) => results.push(r),
                Err(e) => eprintln!("natrix-bench: skipping {}:{}: {e}", path.display(), n + 1),
            }
        }
        if results.is_empty() {
            bail!("no results in {}", path.display());
        }
        Ok(Summary::from_results(results))
    }

    pub fn from_results(results: Vec<BenchResult>) -> Summary {
        let mut benchmarks: Vec<String> = Vec::new();
        let mut servers: Vec<String> = Vec::new();
        let mut runs: BTreeMap<(usize, usize), Vec<BenchResult>> = BTreeMap::new();
        for r in results {
            let b = index_of(&mut benchmarks, benchmark_name(&r));
            let s = index_of(&mut servers, r.server.clone());
            runs.entry((b, s)).or_default().push(r);
        }
        Summary {
            benchmarks,
            servers,
            runs,
        }
    }

    /// The runs of one benchmark against one server.
    pub fn runs(&self, bench: usize, server: usize) -> &[BenchResult] {
        self.runs.get(&(bench, server)).map_or(&[], Vec::as_slice)
    }

    /// Whether any round of this benchmark against this server lost messages.
    pub fn lossy(&self, bench: usize, server: usize) -> bool {
        self.runs(bench, server).iter().any(|r| r.lost > 0)
    }

    /// Median of a metric over rounds, `None` when no run reported it.
    pub fn median(&self, bench: usize, server: usize, metric: &Metric) -> Option<f64> {
        median(
            self.runs(bench, server)
                .iter()
                .filter_map(metric.read)
                .collect(),
        )
    }

    /// Subjects first (in the order given), then the others in order of appearance.
    fn ordered_servers(&self, subjects: &[usize]) -> Vec<usize> {
        let mut order: Vec<usize> = subjects.to_vec();
        order.extend((0..self.servers.len()).filter(|s| !subjects.contains(s)));
        order
    }

    /// Tables of medians; `subject` is one label or several separated by commas, and every
    /// subject's median is divided by every other server's.
    pub fn render(&self, subject: &str) -> String {
        let subjects: Vec<usize> = subject
            .split(',')
            .filter_map(|name| self.servers.iter().position(|s| s == name.trim()))
            .collect();
        let order = self.ordered_servers(&subjects);
        let others: Vec<usize> = order
            .iter()
            .copied()
            .filter(|s| !subjects.contains(s))
            .collect();
        let pairs: Vec<(usize, usize)> = subjects
            .iter()
            .flat_map(|&si| others.iter().map(move |&o| (si, o)))
            .collect();
        let mut out = String::new();
        for metric in &METRICS {
            let rows: Vec<usize> = (0..self.benchmarks.len())
                .filter(|&b| order.iter().any(|&s| self.median(b, s, metric).is_some()))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let better = if metric.higher_is_better {
                "higher"
            } else {
                "lower"
            };
            out.push_str(&format!(
                "\n### {} ({}, median; {better} is better)\n\n",
                metric.title, metric.unit
            ));
            let mut header = vec!["benchmark".to_owned()];
            header.extend(order.iter().map(|&s| self.servers[s].clone()));
            header.extend(
                pairs
                    .iter()
                    .map(|&(si, o)| format!("{} / {}", self.servers[si], self.servers[o])),
            );
            out.push_str(&format!("| {} |\n", header.join(" | ")));
            out.push_str(&format!("|{}\n", " --- |".repeat(header.len())));
            for b in rows {
                let mut cells = vec![self.benchmarks[b].clone()];
                cells.extend(order.iter().map(|&s| {
                    let mark = if metric.flag_loss && self.lossy(b, s) {
                        " *"
                    } else {
                        ""
                    };
                    format!("{}{mark}", fmt_value(self.median(b, s, metric)))
                }));
                cells.extend(pairs.iter().map(|&(si, o)| {
                    fmt_ratio(self.median(b, si, metric), self.median(b, o, metric))
                }));
                out.push_str(&format!("| {} |\n", cells.join(" | ")));
            }
        }
        let lossy: Vec<String> = self
            .runs
            .values()
            .flatten()
            .filter(|r| r.lost > 0)
            .map(|r| {
                format!(
                    "{} on {} round {}: lost {} of {} ({} in the client)",
                    benchmark_name(r),
                    r.server,
                    r.round,
                    r.lost,
                    r.expected,
                    r.client_dropped
                )
            })
            .collect();
        out.push_str("\n### Lost messages\n\n");
        out.push_str("Cells marked * above had at least one round that lost messages.\n\n");
        if lossy.is_empty() {
            out.push_str("None: every run delivered every expected message.\n");
        } else {
            for line in lossy {
                out.push_str(&format!("- {line}\n"));
            }
        }
        let all: Vec<&BenchResult> = self.runs.values().flatten().collect();
        let other: Vec<f64> = all.iter().filter_map(|r| r.other_cpu_pct).collect();
        let worst = other.iter().copied().fold(0.0_f64, f64::max);
        if let Some(mid) = median(other) {
            out.push_str(&format!(
                "\nOther processes used a median {mid:.0}% (at most {worst:.0}%) of the machine's CPU during runs.\n"
            ));
        }
        let busy = all.iter().filter(|r| r.machine_busy == Some(true)).count();
        if busy > 0 {
            out.push_str(&format!(
                "\nNote: {busy} of {} runs overlapped with a compiler running on this machine.\n",
                all.len()
            ));
        }
        out
    }
}

fn index_of(list: &mut Vec<String>, name: String) -> usize {
    match list.iter().position(|x| *x == name) {
        Some(i) => i,
        None => {
            list.push(name);
            list.len() - 1
        }
    }
}

pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(v) if v >= 10_000.0 => group_thousands(v.round() as u64),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fmt_ratio(mine: Option<f64>, theirs: Option<f64>) -> String {
    match (mine, theirs) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".to_owned(),
    }
}

pub fn print_report(input: &Path, subject: &str) -> Result<()> {
    let summary = Summary::load(input)?;
    print!("{}", summary.render(subject));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(server: &str, scenario: &str, rate: f64, rss: u64) -> BenchResult {
        BenchResult {
            scenario: scenario.to_owned(),
            server: server.to_owned(),
            server_version: "x".to_owned(),
            round: 0,
            size: 16,
            pubs: 1,
            subs: 1,
            msgs: 10,
            expected: 10,
            received: 10,
            lost: 0,
            client_dropped: 0,
            bytes: 160,
            elapsed_s: 1.0,
            publish_elapsed_s: 1.0,
            publish_msgs_per_s: rate,
            receive_msgs_per_s: rate,
            receive_mb_per_s: 0.0,
            p50_us: None,
            p99_us: None,
            p999_us: None,
            max_us: None,
            peak_rss_kib: Some(rss),
            client_cpu_s: None,
            server_cpu_s: None,
            other_cpu_pct: None,
            machine_busy: None,
            ..BenchResult::default()
        }
    }

    #[test]
    fn median_of_odd_and_even_rounds() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn report_puts_the_subject_first_and_divides_by_each_baseline() {
        let summary = Summary::from_results(vec![
            run("nats-a", "pubsub", 100.0, 2048),
            run("natrix", "pubsub", 300.0, 1024),
            run("natrix", "pubsub", 200.0, 1024),
            run("natrix", "pubsub", 400.0, 1024),
        ]);
        let text = summary.render("natrix");
        assert!(
            text.contains("| benchmark | natrix | nats-a | natrix / nats-a |"),
            "{text}"
        );
        assert!(
            text.contains("| pubsub 16B | 300 | 100 | 3.00x |"),
            "{text}"
        );
        assert!(
            text.contains("| pubsub 16B | 1.00 | 2.00 | 0.50x |"),
            "{text}"
        );
        assert!(text.contains("None: every run delivered"), "{text}");
    }

    #[test]
    fn every_subject_is_divided_by_every_other_server() {
        let summary = Summary::from_results(vec![
            run("nats-a", "js-pub/256", 100.0, 2048),
            run("natrix", "js-pub/256", 50.0, 1024),
            run("natrix-sync2m", "js-pub/256", 200.0, 1024),
        ]);
        let text = summary.render("natrix,natrix-sync2m");
        assert!(
            text.contains(
                "| benchmark | natrix | natrix-sync2m | nats-a | natrix / nats-a | natrix-sync2m / nats-a |"
            ),
            "{text}"
        );
        assert!(
            text.contains("| js-pub/256 16B | 50.0 | 200 | 100 | 0.50x | 2.00x |"),
            "{text}"
        );
    }

    #[test]
    fn recovery_runs_are_reported_as_times_not_rates() {
        let mut recovery = run("natrix", "js-recovery-kill", 0.0, 1024);
        recovery.recovery_s = Some(1.5);
        let text = Summary::from_results(vec![recovery]).render("natrix");
        assert!(!text.contains("Throughput"), "{text}");
        assert!(text.contains("| js-recovery-kill 16B | 1.50 |"), "{text}");
    }

    #[test]
    fn large_values_get_thousands_separators() {
        assert_eq!(fmt_value(Some(1_234_567.4)), "1,234,567");
    }
}
