//! A stored message and its portable on-disk encoding.
//!
//! Layout (all integers big-endian, no `usize`), version 1:
//! `u8 version | u64 seq | i64 timestamp_ns | u32 subject_len | subject | u32 headers_len
//! (u32::MAX = no headers) | headers | u32 payload_len | payload`.
//! The same bytes are read by x86_64, aarch64 and armv7 nodes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

const VERSION: u8 = 1;
const NO_HEADERS: u32 = u32::MAX;

/// A message as a stream stores it: everything needed to serve it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMsg {
    pub seq: u64,
    /// Unix time in nanoseconds, assigned when the publish was accepted (by the leader, so
    /// every replica stores the same value).
    pub timestamp_ns: i64,
    pub subject: Bytes,
    /// The whole NATS header block (`NATS/1.0\r\n...\r\n\r\n`), if any.
    pub headers: Option<Bytes>,
    pub payload: Bytes,
}

/// A stored record decoded in place (see [`StoredMsg::decode_ref`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredMsgRef<'a> {
    pub seq: u64,
    pub timestamp_ns: i64,
    pub subject: &'a [u8],
    pub headers: Option<&'a [u8]>,
    pub payload_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageDecodeError {
    #[error("stored message is truncated")]
    Truncated,
    #[error("stored message has unknown format version {0}")]
    UnknownVersion(u8),
    #[error("stored message has {0} trailing bytes")]
    TrailingBytes(usize),
}

impl StoredMsg {
    pub fn encoded_len(&self) -> usize {
        1 + 8
            + 8
            + 4
            + self.subject.len()
            + 4
            + self.headers.as_ref().map_or(0, |h| h.len())
            + 4
            + self.payload.len()
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        out.put_u8(VERSION);
        out.put_u64(self.seq);
        out.put_i64(self.timestamp_ns);
        out.put_u32(len_u32(self.subject.len()));
        out.put_slice(&self.subject);
        match &self.headers {
            Some(h) => {
                out.put_u32(len_u32(h.len()));
                out.put_slice(h);
            }
            None => out.put_u32(NO_HEADERS),
        }
        out.put_u32(len_u32(self.payload.len()));
        out.put_slice(&self.payload);
    }

    /// Decodes a record in place, borrowing its subject and headers and skipping the payload:
    /// what recovery needs, without copying a million payloads.
    pub fn decode_ref(bytes: &[u8]) -> Result<StoredMsgRef<'_>, MessageDecodeError> {
        let mut r = bytes;
        let mut take = |n: usize| -> Result<&[u8], MessageDecodeError> {
            if r.len() < n {
                return Err(MessageDecodeError::Truncated);
            }
            let (head, rest) = r.split_at(n);
            r = rest;
            Ok(head)
        };
        let be_u32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let be_u64 = |b: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_be_bytes(a)
        };
        let version = take(1)?[0];
        if version != VERSION {
            return Err(MessageDecodeError::UnknownVersion(version));
        }
        let seq = be_u64(take(8)?);
        let timestamp_ns = be_u64(take(8)?) as i64;
        let subject_len = be_u32(take(4)?) as usize;
        let subject = take(subject_len)?;
        let headers = match be_u32(take(4)?) {
            NO_HEADERS => None,
            n => Some(take(n as usize)?),
        };
        let payload_len = be_u32(take(4)?) as usize;
        take(payload_len)?;
        if !r.is_empty() {
            return Err(MessageDecodeError::TrailingBytes(r.len()));
        }
        Ok(StoredMsgRef {
            seq,
            timestamp_ns,
            subject,
            headers,
            payload_len,
        })
    }

    /// Decodes a record produced by [`StoredMsg::encode`]; slices share `bytes`.
    pub fn decode(mut bytes: Bytes) -> Result<StoredMsg, MessageDecodeError> {
        let version = take_u8(&mut bytes)?;
        if version != VERSION {
            return Err(MessageDecodeError::UnknownVersion(version));
        }
        let seq = take_u64(&mut bytes)?;
        let timestamp_ns = take_u64(&mut bytes)? as i64;
        let subject_len = take_u32(&mut bytes)? as usize;
        let subject = take_bytes(&mut bytes, subject_len)?;
        let headers = match take_u32(&mut bytes)? {
            NO_HEADERS => None,
            n => Some(take_bytes(&mut bytes, n as usize)?),
        };
        let payload_len = take_u32(&mut bytes)? as usize;
        let payload = take_bytes(&mut bytes, payload_len)?;
        if !bytes.is_empty() {
            return Err(MessageDecodeError::TrailingBytes(bytes.len()));
        }
        Ok(StoredMsg {
            seq,
            timestamp_ns,
            subject,
            headers,
            payload,
        })
    }
}

fn len_u32(len: usize) -> u32 {
    // Lengths are bounded by max_payload and max_control_line, far below u32::MAX.
    u32::try_from(len).expect("message field longer than 4 GiB cannot be accepted")
}

pub(crate) fn take_u8(b: &mut Bytes) -> Result<u8, MessageDecodeError> {
    if b.remaining() < 1 {
        return Err(MessageDecodeError::Truncated);
    }
    Ok(b.get_u8())
}

pub(crate) fn take_u32(b: &mut Bytes) -> Result<u32, MessageDecodeError> {
    if b.remaining() < 4 {
        return Err(MessageDecodeError::Truncated);
    }
    Ok(b.get_u32())
}

pub(crate) fn take_u64(b: &mut Bytes) -> Result<u64, MessageDecodeError> {
    if b.remaining() < 8 {
        return Err(MessageDecodeError::Truncated);
    }
    Ok(b.get_u64())
}

pub(crate) fn take_bytes(b: &mut Bytes, n: usize) -> Result<Bytes, MessageDecodeError> {
    if b.remaining() < n {
        return Err(MessageDecodeError::Truncated);
    }
    Ok(b.split_to(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(headers: Option<&'static [u8]>) -> StoredMsg {
        StoredMsg {
            seq: 42,
            timestamp_ns: 1_764_115_200_123_456_789,
            subject: Bytes::from_static(b"orders.eu.1"),
            headers: headers.map(Bytes::from_static),
            payload: Bytes::from_static(b"hello"),
        }
    }

    #[test]
    fn encoding_round_trips_with_and_without_headers() {
        for m in [
            msg(None),
            msg(Some(b"NATS/1.0\r\nA: b\r\n\r\n")),
            msg(Some(b"")),
        ] {
            let mut out = BytesMut::new();
            m.encode(&mut out);
            assert_eq!(out.len(), m.encoded_len());
            let r = StoredMsg::decode_ref(&out).expect("decodes in place");
            assert_eq!(
                (r.seq, r.timestamp_ns, r.subject, r.headers, r.payload_len),
                (
                    m.seq,
                    m.timestamp_ns,
                    &m.subject[..],
                    m.headers.as_deref(),
                    m.payload.len()
                )
            );
            assert_eq!(StoredMsg::decode(out.freeze()), Ok(m));
        }
    }

    #[test]
    fn encoding_is_big_endian_and_fixed() {
        let mut out = BytesMut::new();
        msg(None).encode(&mut out);
        assert_eq!(&out[..9], &[1, 0, 0, 0, 0, 0, 0, 0, 42]);
    }

    #[test]
    fn truncated_and_foreign_records_are_errors_not_panics() {
        let mut out = BytesMut::new();
        msg(Some(b"NATS/1.0\r\n\r\n")).encode(&mut out);
        let full = out.freeze();
        for cut in 0..full.len() {
            assert!(
                StoredMsg::decode(full.slice(..cut)).is_err(),
                "cut at {cut}"
            );
            assert!(StoredMsg::decode_ref(&full[..cut]).is_err(), "cut at {cut}");
        }
        let mut foreign = full.to_vec();
        foreign[0] = 9;
        assert_eq!(
            StoredMsg::decode(Bytes::from(foreign)),
            Err(MessageDecodeError::UnknownVersion(9))
        );
    }
}
