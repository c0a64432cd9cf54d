//! Round trips through a real RocksDB store in a temporary directory.

mod common;

use std::ops::ControlFlow;

use bytes::Bytes;
use common::{append, msg};
use natrix_store::{
    ConsumerUpdate, RaftApplied, Store, StoreOp, StoreOptions, StoredMsg, StreamBatch,
};

type Result<T = ()> = anyhow::Result<T>;

fn seqs(store: &Store, stream_id: u64, from: u64) -> Result<Vec<u64>> {
    store
        .scan_msgs(stream_id, from)?
        .map(|m| Ok(m?.seq))
        .collect()
}

#[tokio::test]
async fn committed_messages_read_back_byte_for_byte() -> Result {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), StoreOptions::default())?;
    store.commit(append(1, 1..=3)).await?;
    assert_eq!(store.get_msg(1, 2)?, Some(msg(1, 2)));
    assert_eq!(store.get_msg(1, 4)?, None);
    assert_eq!(store.applied(1)?, Some(3));
    assert_eq!(store.applied(2)?, None);
    let all: Vec<_> = store
        .scan_msgs(1, 0)?
        .collect::<std::result::Result<_, _>>()?;
    assert_eq!(all, vec![msg(1, 1), msg(1, 2), msg(1, 3)]);
    Ok(())
}

#[tokio::test]
async fn a_stream_scan_never_sees_another_streams_messages() -> Result {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), StoreOptions::default())?;
    // Neighbouring ids, and seqs that cross byte boundaries, interleaved.
    for (id, range) in [(2, 250..=260), (1, 1..=5), (3, 1..=1), (256, 1..=2)] {
        store.commit(append(id, range)).await?;
    }
    assert_eq!(seqs(&store, 1, 0)?, vec![1, 2, 3, 4, 5]);
    assert_eq!(seqs(&store, 2, 255)?, (255..=260).collect::<Vec<_>>());
    assert_eq!(seqs(&store, 3, 2)?, Vec::<u64>::new());
    assert_eq!(seqs(&store, 4, 0)?, Vec::<u64>::new());
    assert_eq!(seqs(&store, 256, 0)?, vec![1, 2]);
    assert_eq!(store.last_msg_at_or_before(1, u64::MAX)?, Some(msg(1, 5)));
    assert_eq!(store.last_msg_at_or_before(2, 249)?, None);
    assert_eq!(store.last_msg_at_or_before(3, 0)?, None);
    assert_eq!(store.last_msg_at_or_before(4, u64::MAX)?, None);
    Ok(())
}

#[tokio::test]
async fn a_pinned_read_returns_the_messages_as_they_were_when_it_was_pinned() -> Result {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), StoreOptions::default())?;
    store.commit(append(1, 1..=3)).await?;
    store.commit(append(2, 1..=2)).await?;
    let raft = |group_id| RaftApplied {
        group_id,
        state: Bytes::from_static(b"applied"),
    };
    let mut writes = Vec::new();
    let read = store.fold_msgs_pinned(
        1,
        || {
            // Applied after the pin (a replica goes on applying while a snapshot is read).
            let mut later = append(1, 4..=5);
            later.ops.push(StoreOp::Remove { seq: 2 });
            writes.push(store.write_with_raft_applied(later, raft(1)));
            writes.push(store.write_with_raft_applied(append(2, 3..=3), raft(2)));
            Some(Vec::new())
        },
        |read, m| {
            read.push(m);
            ControlFlow::Continue(())
        },
    )?;
    for write in writes {
        write?;
    }
    assert_eq!(read, Some(vec![msg(1, 1), msg(1, 2), msg(1, 3)]));
    // Read again, the writes show.
    let push = |seqs: &mut Vec<u64>, m: StoredMsg| {
        seqs.push(m.seq);
        ControlFlow::Continue(())
    };
    let seqs_now = store.fold_msgs_pinned(1, || Some(Vec::new()), push)?;
    assert_eq!(seqs_now, Some(vec![1, 3, 4, 5]));
    // A reader that stops (its receiver went away) reads no further.
    let until_3 = store.fold_msgs_pinned(
        1,
        || Some(Vec::new()),
        |seqs, m| {
            seqs.push(m.seq);
            if m.seq >= 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )?;
    assert_eq!(until_3, Some(vec![1, 3]));
    // A caller that gives up once pinned reads nothing.
    let abandoned = store.fold_msgs_pinned(1, || None::<Vec<u64>>, push)?;
    assert_eq!(abandoned, None);
    assert_eq!(seqs(&store, 2, 0)?, vec![1, 2, 3]);
    Ok(())
}

#[tokio::test]
async fn remove_and_remove_below_delete_exactly_their_messages() -> Result {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), StoreOptions::default())?;
    store.commit(append(1, 1..=200)).await?;
    store.commit(append(2, 1..=10)).await?;
    let ops = vec![
        StoreOp::Remove { seq: 150 },
        StoreOp::RemoveBelow { seq: 100 },
    ];
    store
        .commit(StreamBatch {
            stream_id: 1,
            ops,
            applied: 201,
            position: None,
            consumer_updates: vec![],
        })
        .await?;
    // A narrow trim after a wide one (point deletes from the known floor).
    for below in [103, 104, 104, 102] {
        store
            .commit(StreamBatch {
                stream_id: 1,
                ops: vec![StoreOp::RemoveBelow { seq: below }],
                applied: 202,
                position: None,
                consumer_updates: vec![],
            })
            .await?;
    }
    let mut expected: Vec<u64> = (104..=200).collect();
    expected.retain(|s| *s != 150);
    assert_eq!(seqs(&store, 1, 0)?, expected);
    assert_eq!(store.last_msg_at_or_before(1, 150)?, Some(msg(1, 149)));
    assert_eq!(seqs(&store, 2, 0)?, (1..=10).collect::<Vec<_>>());
    assert_eq!(store.applied(1)?, Some(202));

    // A message appended below the floor (not something streams do) is still trimmed later.
    store.commit(append(1, 50..=50)).await?;
    assert_eq!(store.get_msg(1, 50)?, Some(msg(1, 50)));
    store
        .commit(StreamBatch {
            stream_id: 1,
            ops: vec![StoreOp::RemoveBelow { seq: 120 }],
            applied: 203,
            position: None,
            consumer_updates: vec![],
        })
        .await?;
    assert_eq!(seqs(&store, 1, 0)?.first(), Some(&120));
    Ok(())
}

#[tokio::test]
async fn applied_position_and_consumer_state_move_with_the_messages() -> Result {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), StoreOptions::default())?;
    let mut batch = append(7, 1..=2);
    batch.consumer_updates = vec![
        ConsumerUpdate::Put {
            name: "worker".into(),
            state: Bytes::from_static(b"ack-floor 0"),
        },
        ConsumerUpdate::Put {
            name: "audit".into(),
            state: Bytes::from_static(b"{}"),
        },
    ];
    store.commit(batch).await?;
    store
        .update_consumers(
            7,
            vec![ConsumerUpdate::Put {
                name: "worker".into(),
                state: Bytes::from_static(b"ack-floor 2"),
            }],
        )
        .await?;
    assert_eq!(
        store.applied(7)?,
        Some(2),
        "consumer updates leave applied alone"
    );
    assert_eq!(
        store.consumer_state(7, "worker")?,
        Some(Bytes::from_static(b"ack-floor 2"))
    );
    store.delete_consumer(7, "audit").await?;
    assert_eq!(store.consumer_state(7, "audit")?, None);
    let names: Vec<String> = store.consumers(7)?.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["worker".to_owned()]);
    assert!(store.consumers(8)?.is_empty());
    Ok(())
}

#[tokio::test]
async fn stream_ids_are_allocated_once_and_survive_a_reopen() -> Result {
    let dir = tempfile::tempdir()?;
    {
        let store = Store::open(dir.path(), StoreOptions::default())?;
        let a = store
            .create_stream(Bytes::from_static(b"{\"name\":\"A\"}"))
            .await?;
        let b = store
            .create_stream(Bytes::from_static(b"{\"name\":\"B\"}"))
            .await?;
        assert_eq!((a, b), (1, 2));
        store
            .put_stream_config(b, Bytes::from_static(b"{\"name\":\"B\",\"max_msgs\":5}"))
            .await?;
        store.commit(append(a, 1..=3)).await?;
        store.commit(append(b, 1..=4)).await?;
    }
    let store = Store::open(dir.path(), StoreOptions::default())?;
    assert_eq!(
        store.stream_configs()?,
        vec![
            (1, Bytes::from_static(b"{\"name\":\"A\"}")),
            (2, Bytes::from_static(b"{\"name\":\"B\",\"max_msgs\":5}")),
        ]
    );
    assert_eq!(seqs(&store, 1, 0)?, vec![1, 2, 3]);
    assert_eq!(seqs(&store, 2, 0)?, vec![1, 2, 3, 4]);
    assert_eq!(store.applied(2)?, Some(4));
    assert_eq!(store.create_stream(Bytes::new()).await?, 3);
    Ok(())
}

#[tokio::test]
async fn deleting_a_stream_removes_all_its_keys_and_nothing_else() -> Result {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), StoreOptions::default())?;
    let a = store.create_stream(Bytes::from_static(b"a")).await?;
    let b = store.create_stream(Bytes::from_static(b"b")).await?;
    for id in [a, b] {
        let mut batch = append(id, 1..=100);
        batch.consumer_updates = vec![ConsumerUpdate::Put {
            name: "c".into(),
            state: Bytes::from_static(b"s"),
        }];
        store.commit(batch).await?;
    }
    store.delete_stream(a).await?;
    assert_eq!(seqs(&store, a, 0)?, Vec::<u64>::new());
    assert_eq!(store.applied(a)?, None);
    assert_eq!(store.stream_config(a)?, None);
    assert!(store.consumers(a)?.is_empty());
    assert_eq!(seqs(&store, b, 0)?.len(), 100);
    assert_eq!(store.applied(b)?, Some(100));
    assert_eq!(store.stream_configs()?, vec![(b, Bytes::from_static(b"b"))]);
    assert_eq!(store.consumers(b)?.len(), 1);
    Ok(())
}

/// A stream received under a new id replaces the old one in one batch: before the adopting
/// write the old stream is whole and the staged messages belong to no stream's config; after
/// it, the new id holds config, messages, positions, consumers and the group's applied state,
/// and nothing of the old id is left. A restart sees the same.
#[tokio::test]
async fn an_adopted_stream_replaces_the_old_one_whole() -> Result {
    let dir = tempfile::tempdir()?;
    let (old, new) = {
        let store = Store::open(dir.path(), StoreOptions::default())?;
        let old = store.create_stream(Bytes::from_static(b"old")).await?;
        let mut batch = append(old, 1..=50);
        batch.consumer_updates = vec![ConsumerUpdate::Put {
            name: "gone".into(),
            state: Bytes::from_static(b"s"),
        }];
        store.commit(batch).await?;
        let new = store.create_stream(Bytes::from_static(b"staging")).await?;
        let mut staged = Vec::new();
        for seq in 40..=120 {
            let mut encoded = bytes::BytesMut::new();
            msg(new, seq).encode(&mut encoded);
            staged.push((seq, encoded.freeze()));
        }
        for part in staged.chunks(30) {
            store.write_staged_msgs(new, part)?;
        }
        assert_eq!(
            seqs(&store, old, 0)?.len(),
            50,
            "the old stream is whole until adopted"
        );
        assert_eq!(store.get_msg(new, 40)?, Some(msg(new, 40)));
        let batch = StreamBatch {
            stream_id: new,
            ops: Vec::new(),
            applied: 7,
            position: Some(Bytes::from_static(b"pos")),
            consumer_updates: vec![ConsumerUpdate::Put {
                name: "kept".into(),
                state: Bytes::from_static(b"k"),
            }],
        };
        let applied = RaftApplied {
            group_id: 9,
            state: Bytes::from_static(b"applied"),
        };
        store
            .adopt_stream(old, Bytes::from_static(b"new"), batch, applied)
            .await?;
        (old, new)
    };
    let store = Store::open(dir.path(), StoreOptions::default())?;
    assert_eq!(
        store.stream_configs()?,
        vec![(new, Bytes::from_static(b"new"))]
    );
    assert_eq!(seqs(&store, new, 0)?, (40..=120).collect::<Vec<_>>());
    assert_eq!(store.get_msg(new, 120)?, Some(msg(new, 120)));
    assert_eq!(store.applied(new)?, Some(7));
    assert_eq!(
        store.stream_position(new)?,
        Some(Bytes::from_static(b"pos"))
    );
    assert_eq!(
        store.consumers(new)?,
        vec![("kept".to_owned(), Bytes::from_static(b"k"))]
    );
    assert_eq!(
        store.raft_log(9).read_applied()?,
        Some(Bytes::from_static(b"applied"))
    );
    assert_eq!(seqs(&store, old, 0)?, Vec::<u64>::new());
    assert_eq!(store.applied(old)?, None);
    assert!(store.consumers(old)?.is_empty());
    Ok(())
}

#[tokio::test]
async fn disk_usage_reports_the_store_and_its_file_system() -> Result {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), StoreOptions::default())?;
    store.commit(append(1, 1..=500)).await?;
    let usage = store.disk_usage()?;
    assert!(usage.memtable_bytes > 0, "{usage:?}");
    assert!(usage.dir_bytes > 0, "{usage:?}");
    assert!(usage.fs_total_bytes > 0 && usage.fs_available_bytes <= usage.fs_total_bytes);
    Ok(())
}

#[tokio::test]
async fn a_commit_polled_after_the_store_is_dropped_is_refused_not_reported_written() -> Result {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), StoreOptions::default())?;
    // Futures created before the drop but polled after it: the commit is refused (Closed), never
    // reported as written.
    let late = store.commit(append(1, 1..=1));
    drop(store);
    assert!(matches!(late.await, Err(natrix_store::StoreError::Closed)));
    let store = Store::open(dir.path(), StoreOptions::default())?;
    assert_eq!(store.get_msg(1, 1)?, None);
    Ok(())
}

#[tokio::test]
async fn in_place_scans_see_what_full_scans_see_without_payloads() -> Result {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), StoreOptions::default())?;
    store.commit(append(3, 1..=20)).await?;
    store.commit(append(4, 1..=2)).await?;
    let full: Vec<_> = store
        .scan_msgs(3, 5)?
        .map(|m| m.map(|m| (m.seq, m.subject, m.headers, m.payload.len())))
        .collect::<std::result::Result<_, _>>()?;
    let refs: Vec<_> = store
        .scan_msg_refs(3, 5, |r| {
            (
                r.seq,
                Bytes::copy_from_slice(r.subject),
                r.headers.map(Bytes::copy_from_slice),
                r.payload_len,
            )
        })?
        .collect::<std::result::Result<_, _>>()?;
    assert_eq!(refs, full);
    assert_eq!(
        refs.len(),
        16,
        "stream 4's messages must not leak into stream 3's scan"
    );
    // Positions survive alongside: the batch's position bytes read back as written.
    assert_eq!(
        store.stream_position(3)?,
        Some(Bytes::copy_from_slice(&20u64.to_be_bytes()))
    );
    store.delete_stream(3).await?;
    assert_eq!(store.stream_position(3)?, None);
    Ok(())
}

#[tokio::test]
async fn a_raft_applied_state_lands_with_its_batch_and_goes_with_its_group() -> Result {
    let dir = tempfile::tempdir()?;
    {
        let store = Store::open(dir.path(), StoreOptions::default())?;
        let first = RaftApplied {
            group_id: 9,
            state: Bytes::from_static(b"applied up to 3"),
        };
        store
            .commit_with_raft_applied(append(5, 1..=3), first.clone())
            .await?;
        assert_eq!(store.raft_log(9).read_applied()?, Some(first.state));
        assert_eq!(store.applied(5)?, Some(3));

        // The queued variant: every write of one group lands together, in queue order.
        let second = RaftApplied {
            group_id: 9,
            state: Bytes::from_static(b"applied up to 6"),
        };
        let ticket = store
            .enqueue_commit_with_raft_applied(append(5, 4..=6), second)
            .await?;
        ticket.await?;
        // A plain commit leaves the Raft state alone.
        store.commit(append(6, 1..=1)).await?;
    }
    let store = Store::open(dir.path(), StoreOptions::default())?;
    let log = store.raft_log(9);
    assert_eq!(
        log.read_applied()?,
        Some(Bytes::from_static(b"applied up to 6"))
    );
    assert_eq!(seqs(&store, 5, 0)?, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(store.raft_log(8).read_applied()?, None);
    assert_eq!(store.raft_log(10).read_applied()?, None);

    // The state written alone (a machine with no effects here), then the group deleted: its
    // applied state goes, the stream's messages (not the group's) stay.
    let other = store.raft_log(10);
    other.save_applied(b"alone")?;
    assert_eq!(other.read_applied()?, Some(Bytes::from_static(b"alone")));
    log.delete_group()?;
    assert_eq!(log.read_applied()?, None);
    assert_eq!(other.read_applied()?, Some(Bytes::from_static(b"alone")));
    assert_eq!(seqs(&store, 5, 0)?.len(), 6);
    Ok(())
}

#[tokio::test]
async fn the_node_id_is_created_once_and_survives_a_reopen() -> Result {
    let dir = tempfile::tempdir()?;
    let first = {
        let store = Store::open(dir.path(), StoreOptions::default())?;
        let id = store.node_id()?;
        assert_ne!(id, 0);
        assert_eq!(store.node_id()?, id, "the same id on every call");
        id
    };
    let store = Store::open(dir.path(), StoreOptions::default())?;
    assert_eq!(store.node_id()?, first, "the same id after a reopen");

    // Another store (another node) gets another id.
    let other_dir = tempfile::tempdir()?;
    let other = Store::open(other_dir.path(), StoreOptions::default())?;
    assert_ne!(other.node_id()?, first);
    Ok(())
}

#[tokio::test]
async fn a_state_machine_write_is_answered_without_an_fsync_and_a_purge_syncs_it() -> Result {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), StoreOptions::default())?;
    let applied = RaftApplied {
        group_id: 4,
        state: Bytes::from_static(b"applied up to 2"),
    };
    let before = store.stats().syncs;
    store.write_with_raft_applied(append(7, 1..=2), applied.clone())?;
    // Written and visible at once, with no fsync of its own.
    assert_eq!(store.stats().syncs, before);
    assert_eq!(store.applied(7)?, Some(2));
    assert_eq!(store.raft_log(4).read_applied()?, Some(applied.state));
    assert_eq!(seqs(&store, 7, 0)?, vec![1, 2]);
    // The synced log writes that follow carry it to disk with them; it survives a reopen.
    store.raft_log(4).purge_upto(1, b"purged")?;
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default())?;
    assert_eq!(seqs(&store, 7, 0)?, vec![1, 2]);
    assert_eq!(store.applied(7)?, Some(2));
    Ok(())
}
