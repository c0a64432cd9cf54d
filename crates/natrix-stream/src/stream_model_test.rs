//! Property test: random command sequences against a naive model (a `Vec` of every live message,
//! limits applied the obvious way), plus recovery from the emitted store ops.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Pub {
        subj: u8,
        len: u8,
    },
    Del {
        back: u8,
    },
    Purge {
        subj: Option<u8>,
        keep: u8,
    },
    Expire,
    Update {
        max_msgs: i64,
        max_bytes: i64,
        mmps: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..4, 0u8..40).prop_map(|(subj, len)| Op::Pub { subj, len }),
        1 => (0u8..10).prop_map(|back| Op::Del { back }),
        1 => (proptest::option::of(0u8..4), 0u8..4).prop_map(|(subj, keep)| Op::Purge { subj, keep }),
        1 => Just(Op::Expire),
        1 => (-1i64..8, prop_oneof![Just(-1i64), 100i64..600], -1i64..4)
            .prop_map(|(max_msgs, max_bytes, mmps)| Op::Update { max_msgs, max_bytes, mmps }),
    ]
}

#[derive(Debug, Clone)]
struct M {
    seq: u64,
    subj: String,
    size: u64,
    ts: i64,
}

struct Model {
    msgs: Vec<M>,
    last: u64,
    max_msgs: i64,
    max_bytes: i64,
    mmps: i64,
    discard_new: bool,
    max_age: i64,
}

impl Model {
    fn bytes(&self) -> u64 {
        self.msgs.iter().map(|m| m.size).sum()
    }
    fn count(&self, subj: &str) -> usize {
        self.msgs.iter().filter(|m| m.subj == subj).count()
    }
    fn trim(&mut self, subj: Option<&str>) {
        if self.mmps > 0 {
            let subjects: Vec<String> = match subj {
                Some(s) => vec![s.to_string()],
                None => self.msgs.iter().map(|m| m.subj.clone()).collect(),
            };
            for s in subjects {
                while self.count(&s) as i64 > self.mmps {
                    let i = self.msgs.iter().position(|m| m.subj == s).expect("counted");
                    self.msgs.remove(i);
                }
            }
        }
        if !self.discard_new {
            while self.max_msgs > 0 && self.msgs.len() as i64 > self.max_msgs {
                self.msgs.remove(0);
            }
            while self.max_bytes > 0 && self.bytes() as i64 > self.max_bytes {
                self.msgs.remove(0);
            }
        }
    }
    fn publish(&mut self, subj: &str, size: u64, ts: i64) -> Result<u64, u16> {
        if self.discard_new {
            let at_subject = self.mmps > 0 && self.count(subj) as i64 >= self.mmps;
            if self.max_msgs > 0 && self.msgs.len() as i64 >= self.max_msgs && !at_subject {
                return Err(10077);
            }
            let freed = if at_subject {
                self.msgs
                    .iter()
                    .find(|m| m.subj == subj)
                    .map_or(0, |m| m.size)
            } else {
                0
            };
            if self.max_bytes > 0 && (self.bytes() + size - freed) as i64 > self.max_bytes {
                return Err(10077);
            }
        }
        self.last += 1;
        self.msgs.push(M {
            seq: self.last,
            subj: subj.to_string(),
            size,
            ts,
        });
        self.trim(Some(subj));
        Ok(self.last)
    }
}

fn run(ops: Vec<Op>, discard_new: bool) -> Result<(), TestCaseError> {
    let max_age = 5_000_000_000i64;
    let mut cfg = StreamConfig::named("S", &["s.>"]);
    cfg.max_age = max_age;
    if discard_new {
        cfg.discard = DiscardPolicy::New;
    }
    let mut s = Stream::new(cfg.validate_for_create().expect("valid"));
    let mut m = Model {
        msgs: vec![],
        last: 0,
        max_msgs: -1,
        max_bytes: -1,
        mmps: -1,
        discard_new,
        max_age,
    };
    let mut stored: BTreeMap<u64, StoredMsg> = BTreeMap::new();
    let mut now = 0i64;
    for op in ops {
        now += 700_000_000;
        match op {
            Op::Pub { subj, len } => {
                let subject = format!("s.{subj}");
                let size = 30 + subject.len() as u64 + u64::from(len);
                let want = m.publish(&subject, size, now);
                let got = s.apply(Command::Publish {
                    subject: Bytes::from(subject.clone()),
                    headers: None,
                    payload: Bytes::from(vec![b'p'; usize::from(len)]),
                    timestamp_ns: now,
                });
                match (want, got) {
                    (Ok(seq), Ok(a)) => {
                        prop_assert!(matches!(&a.reply, Reply::PubAck(p) if p.seq == seq));
                        apply_ops(&mut stored, a.ops);
                    }
                    (Err(code), Err(e)) => prop_assert_eq!(code, e.err_code),
                    (w, g) => prop_assert!(false, "model {:?} vs stream {:?}", w, g),
                }
            }
            Op::Del { back } => {
                let seq = m.last.saturating_sub(u64::from(back));
                let want = m.msgs.iter().position(|x| x.seq == seq);
                let got = s.apply(Command::DeleteMsg {
                    seq,
                    no_erase: false,
                });
                prop_assert_eq!(want.is_some(), got.is_ok());
                if let (Some(i), Ok(a)) = (want, got) {
                    m.msgs.remove(i);
                    apply_ops(&mut stored, a.ops);
                }
            }
            Op::Purge { subj, keep } => {
                let filter = subj.map(|x| format!("s.{x}")).unwrap_or_default();
                let matching: Vec<u64> = m
                    .msgs
                    .iter()
                    .filter(|x| filter.is_empty() || x.subj == filter)
                    .map(|x| x.seq)
                    .collect();
                let n = matching.len().saturating_sub(usize::from(keep));
                let gone: Vec<u64> = matching[..n].to_vec();
                m.msgs.retain(|x| !gone.contains(&x.seq));
                let a = s
                    .apply(Command::Purge(PurgeRequest {
                        filter,
                        seq: 0,
                        keep: u64::from(keep),
                    }))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(
                    a.reply.clone(),
                    Reply::Purged {
                        purged: gone.len() as u64
                    }
                );
                apply_ops(&mut stored, a.ops);
            }
            Op::Expire => {
                m.msgs.retain(|x| x.ts > now - m.max_age);
                let a = s
                    .apply(Command::Expire { now_ns: now })
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                apply_ops(&mut stored, a.ops);
            }
            Op::Update {
                max_msgs,
                max_bytes,
                mmps,
            } => {
                let mut c = s.config().clone();
                c.max_msgs = max_msgs;
                c.max_bytes = max_bytes;
                c.max_msgs_per_subject = mmps;
                let a = s
                    .apply(Command::UpdateConfig(Box::new(c)))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                m.max_msgs = s.config().max_msgs;
                m.max_bytes = s.config().max_bytes;
                m.mmps = s.config().max_msgs_per_subject;
                m.trim(None);
                apply_ops(&mut stored, a.ops);
            }
        }
        // Same messages, same counters; limits hold under discard old.
        let live: Vec<u64> = s.index.iter_from(0).map(|x| x.0).collect();
        let want: Vec<u64> = m.msgs.iter().map(|x| x.seq).collect();
        prop_assert_eq!(&live, &want);
        prop_assert_eq!(s.bytes(), m.bytes());
        prop_assert_eq!(s.last_seq(), m.last);
        prop_assert_eq!(stored.keys().copied().collect::<Vec<_>>(), want);
        if !discard_new {
            prop_assert!(m.max_msgs <= 0 || s.messages() as i64 <= m.max_msgs);
            prop_assert!(m.max_bytes <= 0 || s.bytes() as i64 <= m.max_bytes);
        }
    }
    let metas = stored
        .values()
        .map(|x| RecoveredMsg::from_stored(x, StorageType::File));
    let back = Stream::recover(s.config().clone(), Some(s.position()), metas)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(back.state(true, Some(">"), 0), s.state(true, Some(">"), 0));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn stream_matches_naive_model_discard_old(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, false)?;
    }

    #[test]
    fn stream_matches_naive_model_discard_new(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, true)?;
    }
}
