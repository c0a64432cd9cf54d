//! The nemesis: carries out a plan of faults (`natrix_chaos::schedule`) on the cluster, one at a
//! time, each healed before the next quiet period, and records each fault's start and end in the
//! history. It also watches for nodes that die by themselves and for damaged stores that a node
//! neither refuses nor survives; those are findings of the run, reported with the checker's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use natrix_chaos::checker::Violation;
use natrix_chaos::history::{FaultDetail, Recorder};
use natrix_chaos::schedule::{Damage, Fault, Step};
use natrix_chaos::topology::{self, CutPair};
use natrix_chaos::{KV_STREAM, STREAM};

use crate::cluster::{Cluster, STOP_DEADLINE, Started, tail};
use crate::say;

/// How long a node started on a damaged store may take to refuse or to serve (it reads and
/// verifies its whole store first).
const DAMAGED_START_DEADLINE: Duration = Duration::from_secs(90);
/// Looking up the stream leader or voters before a fault.
const LOOKUP: Duration = Duration::from_secs(5);
/// Words of an error message that name damage to a file.
const DAMAGE_WORDS: [&str; 6] = [
    "corrupt",
    "checksum",
    "truncat",
    "damage",
    "too short",
    "mismatch",
];

/// What the nemesis found besides the checker's rules, and what it had to skip.
#[derive(Default)]
pub struct Findings {
    /// Broken promises (a node that died by itself, would not restart, or took a damaged file
    /// silently).
    pub violations: BTreeMap<&'static str, Violation>,
    /// Worth knowing, not a broken promise (a slow graceful stop).
    pub warnings: Vec<String>,
    /// Faults not carried out, by kind, with the reason.
    pub skipped: BTreeMap<String, usize>,
    /// How each damaged-file fault ended.
    pub damage: Vec<String>,
}

impl Findings {
    pub fn violation(&mut self, rule: &'static str, example: String) {
        let v = self.violations.entry(rule).or_insert_with(|| Violation {
            rule,
            count: 0,
            examples: Vec::new(),
        });
        v.count += 1;
        if v.examples.len() < 8 {
            v.examples.push(example);
        }
    }
}

pub struct Nemesis<'a> {
    pub cluster: &'a mut Cluster,
    pub rec: Recorder,
    pub findings: Findings,
}

impl Nemesis<'_> {
    /// Carries out `steps` until they are done or `deadline` passes (faults not yet begun are
    /// then left out and reported as skipped).
    pub async fn run(&mut self, steps: &[Step], deadline: Instant) -> anyhow::Result<()> {
        for (k, step) in steps.iter().enumerate() {
            let quiet = Duration::from_millis(step.quiet_ms);
            if Instant::now() + quiet + step.fault.nominal() > deadline {
                for s in &steps[k..] {
                    *self
                        .findings
                        .skipped
                        .entry(format!("{} (run deadline)", s.fault.kind()))
                        .or_default() += 1;
                }
                say(
                    &self.rec,
                    &format!("nemesis deadline: {} faults left out", steps.len() - k),
                );
                break;
            }
            tokio::time::sleep(quiet).await;
            self.restart_crashed().await?;
            if step.fault.needs_network() && self.cluster.netns().is_none() {
                *self
                    .findings
                    .skipped
                    .entry(format!("{} (no network namespaces)", step.fault.kind()))
                    .or_default() += 1;
                say(
                    &self.rec,
                    &format!("skipped {} (no network namespaces)", step.fault.kind()),
                );
                continue;
            }
            self.apply(&step.fault)
                .await
                .with_context(|| format!("fault {} of {}: {:?}", k + 1, steps.len(), step.fault))?;
        }
        Ok(())
    }

    /// Removes every partition, resumes every paused node and starts every stopped one.
    pub async fn heal_all(&mut self) -> anyhow::Result<()> {
        if let Some(netns) = self.cluster.netns() {
            netns.heal()?;
        }
        self.cluster.resume_all();
        self.restart_crashed().await?;
        self.cluster.start_all_stopped().await
    }

    /// A node whose process ended without the nemesis stopping it crashed: a violation; it is
    /// started again so that the run goes on.
    async fn restart_crashed(&mut self) -> anyhow::Result<()> {
        for (i, why) in self.cluster.reap_unexpected_exits() {
            let name = self.cluster.nodes[i].name.clone();
            say(
                &self.rec,
                &format!("{name} exited by itself: {}", first_line(&why)),
            );
            self.findings
                .violation("node-crashed", format!("{name} exited by itself: {why}"));
            let f = self.rec.fault_start(
                "crash-restart",
                FaultDetail {
                    nodes: vec![name],
                    note: "the node had exited by itself".to_owned(),
                    ..FaultDetail::default()
                },
            );
            self.cluster.start(i).await?;
            self.rec.fault_end(f, "restarted");
        }
        Ok(())
    }

    async fn apply(&mut self, fault: &Fault) -> anyhow::Result<()> {
        let kind = fault.kind();
        match fault {
            Fault::Kill { node, down_ms } => self.kill(kind, *node, *down_ms).await,
            Fault::KillLeader { down_ms } => match self.cluster.leader(STREAM, LOOKUP).await {
                Some(leader) => self.kill(kind, leader, *down_ms).await,
                None => {
                    self.skip(kind, "no stream leader known");
                    Ok(())
                }
            },
            Fault::KillAll { down_ms } => {
                self.cluster.kill_all();
                let f = self.rec.fault_start(
                    kind,
                    FaultDetail {
                        nodes: self.cluster.names(),
                        ..FaultDetail::default()
                    },
                );
                say(
                    &self.rec,
                    &format!("{kind}: every node SIGKILLed for {down_ms} ms"),
                );
                tokio::time::sleep(Duration::from_millis(*down_ms)).await;
                self.cluster.start_all_stopped().await?;
                self.rec.fault_end(f, "every node restarted");
                Ok(())
            }
            Fault::Pause { node, for_ms } => {
                let name = self.cluster.nodes[*node].name.clone();
                self.cluster.signal(*node, libc::SIGSTOP)?;
                let f = self.rec.fault_start(
                    kind,
                    FaultDetail {
                        nodes: vec![name.clone()],
                        ..FaultDetail::default()
                    },
                );
                say(
                    &self.rec,
                    &format!("{kind}: {name} SIGSTOPped for {for_ms} ms"),
                );
                tokio::time::sleep(Duration::from_millis(*for_ms)).await;
                self.cluster.signal(*node, libc::SIGCONT)?;
                self.rec.fault_end(f, "SIGCONT");
                Ok(())
            }
            Fault::Restart { node } => self.restart(kind, *node).await,
            Fault::Partition { side, for_ms } => {
                let cut = topology::split(self.cluster.nodes.len(), side);
                self.partition(kind, side.clone(), cut, *for_ms).await
            }
            Fault::IsolateLeader { for_ms } => match self.cluster.leader(STREAM, LOOKUP).await {
                Some(leader) => {
                    let cut = topology::split(self.cluster.nodes.len(), &[leader]);
                    self.partition(kind, vec![leader], cut, *for_ms).await
                }
                None => {
                    self.skip(kind, "no stream leader known");
                    Ok(())
                }
            },
            Fault::Bridge { order, for_ms } => {
                let cut = topology::bridge(order);
                let middle = order.get(order.len() / 2).copied().into_iter().collect();
                self.partition(kind, middle, cut, *for_ms).await
            }
            Fault::DamageFile { node, how, pick } => self.damage(kind, *node, *how, *pick).await,
        }
    }

    fn skip(&mut self, kind: &str, why: &str) {
        *self
            .findings
            .skipped
            .entry(format!("{kind} ({why})"))
            .or_default() += 1;
        say(&self.rec, &format!("skipped {kind}: {why}"));
    }

    async fn kill(&mut self, kind: &str, node: usize, down_ms: u64) -> anyhow::Result<()> {
        let name = self.cluster.nodes[node].name.clone();
        self.cluster.kill(node);
        let f = self.rec.fault_start(
            kind,
            FaultDetail {
                nodes: vec![name.clone()],
                ..FaultDetail::default()
            },
        );
        say(
            &self.rec,
            &format!("{kind}: {name} SIGKILLed for {down_ms} ms"),
        );
        tokio::time::sleep(Duration::from_millis(down_ms)).await;
        let took = self.cluster.start(node).await?;
        self.rec
            .fault_end(f, format!("restarted, serving after {took:?}"));
        Ok(())
    }

    async fn restart(&mut self, kind: &str, node: usize) -> anyhow::Result<()> {
        let name = self.cluster.nodes[node].name.clone();
        let f = self.rec.fault_start(
            kind,
            FaultDetail {
                nodes: vec![name.clone()],
                ..FaultDetail::default()
            },
        );
        let since = Instant::now();
        let (by_itself, status) = self.cluster.terminate(node, STOP_DEADLINE).await?;
        let stopped = since.elapsed();
        if !by_itself {
            self.findings.warnings.push(format!(
                "{name} did not exit within {STOP_DEADLINE:?} of SIGTERM (SIGKILLed)"
            ));
        } else if let Some(status) = status
            && !status.success()
        {
            self.findings.warnings.push(format!(
                "{name} exited with {status} after SIGTERM:\n{}",
                tail(&self.cluster.output_since_start(node), 10)
            ));
        }
        say(
            &self.rec,
            &format!("{kind}: {name} SIGTERMed, exited after {stopped:?}"),
        );
        let took = self.cluster.start(node).await?;
        self.rec.fault_end(
            f,
            format!("stopped in {stopped:?}, serving again after {took:?}"),
        );
        Ok(())
    }

    async fn partition(
        &mut self,
        kind: &str,
        nodes: Vec<usize>,
        cut: Vec<CutPair>,
        for_ms: u64,
    ) -> anyhow::Result<()> {
        let names = self.cluster.names();
        let mut voters = BTreeMap::new();
        for stream in [STREAM, KV_STREAM] {
            voters.insert(stream.to_owned(), self.cluster.voters(stream, LOOKUP).await);
        }
        let Some(netns) = self.cluster.netns() else {
            bail!("a partition needs network namespaces");
        };
        netns.cut(&cut)?;
        let detail = FaultDetail {
            nodes: nodes.iter().map(|i| names[*i].clone()).collect(),
            cut: cut
                .iter()
                .map(|(a, b)| (names[*a].clone(), names[*b].clone()))
                .collect(),
            voters,
            note: String::new(),
        };
        let f = self.rec.fault_start(kind, detail.clone());
        say(
            &self.rec,
            &format!(
                "{kind}: {:?} cut for {for_ms} ms (stream voters {:?})",
                detail.cut,
                detail.voters.get(STREAM)
            ),
        );
        tokio::time::sleep(Duration::from_millis(for_ms)).await;
        // The window closes before the rules go: from here on answers may legitimately come.
        self.rec.fault_end(f, "healed");
        netns.heal()
    }

    async fn damage(
        &mut self,
        kind: &str,
        planned: usize,
        how: Damage,
        pick: u64,
    ) -> anyhow::Result<()> {
        // RocksDB writes table files only when a memtable fills or a restart replays the log, so
        // early in a run a node may have none: the first node from the planned one on that has
        // some is damaged.
        let n = self.cluster.nodes.len();
        let node = (0..n)
            .map(|k| (planned + k) % n)
            .find(|i| table_files(&self.cluster.nodes[*i].rocksdb()).is_ok_and(|t| !t.is_empty()))
            .unwrap_or(planned);
        let name = self.cluster.nodes[node].name.clone();
        let dir = self.cluster.nodes[node].rocksdb();
        self.cluster.kill(node);
        // Listed after the kill: the running node may have flushed or compacted meanwhile.
        let mut tables = table_files(&dir)?;
        tables.sort();
        if tables.is_empty() {
            let f = self.rec.fault_start(
                kind,
                FaultDetail {
                    nodes: vec![name.clone()],
                    note: "no sst yet: a plain restart".to_owned(),
                    ..FaultDetail::default()
                },
            );
            say(
                &self.rec,
                &format!("{kind}: {name} has no table file yet, plain restart"),
            );
            self.cluster.start(node).await?;
            self.rec.fault_end(f, "restarted");
            self.findings.damage.push(format!("{name}: no sst yet"));
            return Ok(());
        }
        let mut rng = fastrand::Rng::with_seed(pick);
        let file = tables[rng.usize(0..tables.len())].clone();
        let backup = dir.with_file_name(format!("rocksdb.backup-{}", self.rec.now()));
        {
            let (from, to) = (dir.clone(), backup.clone());
            tokio::task::spawn_blocking(move || copy_dir(&from, &to))
                .await
                .context("backup task")??;
        }
        let what = damage_file(&file, how, &mut rng)?;
        let f = self.rec.fault_start(
            kind,
            FaultDetail {
                nodes: vec![name.clone()],
                note: what.clone(),
                ..FaultDetail::default()
            },
        );
        say(&self.rec, &format!("{kind}: {name}: {what}"));
        self.cluster.spawn(node)?;
        let outcome = match self
            .cluster
            .wait_started(node, DAMAGED_START_DEADLINE)
            .await?
        {
            Started::Serving(took) => {
                // Allowed if it serves only correct data; the checker reads every replica at
                // the end.
                format!("started on the damaged store (serving after {took:?})")
            }
            Started::Exited(status, output) => {
                let lower = output.to_lowercase();
                let message = output
                    .lines()
                    .find(|l| {
                        let l = l.to_lowercase();
                        DAMAGE_WORDS.iter().any(|w| l.contains(w))
                    })
                    .map(str::to_owned);
                if status.success() {
                    self.findings.violation(
                        "damage-refusal-unclear",
                        format!("{name} exited with success on a damaged store ({what})"),
                    );
                } else if !DAMAGE_WORDS.iter().any(|w| lower.contains(w)) {
                    self.findings.violation(
                        "damage-refusal-unclear",
                        format!(
                            "{name} refused to start ({status}) without naming the damage \
                             ({what}):\n{}",
                            tail(&output, 10)
                        ),
                    );
                }
                self.restore(&dir, &backup).await?;
                let took = self.cluster.start(node).await?;
                format!(
                    "refused to start ({status}): {}; restored, serving after {took:?}",
                    message.unwrap_or_else(|| tail(&output, 1))
                )
            }
            Started::TimedOut => {
                self.cluster.kill(node);
                self.findings.violation(
                    "damage-hang",
                    format!(
                        "{name} neither refused nor served within {DAMAGED_START_DEADLINE:?} \
                         ({what}):\n{}",
                        tail(&self.cluster.output_since_start(node), 10)
                    ),
                );
                self.restore(&dir, &backup).await?;
                let took = self.cluster.start(node).await?;
                format!("hung; restored, serving after {took:?}")
            }
        };
        say(&self.rec, &format!("{kind}: {name} {outcome}"));
        self.findings
            .damage
            .push(format!("{name}: {what}: {outcome}"));
        self.rec.fault_end(f, outcome);
        Ok(())
    }

    async fn restore(&self, dir: &Path, backup: &Path) -> anyhow::Result<()> {
        let (dir, backup) = (dir.to_path_buf(), backup.to_path_buf());
        tokio::task::spawn_blocking(move || {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("removing the damaged {}", dir.display()))?;
            std::fs::rename(&backup, &dir)
                .with_context(|| format!("restoring {} from {}", dir.display(), backup.display()))
        })
        .await
        .context("restore task")?
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// The RocksDB table files (`*.sst`) in `dir`.
fn table_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(err) => return Err(err).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "sst") {
            out.push(path);
        }
    }
    Ok(out)
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Damages `file` as `how` says; returns what was done.
fn damage_file(file: &Path, how: Damage, rng: &mut fastrand::Rng) -> anyhow::Result<String> {
    use std::io::{Seek as _, SeekFrom, Write as _};
    let len = std::fs::metadata(file)
        .with_context(|| format!("reading the size of {}", file.display()))?
        .len();
    let short = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    match how {
        Damage::Truncate => {
            let to = len / 2;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(file)
                .with_context(|| format!("opening {}", file.display()))?;
            f.set_len(to)?;
            f.sync_all()?;
            Ok(format!("truncated {short} from {len} to {to} bytes"))
        }
        Damage::Overwrite => {
            // A range in the middle half of the file, up to 4 KiB.
            let size = (len / 4).clamp(1, 4096);
            let offset = len / 4 + rng.u64(0..(len / 2).max(1));
            let size = size.min(len.saturating_sub(offset)).max(1);
            let bytes: Vec<u8> = (0..size).map(|_| rng.u8(..)).collect();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(file)
                .with_context(|| format!("opening {}", file.display()))?;
            f.seek(SeekFrom::Start(offset))?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            Ok(format!(
                "overwrote {size} bytes at offset {offset} of {short} ({len} bytes) with random bytes"
            ))
        }
    }
}
