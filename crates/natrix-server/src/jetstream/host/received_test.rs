use bytes::Bytes;
use natrix_proto::jetstream::{ConsumerSnapshot, StreamSnapshot};
use prost::Message;

use super::SnapshotSplitter;

fn snapshot() -> StreamSnapshot {
    StreamSnapshot {
        config_json: Bytes::from_static(b"{\"name\":\"S\"}"),
        created_ns: -5,
        position: Bytes::from_static(b"position"),
        // Records of several sizes, one long enough for a two-byte length.
        msgs: (0..20u8)
            .map(|i| Bytes::from(vec![i; usize::from(i) * 13]))
            .collect(),
        raft_index: 300,
        consumers: vec![ConsumerSnapshot {
            name: "C".into(),
            record: Bytes::from_static(b"record"),
        }],
        partial: false,
        staged_stream_id: 0,
    }
}

fn split(encoded: &[u8], piece: usize) -> Result<(Vec<Bytes>, Bytes), String> {
    let mut splitter = SnapshotSplitter::default();
    let mut msgs = Vec::new();
    for part in encoded.chunks(piece) {
        splitter.push(part, |m| {
            msgs.push(m);
            Ok(())
        })?;
    }
    Ok((msgs, splitter.finish()?))
}

#[test]
fn messages_come_out_in_order_and_the_rest_decodes_as_the_snapshot_without_them() {
    let whole = snapshot();
    let encoded = whole.encode_to_vec();
    for piece in [1, 2, 3, 7, 64, 1000, encoded.len()] {
        let (msgs, head) = split(&encoded, piece).expect("a whole snapshot splits");
        assert_eq!(msgs, whole.msgs, "pieces of {piece} bytes");
        let rest = StreamSnapshot::decode(head).expect("the rest decodes");
        assert_eq!(
            rest,
            StreamSnapshot {
                msgs: Vec::new(),
                ..whole.clone()
            }
        );
    }
}

#[test]
fn a_snapshot_that_stops_inside_a_field_is_refused() {
    let encoded = snapshot().encode_to_vec();
    for cut in [1, encoded.len() / 2, encoded.len() - 1] {
        let err = split(&encoded[..cut], 5).expect_err("a truncated snapshot");
        assert!(err.contains("ends inside a field"), "{err}");
    }
}

#[test]
fn unknown_wire_types_and_huge_lengths_are_refused() {
    // Field 1 with wire type 3 (a group start).
    assert!(split(&[0x0b, 0x00], 1).is_err());
    // Field 4, length 2^40.
    let mut huge = vec![0x22];
    let mut len = 1u64 << 40;
    while len >= 0x80 {
        huge.push((len as u8) | 0x80);
        len >>= 7;
    }
    huge.push(len as u8);
    let err = split(&huge, 3).expect_err("a huge field");
    assert!(err.contains("too long"), "{err}");
    // An 11-byte varint.
    assert!(split(&[0xff; 11], 4).is_err());
}

#[test]
fn a_message_handler_error_stops_the_split() {
    let encoded = snapshot().encode_to_vec();
    let mut splitter = SnapshotSplitter::default();
    let err = splitter
        .push(&encoded, |_| Err("full".to_owned()))
        .expect_err("the handler's error");
    assert_eq!(err, "full");
}
