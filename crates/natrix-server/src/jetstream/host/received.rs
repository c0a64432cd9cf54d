//! A file stream's snapshot as a follower receives it from the leader: the message records go
//! to the node's store as the chunks arrive, a few MiB at a time, under a staging stream id (a
//! stream record marked `staging`, removed at start if the transfer never finished), and only
//! the rest of the snapshot (config, positions, consumers) stays in memory. The group then
//! installs a small snapshot that names the staging id, and [`StreamHost::install_snapshot`]
//! makes it the stream in one store batch. A follower so never holds a large snapshot whole.

use std::sync::Weak;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use natrix_proto::jetstream::StreamSnapshot;
use natrix_raft::{SnapshotData, SnapshotSink};
use natrix_store::Store;
use natrix_stream::StoredMsg;
use prost::Message;

use super::StreamHost;
use crate::jetstream::record::StreamRecord;

/// Received message records written to the store in one batch, at most about this many bytes.
const STAGED_BATCH: usize = 4 << 20;

/// A field of a snapshot longer than this is refused (a message is at most a few MiB; the
/// config and consumer records are small).
const MAX_FIELD: u64 = 256 << 20;

/// The `StreamSnapshot` field that holds the message records.
const MSGS_FIELD: u64 = 4;

/// Splits a `StreamSnapshot` encoding, arriving in pieces of any size, into its message records
/// (handed out one at a time, as slices of the received bytes) and everything else, which it
/// keeps as it came: the fields of a protobuf message may be concatenated, so what is kept is a
/// valid encoding of the snapshot without its messages.
#[derive(Default)]
pub(crate) struct SnapshotSplitter {
    pending: BytesMut,
    head: BytesMut,
}

impl SnapshotSplitter {
    /// Takes the next received bytes; `on_msg` gets each message record completed by them.
    pub fn push(
        &mut self,
        piece: &[u8],
        mut on_msg: impl FnMut(Bytes) -> Result<(), String>,
    ) -> Result<(), String> {
        self.pending.extend_from_slice(piece);
        while let Some((field, body_at, len)) = next_field(&self.pending)? {
            let field_bytes = self.pending.split_to(len).freeze();
            if field == MSGS_FIELD {
                on_msg(field_bytes.slice(body_at..))?;
            } else {
                self.head.extend_from_slice(&field_bytes);
            }
        }
        Ok(())
    }

    /// Every byte was pushed: the snapshot without its messages. An incomplete last field is
    /// an error.
    pub fn finish(self) -> Result<Bytes, String> {
        if !self.pending.is_empty() {
            return Err(format!(
                "the snapshot ends inside a field ({} bytes left over)",
                self.pending.len()
            ));
        }
        Ok(self.head.freeze())
    }
}

/// The field at the start of `buf` once all of it is there: its number, where its body starts
/// (after the length of a length-delimited field) and its whole length; `None` while more bytes
/// are needed.
fn next_field(buf: &[u8]) -> Result<Option<(u64, usize, usize)>, String> {
    let Some((key, key_len)) = varint(buf)? else {
        return Ok(None);
    };
    let field = key >> 3;
    let rest = &buf[key_len..];
    let (body_at, body_len) = match key & 7 {
        // varint
        0 => match varint(rest)? {
            Some((_, n)) => (key_len, n as u64),
            None => return Ok(None),
        },
        // 64-bit
        1 => (key_len, 8),
        // length-delimited
        2 => match varint(rest)? {
            Some((len, _)) if len > MAX_FIELD => {
                return Err(format!("snapshot field {field} of {len} bytes is too long"));
            }
            Some((len, n)) => (key_len + n, len),
            None => return Ok(None),
        },
        // 32-bit
        5 => (key_len, 4),
        other => return Err(format!("snapshot field {field} has wire type {other}")),
    };
    let body_len = usize::try_from(body_len).map_err(|_| "snapshot field too long".to_owned())?;
    let len = body_at + body_len;
    Ok((buf.len() >= len).then_some((field, body_at, len)))
}

/// A protobuf varint at the start of `buf` and its length; `None` if `buf` ends inside it.
fn varint(buf: &[u8]) -> Result<Option<(u64, usize)>, String> {
    let mut value = 0u64;
    for (i, byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 10 {
        return Err("a snapshot varint is longer than 10 bytes".to_owned());
    }
    Ok(None)
}

/// Receives a file stream's snapshot into the store (see the module documentation).
pub(crate) struct StagedSnapshot {
    host: Weak<StreamHost>,
    splitter: SnapshotSplitter,
    /// The staging stream id, once the first message arrived.
    staged: Option<u64>,
    batch: Vec<(u64, Bytes)>,
    batch_bytes: usize,
    last_seq: u64,
    finished: bool,
}

impl StagedSnapshot {
    pub fn new(host: Weak<StreamHost>) -> StagedSnapshot {
        StagedSnapshot {
            host,
            splitter: SnapshotSplitter::default(),
            staged: None,
            batch: Vec::new(),
            batch_bytes: 0,
            last_seq: 0,
            finished: false,
        }
    }

    fn host(&self) -> Result<std::sync::Arc<StreamHost>, String> {
        self.host
            .upgrade()
            .ok_or_else(|| "the stream stopped".to_owned())
    }

    /// Writes the batch of received messages under the staging id (allocated with the first).
    async fn write_batch(&mut self) -> Result<(), String> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let host = self.host()?;
        let js = host.js.upgrade().ok_or("JetStream stopped")?;
        let store = std::sync::Arc::clone(js.store());
        let id = match self.staged {
            Some(id) => id,
            None => {
                let record = StreamRecord {
                    config: host.config(),
                    created_ns: host.created_ns,
                    group_id: host.replica.as_ref().map(|r| r.group_id),
                    staging: true,
                };
                let id = store
                    .create_stream(record.encode())
                    .await
                    .map_err(|e| format!("staging the snapshot: {e}"))?;
                self.staged = Some(id);
                id
            }
        };
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        tokio::task::spawn_blocking(move || store.write_staged_msgs(id, &batch))
            .await
            .map_err(|e| format!("writing received messages: {e}"))?
            .map_err(|e| format!("writing received messages: {e}"))
    }
}

impl SnapshotSink for StagedSnapshot {
    fn write(&mut self, piece: Bytes) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let (batch, batch_bytes, last_seq) =
                (&mut self.batch, &mut self.batch_bytes, &mut self.last_seq);
            self.splitter.push(&piece, |record| {
                let seq = StoredMsg::decode_ref(&record)
                    .map_err(|e| format!("snapshot message: {e}"))?
                    .seq;
                if seq <= *last_seq {
                    return Err(format!(
                        "snapshot message {seq} is out of order (after {})",
                        *last_seq
                    ));
                }
                *last_seq = seq;
                *batch_bytes += record.len();
                batch.push((seq, record));
                Ok(())
            })?;
            if self.batch_bytes >= STAGED_BATCH {
                self.write_batch().await?;
            }
            Ok(())
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<SnapshotData, String>> {
        Box::pin(async move {
            self.write_batch().await?;
            let head = std::mem::take(&mut self.splitter).finish()?;
            let Some(staged) = self.staged else {
                // No messages: the snapshot is whole as it is.
                return Ok(SnapshotData::Ready(head));
            };
            let mut snapshot =
                StreamSnapshot::decode(head).map_err(|e| format!("snapshot: {e}"))?;
            snapshot.staged_stream_id = staged;
            self.finished = true;
            Ok(SnapshotData::Ready(Bytes::from(snapshot.encode_to_vec())))
        })
    }

    /// The group answered without adopting the staged stream (it had that state already, the
    /// leader's resend of a snapshot whose answer timed out, say): the staged copy goes. Not when
    /// the group failed: it may still be adopting it (a start removes it if it did not).
    fn done(mut self: Box<Self>, answered: bool) {
        let adopted = self
            .host
            .upgrade()
            .is_some_and(|h| Some(h.id()) == self.staged);
        if answered && !adopted {
            self.finished = false;
        }
    }
}

impl Drop for StagedSnapshot {
    /// A transfer that stopped before it finished, or whose snapshot the group did not install:
    /// its staged messages go.
    fn drop(&mut self) {
        let (Some(id), false) = (self.staged, self.finished) else {
            return;
        };
        if let Some(js) = self.host.upgrade().and_then(|h| h.js.upgrade()) {
            remove_staged(js.store(), id, "not installed");
        }
    }
}

/// Removes the messages and record of a received snapshot staged under store id `id` (`why`
/// for the log), in the background.
pub(crate) fn remove_staged(store: &Store, id: u64, why: &str) {
    tracing::info!("JetStream: removing a received snapshot, {why} (store id {id})");
    let deletion = store.delete_stream(id);
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            if let Err(err) = deletion.await {
                tracing::warn!("JetStream: removing a received snapshot (store id {id}): {err}");
            }
        });
    }
}

#[cfg(test)]
#[path = "received_test.rs"]
mod tests;
