//! The key-value and object stores of the official async-nats client on natrix: they are built
//! on streams, direct gets, roll-ups and consumers, so these tests exercise all of them the way
//! applications do (CAS updates, create-if-absent, delete and purge markers, history, keys,
//! watches, TTL, bucket status; chunked objects, info, list, delete, watch).

use crate::support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use async_nats::jetstream::object_store;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use support::{Node, WAIT, ok, within};
use tokio::io::AsyncReadExt;

impl Node {
    async fn bucket(&self, config: kv::Config) -> anyhow::Result<kv::Store> {
        ok(within("bucket create", self.js.create_key_value(config)).await?)
    }

    async fn objects(&self, bucket: &str) -> anyhow::Result<object_store::ObjectStore> {
        ok(within(
            "object store create",
            self.js.create_object_store(object_store::Config {
                bucket: bucket.to_string(),
                ..Default::default()
            }),
        )
        .await?)
    }
}

fn bucket_config(name: &str, history: i64) -> kv::Config {
    kv::Config {
        bucket: name.to_string(),
        history,
        ..Default::default()
    }
}

/// The next item of a watch or list, failing on end, error or timeout.
async fn next<S, T, E>(items: &mut S) -> anyhow::Result<T>
where
    S: Stream<Item = Result<T, E>> + Unpin,
    E: std::fmt::Display,
{
    match within("the next item", items.next()).await? {
        Some(item) => ok(item),
        None => anyhow::bail!("stream ended"),
    }
}

/// Every item of a stream that ends by itself.
async fn all<S, T, E>(items: S) -> anyhow::Result<Vec<T>>
where
    S: Stream<Item = Result<T, E>>,
    E: std::fmt::Display,
{
    ok(within("the stream to end", items.try_collect::<Vec<_>>()).await?)
}

async fn get(kv: &kv::Store, key: &str) -> anyhow::Result<Option<Bytes>> {
    ok(within("get", kv.get(key)).await?)
}

async fn put(kv: &kv::Store, key: &str, value: &'static str) -> anyhow::Result<u64> {
    ok(within("put", kv.put(key, Bytes::from_static(value.as_bytes()))).await?)
}

// ---------------------------------------------------------------------------------------------
// Key-value store
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn kv_put_then_get_returns_the_latest_value_and_its_revision() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let kv = node.bucket(bucket_config("B", 5)).await?;

    assert_eq!(put(&kv, "a", "1").await?, 1);
    assert_eq!(put(&kv, "b", "x").await?, 2);
    assert_eq!(put(&kv, "a", "2").await?, 3);
    assert_eq!(get(&kv, "a").await?, Some(Bytes::from("2")));
    assert_eq!(get(&kv, "b").await?, Some(Bytes::from("x")));
    assert_eq!(get(&kv, "missing").await?, None);

    let entry = ok(within("entry", kv.entry("a")).await?)?
        .ok_or_else(|| anyhow::anyhow!("no entry for a"))?;
    assert_eq!(entry.bucket, "B");
    assert_eq!(entry.key, "a");
    assert_eq!(entry.value, "2");
    assert_eq!(entry.revision, 3);
    assert_eq!(entry.operation, Operation::Put);

    let first = ok(within("entry for revision", kv.entry_for_revision("a", 1)).await?)?
        .ok_or_else(|| anyhow::anyhow!("no revision 1 of a"))?;
    assert_eq!(first.value, "1");
    Ok(())
}

#[tokio::test]
async fn kv_update_succeeds_only_against_the_current_revision() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let kv = node.bucket(bucket_config("B", 1)).await?;

    let r1 = put(&kv, "a", "1").await?;
    let r2 = ok(within("update", kv.update("a", "2".into(), r1)).await?)?;
    assert!(r2 > r1);
    let stale = within("stale update", kv.update("a", "3".into(), r1)).await?;
    let err = stale
        .err()
        .ok_or_else(|| anyhow::anyhow!("an update against a stale revision succeeded"))?;
    assert_eq!(err.kind(), UpdateErrorKind::WrongLastRevision, "{err}");
    assert_eq!(get(&kv, "a").await?, Some(Bytes::from("2")));
    Ok(())
}

#[tokio::test]
async fn kv_create_fails_while_the_key_exists_and_succeeds_after_delete() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let kv = node.bucket(bucket_config("B", 5)).await?;

    ok(within("create", kv.create("a", "1".into())).await?)?;
    let again = within("create again", kv.create("a", "2".into())).await?;
    let err = again
        .err()
        .ok_or_else(|| anyhow::anyhow!("create over an existing key succeeded"))?;
    assert_eq!(err.kind(), CreateErrorKind::AlreadyExists, "{err}");

    ok(within("delete", kv.delete("a")).await?)?;
    ok(within("create after delete", kv.create("a", "3".into())).await?)?;
    assert_eq!(get(&kv, "a").await?, Some(Bytes::from("3")));
    Ok(())
}

#[tokio::test]
async fn kv_delete_leaves_a_marker_and_purge_drops_the_history() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let kv = node.bucket(bucket_config("B", 10)).await?;
    for value in ["1", "2", "3"] {
        put(&kv, "a", value).await?;
    }
    put(&kv, "b", "x").await?;

    ok(within("delete", kv.delete("a")).await?)?;
    assert_eq!(get(&kv, "a").await?, None);
    let history = all(ok(within("history", kv.history("a")).await?)?).await?;
    let ops: Vec<Operation> = history.iter().map(|e| e.operation).collect();
    assert_eq!(
        ops,
        [
            Operation::Put,
            Operation::Put,
            Operation::Put,
            Operation::Delete
        ]
    );

    ok(within("purge", kv.purge("a")).await?)?;
    assert_eq!(get(&kv, "a").await?, None);
    let history = all(ok(within("history", kv.history("a")).await?)?).await?;
    let ops: Vec<Operation> = history.iter().map(|e| e.operation).collect();
    assert_eq!(ops, [Operation::Purge], "purge keeps only its own marker");
    assert_eq!(
        get(&kv, "b").await?,
        Some(Bytes::from("x")),
        "other keys untouched"
    );
    Ok(())
}

#[tokio::test]
async fn kv_history_keeps_the_configured_number_of_revisions() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let kv = node.bucket(bucket_config("B", 3)).await?;
    for value in ["1", "2", "3", "4", "5"] {
        put(&kv, "a", value).await?;
    }

    let history = all(ok(within("history", kv.history("a")).await?)?).await?;
    let values: Vec<Bytes> = history.iter().map(|e| e.value.clone()).collect();
    assert_eq!(values, ["3", "4", "5"]);
    let revisions: Vec<u64> = history.iter().map(|e| e.revision).collect();
    assert_eq!(revisions, [3, 4, 5]);
    Ok(())
}

#[tokio::test]
async fn kv_keys_lists_the_live_keys_only() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let kv = node.bucket(bucket_config("B", 5)).await?;
    for key in ["a", "b", "c", "a"] {
        put(&kv, key, "v").await?;
    }
    ok(within("delete", kv.delete("b")).await?)?;

    let keys: BTreeSet<String> = all(ok(within("keys", kv.keys()).await?)?)
        .await?
        .into_iter()
        .collect();
    assert_eq!(keys, BTreeSet::from(["a".to_string(), "c".to_string()]));
    Ok(())
}

#[tokio::test]
async fn kv_watch_sees_the_changes_of_one_key_and_watch_all_of_every_key() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let kv = node.bucket(bucket_config("B", 5)).await?;
    put(&kv, "a", "before").await?;
    let mut one = ok(within("watch", kv.watch("a")).await?)?;
    let mut every = ok(within("watch all", kv.watch_all()).await?)?;
    let mut with_history = ok(within("watch with history", kv.watch_with_history("a")).await?)?;

    put(&kv, "b", "1").await?;
    put(&kv, "a", "2").await?;
    ok(within("delete", kv.delete("a")).await?)?;

    let first = next(&mut one).await?;
    assert_eq!((first.key.as_str(), first.value.as_ref()), ("a", &b"2"[..]));
    assert_eq!(first.revision, 3);
    let second = next(&mut one).await?;
    assert_eq!(second.operation, Operation::Delete);
    assert_eq!(second.revision, 4);

    let seen: Vec<(String, u64)> = [
        next(&mut every).await?,
        next(&mut every).await?,
        next(&mut every).await?,
    ]
    .into_iter()
    .map(|e| (e.key, e.revision))
    .collect();
    assert_eq!(
        seen,
        [
            ("b".to_string(), 2),
            ("a".to_string(), 3),
            ("a".to_string(), 4)
        ]
    );

    let initial = next(&mut with_history).await?;
    assert_eq!(
        initial.value, "before",
        "watch with history starts at the current value"
    );
    assert_eq!(initial.revision, 1);
    Ok(())
}

#[tokio::test]
async fn kv_entries_expire_after_the_buckets_max_age() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let kv = node
        .bucket(kv::Config {
            max_age: Duration::from_secs(1),
            ..bucket_config("TTL", 1)
        })
        .await?;
    put(&kv, "a", "short-lived").await?;
    assert_eq!(get(&kv, "a").await?, Some(Bytes::from("short-lived")));

    let deadline = Instant::now() + WAIT;
    while get(&kv, "a").await?.is_some() {
        assert!(
            Instant::now() < deadline,
            "the entry outlived max_age by 4 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn kv_status_reports_the_bucket_configuration_and_value_count() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let kv = node
        .bucket(kv::Config {
            max_age: Duration::from_secs(60),
            ..bucket_config("STATUS", 4)
        })
        .await?;
    for key in ["a", "b", "a"] {
        put(&kv, key, "v").await?;
    }

    // The client's status is the stream info it holds: open the bucket again for fresh counts.
    let reopened = ok(within("open bucket", node.js.get_key_value("STATUS")).await?)?;
    let status = ok(within("status", reopened.status()).await?)?;
    assert_eq!(status.bucket(), "STATUS");
    assert_eq!(status.history(), 4);
    assert_eq!(status.max_age(), Duration::from_secs(60));
    assert_eq!(status.values(), 3);
    assert_eq!(get(&reopened, "b").await?, Some(Bytes::from("v")));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Object store
// ---------------------------------------------------------------------------------------------

/// 1 MiB and a bit of varied bytes: more than eight 128 KiB chunks.
fn big_object() -> Vec<u8> {
    (0..(1 << 20) + 4321)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

#[tokio::test]
async fn object_store_round_trips_a_multi_chunk_object() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let objects = node.objects("OBJ").await?;
    let data = big_object();

    let put = ok(within("put", objects.put("big", &mut data.as_slice())).await?)?;
    assert_eq!(put.size, data.len());
    assert_eq!(put.chunks, 9);

    let mut object = ok(within("get", objects.get("big")).await?)?;
    let mut read = Vec::new();
    within("read", object.read_to_end(&mut read)).await??;
    assert_eq!(read.len(), data.len());
    assert!(
        read == data,
        "the object read back differs from the one put"
    );

    let info = ok(within("info", objects.info("big")).await?)?;
    assert_eq!(info.name, "big");
    assert_eq!(info.bucket, "OBJ");
    assert_eq!(info.size, data.len());
    assert_eq!(info.chunks, 9);
    assert!(info.digest.is_some_and(|d| d.starts_with("SHA-256=")));
    assert!(!info.deleted);
    Ok(())
}

#[tokio::test]
async fn object_store_lists_objects_and_forgets_deleted_ones() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let objects = node.objects("OBJ").await?;
    for name in ["x", "y"] {
        ok(within("put", objects.put(name, &mut &b"small"[..])).await?)?;
    }

    let names = |infos: Vec<object_store::ObjectInfo>| -> BTreeSet<String> {
        infos.into_iter().map(|i| i.name).collect()
    };
    let listed = names(all(ok(within("list", objects.list()).await?)?).await?);
    assert_eq!(listed, BTreeSet::from(["x".to_string(), "y".to_string()]));

    ok(within("delete", objects.delete("x")).await?)?;
    let listed = names(all(ok(within("list", objects.list()).await?)?).await?);
    assert_eq!(listed, BTreeSet::from(["y".to_string()]));
    assert!(
        within("get deleted", objects.get("x")).await?.is_err(),
        "a deleted object cannot be read"
    );

    let mut y = ok(within("get", objects.get("y")).await?)?;
    let mut read = Vec::new();
    within("read", y.read_to_end(&mut read)).await??;
    assert_eq!(read, b"small");
    Ok(())
}

#[tokio::test]
async fn object_store_watch_reports_puts_and_deletes() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let objects = node.objects("OBJ").await?;
    let mut watch = ok(within("watch", objects.watch()).await?)?;

    ok(within("put", objects.put("z", &mut &b"zzz"[..])).await?)?;
    let put = next(&mut watch).await?;
    assert_eq!(put.name, "z");
    assert_eq!(put.size, 3);
    assert!(!put.deleted);

    ok(within("delete", objects.delete("z")).await?)?;
    let deleted = next(&mut watch).await?;
    assert_eq!(deleted.name, "z");
    assert!(deleted.deleted);
    Ok(())
}
