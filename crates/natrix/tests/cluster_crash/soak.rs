//! The randomized cluster fault test: rounds of one random fault each, from a seed, while a
//! publisher on every node publishes one message at a time. A fault is the stream leader or a
//! follower SIGKILLed and restarted after a random pause, a random node frozen with SIGSTOP for
//! a random time, or every node SIGKILLed at once and restarted. After each round the cluster
//! must agree on a leader that takes publishes, every acknowledged publish must be stored once
//! at the sequence its PubAck named, and every node's copy must catch up.
//!
//! The suite runs `SUITE_ROUNDS`; `scripts/cluster-chaos.sh` runs many more (`NATRIX_CHAOS_ROUNDS`)
//! from a random seed or a given one (`NATRIX_CHAOS_SEED`, which replays the schedule of faults,
//! not the exact timing of the processes).

use super::*;

const ROUNDS_VAR: &str = "NATRIX_CHAOS_ROUNDS";
const SEED_VAR: &str = "NATRIX_CHAOS_SEED";
/// Rounds when `NATRIX_CHAOS_ROUNDS` is not set (the suite's run).
const SUITE_ROUNDS: u32 = 2;
/// Publishing before a fault, and again once the cluster has healed and agrees on a leader.
const ROUND_PUBLISH: Duration = Duration::from_millis(800);
/// Time allowed per round on top of the start (faults, elections, catching up, checks).
const ROUND_DEADLINE: Duration = Duration::from_secs(40);

/// One round's fault.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL the stream leader; restart it after `down`.
    KillLeader { down: Duration },
    /// SIGKILL a node that does not lead the stream; restart it after `down`.
    KillFollower { pick: usize, down: Duration },
    /// SIGSTOP node `node` (whatever its role) for `frozen`, then SIGCONT.
    Freeze { node: usize, frozen: Duration },
    /// SIGKILL every node at once, then restart them all.
    KillAll,
}

impl Fault {
    fn draw(rng: &mut fastrand::Rng) -> Fault {
        let pause = |rng: &mut fastrand::Rng| Duration::from_millis(rng.u64(100..=1500));
        match rng.u8(0..10) {
            0..=2 => Fault::KillLeader { down: pause(rng) },
            3..=5 => Fault::KillFollower {
                pick: rng.usize(0..NODES - 1),
                down: pause(rng),
            },
            6..=8 => Fault::Freeze {
                node: rng.usize(0..NODES),
                frozen: Duration::from_millis(rng.u64(300..=3000)),
            },
            _ => Fault::KillAll,
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn rounds() -> u32 {
    env_number(ROUNDS_VAR).map_or(SUITE_ROUNDS, |n| n.clamp(1, 10_000) as u32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_faults_lose_no_acknowledged_publish() {
    let deadline = START_DEADLINE * 3 + CREATE_DEADLINE + ROUND_DEADLINE * rounds();
    run_cluster_test("randomized fault test", deadline, |cluster| {
        Box::pin(run_rounds(cluster))
    })
    .await;
}

/// What the rounds have established so far.
struct Soak {
    rng: fastrand::Rng,
    ledger: Ledger,
    /// Publisher ids are unique over the whole run (the ledger's `sent` is indexed by them).
    next_publisher: usize,
    /// The stream as read and checked after the last round.
    checked: BTreeMap<u64, String>,
}

async fn run_rounds(cluster: &mut Cluster) -> anyhow::Result<String> {
    let seed = env_number(SEED_VAR).unwrap_or_else(|| fastrand::u64(..));
    let rounds = rounds();
    println!("{SEED_VAR}={seed} {ROUNDS_VAR}={rounds} (the seed replays this schedule of faults)");
    for i in 0..NODES {
        cluster.start(i).await?;
    }
    create_stream(cluster).await?;
    let mut soak = Soak {
        rng: fastrand::Rng::with_seed(seed),
        ledger: Ledger::default(),
        next_publisher: 0,
        checked: BTreeMap::new(),
    };
    for round in 1..=rounds {
        let fault = Fault::draw(&mut soak.rng);
        let summary = run_round(cluster, &mut soak, fault)
            .await
            .with_context(|| format!("round {round} of seed {seed}: {fault:?}"))?;
        println!("round {round}/{rounds}: {fault:?}: {summary}");
    }
    // A last whole read: nothing checked in an earlier round went missing since.
    let leader = agreed_leader(cluster, QUORUM_REGAINED_DEADLINE).await?;
    let seen = read_stream(cluster.client(leader)?).await?;
    ensure!(
        seen == soak.checked,
        "the stream changed after it was checked: {}",
        difference(&soak.checked, &seen)
    );
    cluster.kill_all();
    Ok(format!(
        "seed {seed}: {rounds} rounds, {} publishes acknowledged, {} not, {} stored",
        soak.ledger.acked.len(),
        soak.ledger.unacked,
        seen.len()
    ))
}

/// The index of the stream leader every running node names.
async fn agreed_leader(cluster: &Cluster, within: Duration) -> anyhow::Result<usize> {
    Ok(cluster.wait_leader(None, Instant::now(), within).await?.0)
}

async fn run_round(cluster: &mut Cluster, soak: &mut Soak, fault: Fault) -> anyhow::Result<String> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let first_id = soak.next_publisher;
    let mut publishers = Vec::new();
    for home in 0..NODES {
        let client = publisher_client(cluster, home).await?;
        publishers.push(tokio::spawn(publish(
            first_id + home,
            client,
            stop_rx.clone(),
        )));
    }
    soak.next_publisher += NODES;
    tokio::time::sleep(ROUND_PUBLISH).await;

    let fault_at = Instant::now();
    match fault {
        Fault::KillLeader { down } => {
            let (killed, killed_at) = cluster.kill_leader().await?;
            cluster
                .wait_new_leader(killed, killed_at, LEADER_DEADLINE)
                .await?;
            tokio::time::sleep(down).await;
            cluster.start(killed).await?;
        }
        Fault::KillFollower { pick, down } => {
            let leader = agreed_leader(cluster, LEADER_DEADLINE).await?;
            let followers: Vec<usize> = (0..NODES).filter(|i| *i != leader).collect();
            let victim = followers[pick % followers.len()];
            cluster.kill(victim)?;
            println!("SIGKILLed the follower {}", cluster.nodes[victim].name);
            tokio::time::sleep(down).await;
            cluster.start(victim).await?;
        }
        Fault::Freeze { node, frozen } => {
            cluster.signal(node, "STOP")?;
            tokio::time::sleep(frozen).await;
            cluster.signal(node, "CONT")?;
        }
        Fault::KillAll => {
            for i in 0..NODES {
                cluster.kill(i)?;
            }
            println!("SIGKILLed every node");
            for i in 0..NODES {
                cluster.start(i).await?;
            }
        }
    }
    let leader = agreed_leader(cluster, QUORUM_REGAINED_DEADLINE).await?;
    let healed_at = Instant::now();
    // A publisher whose publish was in flight at the fault first waits out its ack timeout.
    tokio::time::sleep(ACK_TIMEOUT + ROUND_PUBLISH).await;
    let _ = stop_tx.send(true);
    let acked_after_before = soak.ledger.acked_after_election;
    for (k, handle) in publishers.into_iter().enumerate() {
        let published = tokio::time::timeout(ACK_TIMEOUT * 3, handle)
            .await
            .with_context(|| format!("publisher {} did not stop", first_id + k))?
            .with_context(|| format!("publisher {} panicked", first_id + k))?;
        soak.ledger
            .add(first_id + k, published, fault_at, healed_at)?;
    }
    let acked_after = soak.ledger.acked_after_election - acked_after_before;
    ensure!(
        acked_after > 0,
        "nothing was acknowledged once the cluster had healed"
    );

    // Read what is new since the last round from the leader, check all of it, and wait for
    // every node's copy.
    let client = cluster.client(leader)?;
    let info = stream_info(client).await?;
    let last = info["state"]["last_seq"].as_u64().unwrap_or_default();
    let messages = info["state"]["messages"].as_u64().unwrap_or_default();
    ensure!(
        messages == last,
        "nothing was deleted, yet the stream holds {messages} messages up to {last}"
    );
    let from = soak.checked.keys().next_back().map_or(1, |l| l + 1);
    let mut contents = soak.checked.clone();
    read_range(client, from, last, &mut contents).await?;
    soak.ledger
        .check(&contents)
        .with_context(|| format!("the stream as {} serves it", cluster.nodes[leader].name))?;
    let caught_up = cluster.wait_caught_up(&contents).await?;
    let added = contents.len() - soak.checked.len();
    soak.checked = contents;
    Ok(format!(
        "leader {} {:?} after the fault, {acked_after} acked since, {added} stored this \
         round, all copies equal after {caught_up:?}",
        cluster.nodes[leader].name,
        healed_at - fault_at
    ))
}
