//! The nemesis's plan: a seeded list of faults, each after a quiet period, with random targets
//! and durations. The same seed, node count and duration always give the same plan, so `--seed`
//! replays a run's schedule (not the exact timing of the processes, nor which node leads when a
//! fault aims at the leader: those are decided when the fault happens).

use std::time::Duration;

use serde::Serialize;

/// How a data file is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Damage {
    /// A range in the middle of the file overwritten with random bytes.
    Overwrite,
    /// The file cut to half its length.
    Truncate,
}

/// One fault. Node numbers are indices (0 is `n1`). Every fault heals within its duration (a
/// restart waits until the node serves again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    /// SIGKILL `node`, restart it after `down_ms`.
    Kill { node: usize, down_ms: u64 },
    /// SIGKILL whichever node leads the stream then, restart it after `down_ms`.
    KillLeader { down_ms: u64 },
    /// SIGKILL every node at once (a power cut as the processes see it: the page cache
    /// survives), restart them all after `down_ms`.
    KillAll { down_ms: u64 },
    /// SIGSTOP `node`, SIGCONT after `for_ms`.
    Pause { node: usize, for_ms: u64 },
    /// SIGTERM `node` (a graceful stop: it hands its leaderships over), then start it again.
    Restart { node: usize },
    /// The nodes in `side` (fewer than half) cannot reach the others for `for_ms`.
    Partition { side: Vec<usize>, for_ms: u64 },
    /// The stream leader cannot reach any other node for `for_ms`.
    IsolateLeader { for_ms: u64 },
    /// Two halves of `order` reach each other only through its middle node, for `for_ms`.
    Bridge { order: Vec<usize>, for_ms: u64 },
    /// Stop `node` (or, when it has no RocksDB table file yet, the next node that has one),
    /// damage one of its table files (chosen with `pick`), start it: it must refuse to start,
    /// naming the damage, or serve only correct data.
    DamageFile { node: usize, how: Damage, pick: u64 },
}

impl Fault {
    /// The fault's name in summaries and the history.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Kill { .. } => "kill",
            Fault::KillLeader { .. } => "kill-leader",
            Fault::KillAll { .. } => "kill-all",
            Fault::Pause { .. } => "pause",
            Fault::Restart { .. } => "restart",
            Fault::Partition { .. } => "partition",
            Fault::IsolateLeader { .. } => "isolate-leader",
            Fault::Bridge { .. } => "bridge",
            Fault::DamageFile {
                how: Damage::Overwrite,
                ..
            } => "corrupt-file",
            Fault::DamageFile {
                how: Damage::Truncate,
                ..
            } => "truncate-file",
        }
    }

    /// Whether the fault needs network isolation (namespaces and nftables).
    pub fn needs_network(&self) -> bool {
        matches!(
            self,
            Fault::Partition { .. } | Fault::IsolateLeader { .. } | Fault::Bridge { .. }
        )
    }

    /// The time the fault is meant to last, for fitting the plan into its duration (restarts
    /// take what they take; this is their usual cost).
    pub fn nominal(&self) -> Duration {
        Duration::from_millis(match self {
            Fault::Kill { down_ms, .. }
            | Fault::KillLeader { down_ms }
            | Fault::KillAll { down_ms } => down_ms + 1_000,
            Fault::Pause { for_ms, .. }
            | Fault::Partition { for_ms, .. }
            | Fault::IsolateLeader { for_ms }
            | Fault::Bridge { for_ms, .. } => *for_ms,
            Fault::Restart { .. } | Fault::DamageFile { .. } => 2_000,
        })
    }
}

/// A fault and the quiet period before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub quiet_ms: u64,
    pub fault: Fault,
}

/// Longest partition. Kept below the consumer's ack wait, so that a deposed leader cut off with
/// a client cannot time out and redeliver a message whose ack the new leader confirmed while the
/// partition lasted (see the redelivery rule in `checker`).
pub const MAX_PARTITION_MS: u64 = 6_000;

/// Relative weights of the fault kinds in a plan.
const WEIGHTS: [(u8, u32); 9] = [
    (0, 2), // kill
    (1, 2), // kill-leader
    (2, 1), // kill-all
    (3, 2), // pause
    (4, 1), // restart
    (5, 2), // partition
    (6, 2), // isolate-leader
    (7, 1), // bridge
    (8, 1), // damage a file
];

/// Faults until their quiet periods and nominal durations add up to `duration` (at least one),
/// for a cluster of `nodes`.
pub fn plan(seed: u64, nodes: usize, duration: Duration) -> Vec<Step> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut steps = Vec::new();
    let mut planned = Duration::ZERO;
    // Bounded: every step adds at least its quiet period of one second.
    while steps.is_empty() || planned < duration {
        let quiet_ms = rng.u64(1_000..=3_000);
        let fault = draw(&mut rng, nodes.max(1));
        planned += Duration::from_millis(quiet_ms) + fault.nominal();
        steps.push(Step { quiet_ms, fault });
    }
    steps
}

fn draw(rng: &mut fastrand::Rng, nodes: usize) -> Fault {
    let total: u32 = WEIGHTS.iter().map(|(_, w)| w).sum();
    let mut ticket = rng.u32(0..total);
    let mut kind = 0;
    for (k, weight) in WEIGHTS {
        if ticket < weight {
            kind = k;
            break;
        }
        ticket -= weight;
    }
    let node = rng.usize(0..nodes);
    let partition_ms = rng.u64(1_000..=MAX_PARTITION_MS);
    match kind {
        0 => Fault::Kill {
            node,
            down_ms: rng.u64(200..=3_000),
        },
        1 => Fault::KillLeader {
            down_ms: rng.u64(200..=3_000),
        },
        2 => Fault::KillAll {
            down_ms: rng.u64(200..=2_000),
        },
        3 => Fault::Pause {
            node,
            for_ms: rng.u64(300..=4_000),
        },
        4 => Fault::Restart { node },
        5 => {
            // Fewer than half: one of three, two of five.
            let mut order: Vec<usize> = (0..nodes).collect();
            rng.shuffle(&mut order);
            order.truncate((nodes.saturating_sub(1) / 2).max(1));
            order.sort_unstable();
            Fault::Partition {
                side: order,
                for_ms: partition_ms,
            }
        }
        6 => Fault::IsolateLeader {
            for_ms: partition_ms,
        },
        7 => {
            let mut order: Vec<usize> = (0..nodes).collect();
            rng.shuffle(&mut order);
            Fault::Bridge {
                order,
                for_ms: partition_ms,
            }
        }
        _ => Fault::DamageFile {
            node,
            how: if rng.bool() {
                Damage::Overwrite
            } else {
                Damage::Truncate
            },
            pick: rng.u64(..),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_plan() {
        let a = plan(42, 3, Duration::from_secs(60));
        assert_eq!(a, plan(42, 3, Duration::from_secs(60)));
        assert_ne!(a, plan(43, 3, Duration::from_secs(60)));
    }

    #[test]
    fn a_plan_fills_its_duration_and_no_more_than_one_step_beyond() {
        for seed in 0..50 {
            let steps = plan(seed, 5, Duration::from_secs(40));
            let total: Duration = steps
                .iter()
                .map(|s| Duration::from_millis(s.quiet_ms) + s.fault.nominal())
                .sum();
            let last = steps.last().expect("at least one step");
            assert!(total >= Duration::from_secs(40), "seed {seed}");
            assert!(
                total - Duration::from_millis(last.quiet_ms) - last.fault.nominal()
                    < Duration::from_secs(40),
                "seed {seed}"
            );
        }
        assert_eq!(plan(1, 3, Duration::ZERO).len(), 1);
    }

    #[test]
    fn targets_are_nodes_of_the_cluster_and_partitions_leave_a_minority() {
        let mut kinds = std::collections::BTreeSet::new();
        for seed in 0..200 {
            for nodes in [3, 5] {
                for step in plan(seed, nodes, Duration::from_secs(30)) {
                    kinds.insert(step.fault.kind());
                    match &step.fault {
                        Fault::Kill { node, .. }
                        | Fault::Pause { node, .. }
                        | Fault::Restart { node }
                        | Fault::DamageFile { node, .. } => assert!(*node < nodes),
                        Fault::Partition { side, for_ms } => {
                            assert!(!side.is_empty() && side.len() * 2 < nodes);
                            assert!(*for_ms <= MAX_PARTITION_MS);
                        }
                        Fault::Bridge { order, .. } => assert_eq!(order.len(), nodes),
                        _ => {}
                    }
                }
            }
        }
        assert_eq!(kinds.len(), 10, "every kind is drawn: {kinds:?}");
    }
}
