//! The stream state machine: config + state + metadata index + duplicate window. `apply` takes a
//! [`Command`] carrying every input (including the time, chosen by the caller) and returns the
//! reply and the [`StoreOp`]s to persist as one atomic batch. Nothing here reads a clock or does
//! I/O, so every replica that applies the same commands reaches the same state.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};
use natrix_subject::SubjectTransform;

use crate::api_error::ApiError;
use crate::config::{DiscardPolicy, StorageType, StreamConfig};
use crate::headers::{PublishHeaders, Rollup};
use crate::index::{MsgIndex, MsgMeta};
use crate::info::{PubAck, StreamState, ZERO_TIME, rfc3339_nanos};
use crate::message::{MessageDecodeError, StoredMsgRef, take_bytes, take_u8, take_u32, take_u64};
use crate::republish::{Republished, Republisher};
use crate::subjects::{is_match_all, subject_matches};
use crate::{StoreOp, StoredMsg};

/// One input to a stream. Commands are what a Raft log will carry: each holds everything its
/// outcome depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A message published to one of the stream's subjects. `timestamp_ns` is the time the
    /// leader accepted it; it becomes the message's timestamp and the "now" of the dedup window.
    Publish {
        subject: Bytes,
        headers: Option<Bytes>,
        payload: Bytes,
        timestamp_ns: i64,
    },
    /// A message copied by a mirror from its origin, stored under the origin's sequence and
    /// time. Sequences at or below the last are skipped (answered as duplicates); a jump leaves
    /// the sequences between as deleted, as the origin has them. No publish checks apply.
    Mirror {
        seq: u64,
        subject: Bytes,
        headers: Option<Bytes>,
        payload: Bytes,
        timestamp_ns: i64,
    },
    /// `$JS.API.STREAM.MSG.DELETE` (`no_erase` is accepted; natrix never overwrites payloads).
    DeleteMsg { seq: u64, no_erase: bool },
    /// `$JS.API.STREAM.PURGE`.
    Purge(PurgeRequest),
    /// Remove messages older than `max_age` as of `now_ns`.
    Expire { now_ns: i64 },
    /// `$JS.API.STREAM.UPDATE` with the requested config (validated again here).
    UpdateConfig(Box<StreamConfig>),
    /// Seal the stream (same as an update with `sealed: true`).
    Seal,
    /// Interest / work-queue retention: the consumer layer found these messages acknowledged by
    /// every consumer that needed them. Missing sequences are skipped; deny_delete does not apply
    /// (it guards the API, not retention).
    RemoveAcked { seqs: Vec<u64> },
}

/// The body of a purge request (`{"filter":..,"seq":..,"keep":..}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PurgeRequest {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filter: String,
    /// Purge messages below this sequence (0: no bound).
    #[serde(skip_serializing_if = "is_zero")]
    pub seq: u64,
    /// Keep this many newest messages (0: keep none).
    #[serde(skip_serializing_if = "is_zero")]
    pub keep: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// What a command produced for its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    PubAck(PubAck),
    Deleted,
    Purged { purged: u64 },
    Expired { removed: u64 },
    ConfigUpdated(Box<StreamConfig>),
    Sealed,
    RemovedAcked { removed: u64 },
}

/// The outcome of an applied command: the reply, and the storage effects to write atomically
/// (empty for a duplicate publish or a no-op).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub reply: Reply,
    pub ops: Vec<StoreOp>,
    /// The stored message's copy for the stream's `republish` subject, to publish once the
    /// message is durable (see [`Republished`]).
    pub republish: Option<Republished>,
}

/// Where a stream's sequence space stands, beyond what its stored messages show (an emptied
/// stream still remembers its last sequence). Storage keeps it with the applied position and
/// hands it back to [`Stream::recover`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamPosition {
    pub last_seq: u64,
    pub last_timestamp_ns: Option<i64>,
    /// `Nats-Msg-Id` of the last stored message (for `Nats-Expected-Last-Msg-Id`).
    pub last_msg_id: Option<String>,
}

/// Version byte of [`StreamPosition::encode`].
const POSITION_VERSION: u8 = 1;

impl StreamPosition {
    /// Portable layout: version `u8`, last_seq `u64`, timestamp flag `u8` + `i64`, msg-id flag
    /// `u8` + length `u32` + UTF-8 bytes; integers big-endian.
    pub fn encode(&self) -> Bytes {
        let id = self.last_msg_id.as_deref().unwrap_or("");
        let mut out = BytesMut::with_capacity(1 + 8 + 9 + 5 + id.len());
        out.put_u8(POSITION_VERSION);
        out.put_u64(self.last_seq);
        out.put_u8(u8::from(self.last_timestamp_ns.is_some()));
        out.put_i64(self.last_timestamp_ns.unwrap_or(0));
        out.put_u8(u8::from(self.last_msg_id.is_some()));
        // Msg ids come from a header line, bounded by max_payload: far below u32::MAX.
        out.put_u32(u32::try_from(id.len()).unwrap_or(u32::MAX));
        out.put_slice(&id.as_bytes()[..id.len().min(u32::MAX as usize)]);
        out.freeze()
    }

    pub fn decode(mut bytes: Bytes) -> Result<StreamPosition, MessageDecodeError> {
        let version = take_u8(&mut bytes)?;
        if version != POSITION_VERSION {
            return Err(MessageDecodeError::UnknownVersion(version));
        }
        let last_seq = take_u64(&mut bytes)?;
        let has_ts = take_u8(&mut bytes)? != 0;
        let ts = take_u64(&mut bytes)? as i64;
        let has_id = take_u8(&mut bytes)? != 0;
        let id_len = take_u32(&mut bytes)? as usize;
        let id = take_bytes(&mut bytes, id_len)?;
        if !bytes.is_empty() {
            return Err(MessageDecodeError::TrailingBytes(bytes.len()));
        }
        Ok(StreamPosition {
            last_seq,
            last_timestamp_ns: has_ts.then_some(ts),
            last_msg_id: has_id.then(|| String::from_utf8_lossy(&id).into_owned()),
        })
    }
}

/// A stored message as recovery needs it: no payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredMsg {
    pub seq: u64,
    pub timestamp_ns: i64,
    pub subject: Bytes,
    pub stored_size: u64,
    pub msg_id: Option<String>,
}

impl RecoveredMsg {
    pub fn from_ref(msg: &StoredMsgRef<'_>, storage: StorageType) -> RecoveredMsg {
        RecoveredMsg {
            seq: msg.seq,
            timestamp_ns: msg.timestamp_ns,
            subject: Bytes::copy_from_slice(msg.subject),
            stored_size: size_for(
                storage,
                msg.subject.len(),
                msg.headers.map_or(0, <[u8]>::len),
                msg.payload_len,
            ),
            msg_id: PublishHeaders::parse(msg.headers).msg_id,
        }
    }

    pub fn from_stored(msg: &StoredMsg, storage: StorageType) -> RecoveredMsg {
        RecoveredMsg {
            seq: msg.seq,
            timestamp_ns: msg.timestamp_ns,
            subject: msg.subject.clone(),
            stored_size: stored_size_for(storage, msg),
            msg_id: PublishHeaders::parse(msg.headers.as_deref()).msg_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoverError {
    #[error("stored message {seq} is out of order (after {previous})")]
    OutOfOrder { seq: u64, previous: u64 },
    #[error("stored message {seq} is beyond the recorded last sequence {last_seq}")]
    BeyondLastSeq { seq: u64, last_seq: u64 },
}

/// Bytes a message counts against `max_bytes` and reports in `state.bytes`, as nats-server
/// accounts them: file storage `subject + headers + payload + 30` (+4 with headers), memory
/// storage `subject + headers + payload + 16`.
pub fn stored_size_for(storage: StorageType, msg: &StoredMsg) -> u64 {
    let h = msg.headers.as_ref().map_or(0, |h| h.len());
    size_for(storage, msg.subject.len(), h, msg.payload.len())
}

fn size_for(storage: StorageType, subject: usize, headers: usize, payload: usize) -> u64 {
    let raw = (subject + headers + payload) as u64;
    match storage {
        StorageType::Memory => raw + 16,
        StorageType::File if headers > 0 => raw + 34,
        StorageType::File => raw + 30,
    }
}

/// Msg-id → (seq, timestamp) for publishes inside `duplicate_window`, expired by command time.
#[derive(Debug, Clone, Default)]
struct DedupWindow {
    ids: HashMap<String, (u64, i64)>,
    /// Insertion order, for expiry.
    order: VecDeque<(i64, String)>,
}

impl DedupWindow {
    fn expire(&mut self, now_ns: i64, window_ns: i64) {
        while let Some((ts, _)) = self.order.front() {
            if ts.saturating_add(window_ns) > now_ns {
                break;
            }
            if let Some((ts, id)) = self.order.pop_front()
                && self.ids.get(&id).is_some_and(|e| e.1 == ts)
            {
                self.ids.remove(&id);
            }
        }
    }

    fn get(&self, id: &str, now_ns: i64, window_ns: i64) -> Option<u64> {
        let (seq, ts) = *self.ids.get(id)?;
        (ts.saturating_add(window_ns) > now_ns).then_some(seq)
    }

    fn insert(&mut self, id: String, seq: u64, ts: i64) {
        self.ids.insert(id.clone(), (seq, ts));
        self.order.push_back((ts, id));
    }
}

/// One stream's state machine.
#[derive(Debug, Clone)]
pub struct Stream {
    config: StreamConfig,
    index: MsgIndex,
    last_seq: u64,
    last_ts: Option<i64>,
    last_msg_id: Option<String>,
    dedup: DedupWindow,
    /// `config.republish`, compiled.
    republisher: Option<Republisher>,
    /// `config.subject_transform`, compiled.
    transform: Option<SubjectTransform>,
}

impl Stream {
    /// A new, empty stream. `config` must already be validated
    /// ([`StreamConfig::validate_for_create`]).
    pub fn new(config: StreamConfig) -> Stream {
        let last_seq = config.first_seq.saturating_sub(1);
        Stream {
            republisher: republisher(&config),
            transform: transform(&config),
            config,
            index: MsgIndex::default(),
            last_seq,
            last_ts: None,
            last_msg_id: None,
            dedup: DedupWindow::default(),
        }
    }

    /// Rebuilds a stream from a storage scan: `msgs` in ascending sequence order, `position` as
    /// last persisted (None for a stream that never stored anything). The dedup window is rebuilt
    /// from the stored `Nats-Msg-Id`s and expires with the next command's time.
    pub fn recover(
        config: StreamConfig,
        position: Option<StreamPosition>,
        msgs: impl IntoIterator<Item = RecoveredMsg>,
    ) -> Result<Stream, RecoverError> {
        let mut stream = Stream::new(config);
        let mut previous = 0;
        let mut last_id = None;
        for m in msgs {
            if m.seq <= previous {
                return Err(RecoverError::OutOfOrder {
                    seq: m.seq,
                    previous,
                });
            }
            previous = m.seq;
            stream
                .index
                .push(m.seq, &m.subject, m.stored_size, m.timestamp_ns);
            stream.last_seq = m.seq;
            stream.last_ts = Some(m.timestamp_ns);
            if let Some(id) = &m.msg_id {
                stream.dedup.insert(id.clone(), m.seq, m.timestamp_ns);
            }
            last_id = m.msg_id;
        }
        stream.last_msg_id = last_id;
        if let Some(p) = position {
            if p.last_seq < stream.last_seq {
                return Err(RecoverError::BeyondLastSeq {
                    seq: stream.last_seq,
                    last_seq: p.last_seq,
                });
            }
            if p.last_seq > stream.last_seq || stream.last_ts.is_none() {
                stream.last_ts = p.last_timestamp_ns;
            }
            stream.last_seq = p.last_seq;
            stream.last_msg_id = p.last_msg_id;
            stream.index.pad_to(p.last_seq);
        }
        Ok(stream)
    }

    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    pub fn position(&self) -> StreamPosition {
        StreamPosition {
            last_seq: self.last_seq,
            last_timestamp_ns: self.last_ts,
            last_msg_id: self.last_msg_id.clone(),
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// First live sequence, or `last_seq + 1` when the stream is empty (nats-server's report).
    pub fn first_seq(&self) -> u64 {
        self.index.first().unwrap_or(self.last_seq + 1)
    }

    pub fn messages(&self) -> u64 {
        self.index.len()
    }

    pub fn bytes(&self) -> u64 {
        self.index.bytes()
    }

    /// The `state` of a stream info. `deleted_details` lists interior deletes; `subjects_filter`
    /// adds per-subject counts; `consumer_count` is the consumer layer's.
    pub fn state(
        &self,
        deleted_details: bool,
        subjects_filter: Option<&str>,
        consumer_count: u64,
    ) -> StreamState {
        let ts = |t: Option<i64>| t.map_or_else(|| ZERO_TIME.to_string(), rfc3339_nanos);
        StreamState {
            messages: self.index.len(),
            bytes: self.index.bytes(),
            first_seq: if self.last_seq == 0 && self.index.len() == 0 && self.config.first_seq == 0
            {
                0
            } else {
                self.first_seq()
            },
            first_ts: ts(self.index.first_timestamp()),
            last_seq: self.last_seq,
            last_ts: ts(self.last_ts),
            num_subjects: self.index.num_subjects(),
            // An empty map is omitted, as Go's `omitempty` does.
            subjects: subjects_filter
                .filter(|f| !f.is_empty())
                .map(|f| self.subjects_matching(f))
                .filter(|m| !m.is_empty()),
            num_deleted: self.index.num_deleted(),
            deleted: deleted_details
                .then(|| self.index.deleted())
                .filter(|d| !d.is_empty()),
            consumer_count,
        }
    }

    pub fn msg_meta(&self, seq: u64) -> Option<MsgMeta> {
        self.index.get(seq)
    }

    pub fn last_seq_for_subject(&self, subject: &[u8]) -> Option<u64> {
        self.index.subject_seqs(subject)?.back().copied()
    }

    /// The last live sequence whose subject matches `filter` (a subject or a wildcard filter).
    pub fn last_seq_matching(&self, filter: &str) -> Option<u64> {
        let f = filter.as_bytes();
        if !f.contains(&b'*') && !f.contains(&b'>') {
            return self.last_seq_for_subject(f);
        }
        self.index
            .subjects()
            .filter(|(name, _)| is_match_all(f) || subject_matches(f, name))
            .filter_map(|(name, _)| self.last_seq_for_subject(name))
            .max()
    }

    /// Live subjects matching `filter` with their message counts.
    pub fn subjects_matching(&self, filter: &str) -> BTreeMap<String, u64> {
        self.index
            .subjects()
            .filter(|(name, _)| {
                is_match_all(filter.as_bytes()) || subject_matches(filter.as_bytes(), name)
            })
            .map(|(name, n)| (String::from_utf8_lossy(name).into_owned(), n))
            .collect()
    }

    /// First live sequence stored at or after `ts` (deliver policy by_start_time).
    pub fn first_seq_at_or_after_time(&self, ts: i64) -> Option<u64> {
        self.index.first_at_or_after_time(ts)
    }

    /// First live sequence `>= from` whose subject matches `filter` (empty: any).
    pub fn next_seq_matching(&self, from: u64, filter: &str) -> Option<u64> {
        let f = filter.as_bytes();
        self.index
            .iter_from(from)
            .find(|(_, subject, _, _)| is_match_all(f) || subject_matches(f, subject))
            .map(|m| m.0)
    }

    /// The sequences a purge request would remove.
    pub fn seqs_for_purge(&self, req: &PurgeRequest) -> Result<Vec<u64>, ApiError> {
        if req.seq > 0 && req.keep > 0 {
            return Err(ApiError::bad_request());
        }
        let f = req.filter.as_bytes();
        let mut seqs: Vec<u64> = self
            .index
            .iter_from(0)
            .filter(|(seq, subject, _, _)| {
                (is_match_all(f) || subject_matches(f, subject)) && (req.seq == 0 || *seq < req.seq)
            })
            .map(|m| m.0)
            .collect();
        let keep = usize::try_from(req.keep).unwrap_or(usize::MAX);
        if req.keep > 0 {
            seqs.truncate(seqs.len().saturating_sub(keep));
        }
        Ok(seqs)
    }

    /// Applies one command. On error nothing changed and nothing is to be stored.
    pub fn apply(&mut self, cmd: Command) -> Result<Applied, ApiError> {
        match cmd {
            Command::Publish {
                subject,
                headers,
                payload,
                timestamp_ns,
            } => self.publish(subject, headers, payload, timestamp_ns),
            Command::Mirror {
                seq,
                subject,
                headers,
                payload,
                timestamp_ns,
            } => Ok(self.mirror(seq, subject, headers, payload, timestamp_ns)),
            Command::DeleteMsg { seq, no_erase: _ } => self.delete_msg(seq),
            Command::Purge(req) => self.purge(&req),
            Command::Expire { now_ns } => Ok(self.expire(now_ns)),
            Command::UpdateConfig(config) => self.update_config(&config),
            Command::Seal => {
                self.config.seal();
                Ok(Applied {
                    reply: Reply::Sealed,
                    ops: Vec::new(),
                    republish: None,
                })
            }
            Command::RemoveAcked { seqs } => {
                let mut removed = Removals::default();
                for seq in seqs {
                    self.remove(seq, &mut removed);
                }
                let n = removed.seqs.len() as u64;
                Ok(Applied {
                    reply: Reply::RemovedAcked { removed: n },
                    ops: self.removal_ops(Vec::new(), removed),
                    republish: None,
                })
            }
        }
    }

    fn publish(
        &mut self,
        subject: Bytes,
        headers: Option<Bytes>,
        payload: Bytes,
        timestamp_ns: i64,
    ) -> Result<Applied, ApiError> {
        // Every rule below sees the subject the message is stored under.
        let subject = match self.transform.as_ref().and_then(|t| t.apply(&subject)) {
            Some(transformed) => Bytes::from(transformed),
            None => subject,
        };
        let cfg = &self.config;
        if cfg.sealed {
            return Err(ApiError::stream_sealed());
        }
        let header_len = headers.as_ref().map_or(0, |h| h.len());
        if let Some(max) = StreamConfig::limit(cfg.max_msg_size)
            && (header_len + payload.len()) as u64 > max
        {
            return Err(ApiError::message_exceeds_maximum());
        }
        let hdr = PublishHeaders::parse(headers.as_deref());
        if hdr.expected_stream.as_ref().is_some_and(|s| *s != cfg.name) {
            return Err(ApiError::expected_stream_mismatch());
        }
        if let Some(expected) = hdr.expected_last_subject_seq {
            let current = self.last_seq_for_subject(&subject).unwrap_or(0);
            if expected != current {
                return Err(ApiError::wrong_last_sequence(current));
            }
        }
        if let Some(expected) = hdr.expected_last_seq
            && expected != self.last_seq
        {
            return Err(ApiError::wrong_last_sequence(self.last_seq));
        }
        if let Some(expected) = &hdr.expected_last_msg_id {
            let last = self.last_msg_id.as_deref().unwrap_or("");
            if expected != last {
                return Err(ApiError::wrong_last_msg_id(last));
            }
        }
        let window = cfg.duplicate_window;
        if let Some(id) = &hdr.msg_id
            && let Some(seq) = self.dedup.get(id, timestamp_ns, window)
        {
            return Ok(Applied {
                reply: Reply::PubAck(PubAck {
                    stream: cfg.name.clone(),
                    seq,
                    duplicate: true,
                    domain: None,
                }),
                ops: Vec::new(),
                republish: None,
            });
        }
        let rollup = if hdr.rollup.is_some() {
            if !cfg.allow_rollup_hdrs || cfg.deny_purge {
                return Err(ApiError::rollup_not_permitted());
            }
            hdr.rollup_kind().map_err(ApiError::rollup_value_invalid)?
        } else {
            None
        };
        let size = size_for(cfg.storage, subject.len(), header_len, payload.len());
        self.check_discard_new(&subject, size)?;

        // Accepted: from here on the publish takes a sequence.
        let last_subject_seq = match self.republisher {
            Some(_) => self.last_seq_for_subject(&subject).unwrap_or(0),
            None => 0,
        };
        self.dedup.expire(timestamp_ns, window);
        let seq = self.last_seq + 1;
        self.index.push(seq, &subject, size, timestamp_ns);
        self.last_seq = seq;
        self.last_ts = Some(timestamp_ns);
        self.last_msg_id = hdr.msg_id.clone();
        if let Some(id) = hdr.msg_id {
            self.dedup.insert(id, seq, timestamp_ns);
        }
        let mut removed = Removals::default();
        match rollup {
            Some(Rollup::Subject) => {
                let older: Vec<u64> = self
                    .index
                    .subject_seqs(&subject)
                    .map(|s| s.iter().copied().filter(|&s| s < seq).collect())
                    .unwrap_or_default();
                for s in older {
                    self.remove(s, &mut removed);
                }
            }
            Some(Rollup::All) => {
                let older: Vec<u64> = self
                    .index
                    .iter_from(0)
                    .map(|m| m.0)
                    .filter(|&s| s < seq)
                    .collect();
                for s in older {
                    self.remove(s, &mut removed);
                }
            }
            None => {}
        }
        self.enforce_subject_limit(&subject, &mut removed);
        self.enforce_limits(&mut removed);
        let msg = StoredMsg {
            seq,
            timestamp_ns,
            subject,
            headers,
            payload,
        };
        let republish = self
            .republisher
            .as_ref()
            .and_then(|r| r.message(&self.config.name, &msg, last_subject_seq));
        Ok(Applied {
            reply: Reply::PubAck(PubAck {
                stream: self.config.name.clone(),
                seq,
                duplicate: false,
                domain: None,
            }),
            ops: self.removal_ops(vec![StoreOp::Append(msg)], removed),
            republish,
        })
    }

    fn mirror(
        &mut self,
        seq: u64,
        subject: Bytes,
        headers: Option<Bytes>,
        payload: Bytes,
        timestamp_ns: i64,
    ) -> Applied {
        let name = self.config.name.clone();
        let ack = |duplicate| {
            Reply::PubAck(PubAck {
                stream: name.clone(),
                seq,
                duplicate,
                domain: None,
            })
        };
        if seq <= self.last_seq {
            return Applied {
                reply: ack(true),
                ops: Vec::new(),
                republish: None,
            };
        }
        let mut removed = Removals::default();
        let header_len = headers.as_ref().map_or(0, Bytes::len);
        let size = size_for(
            self.config.storage,
            subject.len(),
            header_len,
            payload.len(),
        );
        self.index.push(seq, &subject, size, timestamp_ns);
        self.last_seq = seq;
        self.last_ts = Some(timestamp_ns);
        self.enforce_subject_limit(&subject, &mut removed);
        self.enforce_limits(&mut removed);
        let reply = ack(false);
        let append = StoreOp::Append(StoredMsg {
            seq,
            timestamp_ns,
            subject,
            headers,
            payload,
        });
        Applied {
            reply,
            ops: self.removal_ops(vec![append], removed),
            republish: None,
        }
    }

    /// nats-server's discard-new checks (`storeRawMsg`): a subject at its per-subject limit will
    /// replace its oldest message, so max_msgs does not reject it and max_bytes counts the
    /// replaced message as freed.
    fn check_discard_new(&self, subject: &[u8], size: u64) -> Result<(), ApiError> {
        let cfg = &self.config;
        if cfg.discard != DiscardPolicy::New {
            return Ok(());
        }
        let subject_seqs = self.index.subject_seqs(subject);
        let at_subject_limit = match (StreamConfig::limit(cfg.max_msgs_per_subject), subject_seqs) {
            (Some(max), Some(seqs)) => seqs.len() as u64 >= max,
            _ => false,
        };
        if cfg.discard_new_per_subject && at_subject_limit {
            return Err(ApiError::max_msgs_per_subject_exceeded());
        }
        if let Some(max) = StreamConfig::limit(cfg.max_msgs)
            && self.index.len() >= max
            && !at_subject_limit
        {
            return Err(ApiError::max_msgs_exceeded());
        }
        if let Some(max) = StreamConfig::limit(cfg.max_bytes) {
            let mut after = self.index.bytes() + size;
            if at_subject_limit {
                let oldest = subject_seqs
                    .and_then(|s| s.front())
                    .and_then(|&s| self.index.get(s));
                after -= oldest.map_or(0, |m| m.size).min(after);
            }
            if after > max {
                return Err(ApiError::max_bytes_exceeded());
            }
        }
        Ok(())
    }

    fn enforce_subject_limit(&mut self, subject: &[u8], removed: &mut Removals) {
        let Some(max) = StreamConfig::limit(self.config.max_msgs_per_subject) else {
            return;
        };
        while let Some(seqs) = self.index.subject_seqs(subject) {
            if seqs.len() as u64 <= max {
                break;
            }
            let Some(&oldest) = seqs.front() else { break };
            self.remove(oldest, removed);
        }
    }

    /// max_msgs and max_bytes drop the oldest messages, only under discard old (under discard
    /// new the publish was rejected instead; a shrunk limit is not enforced, as in nats-server).
    fn enforce_limits(&mut self, removed: &mut Removals) {
        if self.config.discard != DiscardPolicy::Old {
            return;
        }
        if let Some(max) = StreamConfig::limit(self.config.max_msgs) {
            while self.index.len() > max {
                let Some(first) = self.index.first() else {
                    break;
                };
                self.remove(first, removed);
            }
        }
        if let Some(max) = StreamConfig::limit(self.config.max_bytes) {
            while self.index.bytes() > max {
                let Some(first) = self.index.first() else {
                    break;
                };
                self.remove(first, removed);
            }
        }
    }

    fn remove(&mut self, seq: u64, removed: &mut Removals) {
        if self.index.remove(seq) {
            removed.seqs.push(seq);
        }
    }

    /// Turns removed sequences into store ops: one `RemoveBelow` for everything now below the
    /// first live message, `Remove` for interior ones.
    fn removal_ops(&self, mut ops: Vec<StoreOp>, removed: Removals) -> Vec<StoreOp> {
        let floor = self.first_seq();
        if removed.seqs.iter().any(|&s| s < floor) {
            ops.push(StoreOp::RemoveBelow { seq: floor });
        }
        let mut interior: Vec<u64> = removed.seqs.into_iter().filter(|&s| s >= floor).collect();
        interior.sort_unstable();
        ops.extend(interior.into_iter().map(|seq| StoreOp::Remove { seq }));
        ops
    }

    fn delete_msg(&mut self, seq: u64) -> Result<Applied, ApiError> {
        if self.config.sealed {
            return Err(ApiError::stream_sealed());
        }
        if self.config.deny_delete {
            return Err(ApiError::delete_not_permitted());
        }
        if seq == 0 || (seq < self.first_seq() && seq <= self.last_seq) {
            return Err(ApiError::msg_delete_failed("no message found"));
        }
        if seq > self.last_seq {
            return Err(ApiError::msg_delete_failed("stream store EOF"));
        }
        if !self.index.contains(seq) {
            return Err(ApiError::sequence_not_found(seq));
        }
        let mut removed = Removals::default();
        self.remove(seq, &mut removed);
        Ok(Applied {
            reply: Reply::Deleted,
            ops: self.removal_ops(Vec::new(), removed),
            republish: None,
        })
    }

    fn purge(&mut self, req: &PurgeRequest) -> Result<Applied, ApiError> {
        if self.config.sealed {
            return Err(ApiError::stream_sealed());
        }
        if self.config.deny_purge {
            return Err(ApiError::purge_not_permitted());
        }
        let seqs = self.seqs_for_purge(req)?;
        let purged = seqs.len() as u64;
        let mut removed = Removals::default();
        for seq in seqs {
            self.remove(seq, &mut removed);
        }
        let mut ops = Vec::new();
        // An unfiltered purge up to a sequence past the end moves the sequence space there
        // (nats-server's Compact): the next message gets `seq`.
        if is_match_all(req.filter.as_bytes()) && req.seq > self.last_seq + 1 {
            self.last_seq = req.seq - 1;
            ops.push(StoreOp::RemoveBelow { seq: req.seq });
            removed.seqs.clear();
        }
        let ops = self.removal_ops(ops, removed);
        Ok(Applied {
            reply: Reply::Purged { purged },
            ops,
            republish: None,
        })
    }

    fn expire(&mut self, now_ns: i64) -> Applied {
        let mut removed = Removals::default();
        let max_age = self.config.max_age;
        if max_age > 0 {
            let cutoff = now_ns.saturating_sub(max_age);
            while let Some(first) = self.index.first() {
                match self.index.get(first) {
                    Some(m) if m.timestamp_ns <= cutoff => self.remove(first, &mut removed),
                    _ => break,
                }
            }
        }
        let n = removed.seqs.len() as u64;
        Applied {
            reply: Reply::Expired { removed: n },
            ops: self.removal_ops(Vec::new(), removed),
            republish: None,
        }
    }

    fn update_config(&mut self, requested: &StreamConfig) -> Result<Applied, ApiError> {
        let new = StreamConfig::check_update(&self.config, requested)?;
        self.republisher = republisher(&new);
        self.transform = transform(&new);
        self.config = new;
        let mut removed = Removals::default();
        if StreamConfig::limit(self.config.max_msgs_per_subject).is_some() {
            let subjects: Vec<Bytes> = self.index.subjects().map(|(s, _)| s.clone()).collect();
            for s in subjects {
                self.enforce_subject_limit(&s, &mut removed);
            }
        }
        self.enforce_limits(&mut removed);
        Ok(Applied {
            reply: Reply::ConfigUpdated(Box::new(self.config.clone())),
            ops: self.removal_ops(Vec::new(), removed),
            republish: None,
        })
    }
}

/// The compiled `republish` of a validated config (a config is validated before a stream runs
/// with it, so a transform that does not compile cannot occur; it would republish nothing).
fn republisher(config: &StreamConfig) -> Option<Republisher> {
    config.republish.as_ref()?.compile().ok().flatten()
}

/// The compiled `subject_transform` of a validated config (as [`republisher`]).
fn transform(config: &StreamConfig) -> Option<SubjectTransform> {
    config.subject_transform.as_ref()?.compile().ok().flatten()
}

#[derive(Debug, Default)]
struct Removals {
    seqs: Vec<u64>,
}

#[cfg(test)]
#[path = "stream_test.rs"]
mod tests;
