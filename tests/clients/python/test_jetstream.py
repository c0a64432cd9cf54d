"""JetStream as a nats.py user sees it: streams, publish acks, message get, pull and push
consumers, acks, KV and object store. Every test runs against natrix and nats-server, each started
with JetStream enabled and a fresh store directory (the js_server fixture)."""

import asyncio
import os

import nats
import pytest
from nats.errors import TimeoutError
from nats.js import api
from nats.js.errors import (
    APIError,
    BadRequestError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
    NoStreamResponseError,
    NotFoundError,
    ObjectNotFoundError,
)

from conftest import run


async def connect(server):
    nc = await nats.connect(server.url, allow_reconnect=False)
    return nc, nc.jetstream(timeout=3)


async def orders_stream(js, **kw):
    return await js.add_stream(name="ORDERS", subjects=["orders.>"], **kw)


def test_stream_add_info_update_purge_delete(js_server):
    async def main():
        nc, js = await connect(js_server)
        info = await orders_stream(js)
        assert info.config.name == "ORDERS"
        assert info.config.subjects == ["orders.>"]
        assert info.config.storage == api.StorageType.FILE
        assert info.config.retention == api.RetentionPolicy.LIMITS
        assert info.state.messages == 0

        for i in range(3):
            await js.publish(f"orders.{i}", b"x" * 10)
        info = await js.stream_info("ORDERS")
        assert info.state.messages == 3
        assert info.state.first_seq == 1
        assert info.state.last_seq == 3
        assert info.state.consumer_count == 0

        info = await js.update_stream(name="ORDERS", subjects=["orders.>", "refunds.*"], max_msgs=2)
        assert info.config.subjects == ["orders.>", "refunds.*"]
        assert info.config.max_msgs == 2
        # Lowering max_msgs applies to what the stream holds already.
        assert info.state.messages == 2
        assert info.state.first_seq == 2
        ack = await js.publish("refunds.1", b"r")
        assert (ack.stream, ack.seq) == ("ORDERS", 4)

        names = [s.config.name for s in await js.streams_info()]
        assert names == ["ORDERS"]

        assert await js.purge_stream("ORDERS") is True
        info = await js.stream_info("ORDERS")
        assert info.state.messages == 0
        assert info.state.first_seq == 5
        assert info.state.last_seq == 4

        assert await js.delete_stream("ORDERS") is True
        with pytest.raises(NotFoundError) as e:
            await js.stream_info("ORDERS")
        assert e.value.code == 404
        assert e.value.err_code == 10059
        with pytest.raises(NotFoundError):
            await js.delete_stream("ORDERS")
        await nc.close()

    run(main())


def test_a_deleted_stream_is_gone_at_once(js_server):
    """Once a delete is answered the stream is not found, whichever node held it (in cluster
    mode natrix often still had the replica on the answering node for a moment)."""
    async def main():
        nc, js = await connect(js_server)
        for _ in range(10):
            await orders_stream(js)
            await js.publish("orders.1", b"x")
            await js.update_stream(name="ORDERS", subjects=["orders.>", "refunds.*"], max_msgs=2)
            await js.purge_stream("ORDERS")
            assert await js.delete_stream("ORDERS") is True
            with pytest.raises(NotFoundError):
                await js.stream_info("ORDERS")
        await nc.close()

    run(main())


def test_purge_by_subject_and_keep(js_server):
    async def main():
        nc, js = await connect(js_server)
        await orders_stream(js)
        for i in range(6):
            await js.publish(f"orders.{'a' if i % 2 else 'b'}", str(i).encode())
        assert await js.purge_stream("ORDERS", subject="orders.a") is True
        info = await js.stream_info("ORDERS")
        assert info.state.messages == 3
        assert await js.purge_stream("ORDERS", subject="orders.b", keep=1) is True
        info = await js.stream_info("ORDERS")
        assert info.state.messages == 1
        assert info.state.first_seq == 5
        assert info.state.last_seq == 6
        assert (await js.get_msg("ORDERS", 5)).data == b"4"
        await nc.close()

    run(main())


def test_add_stream_errors(js_server):
    async def main():
        nc, js = await connect(js_server)
        await orders_stream(js)
        # Same name, different config: stream name already in use.
        with pytest.raises(BadRequestError) as e:
            await js.add_stream(name="ORDERS", subjects=["other.>"])
        assert e.value.err_code == 10058
        # Overlapping subjects with another stream.
        with pytest.raises(BadRequestError) as e:
            await js.add_stream(name="OTHER", subjects=["orders.new"])
        assert e.value.err_code == 10065
        # Same config again is idempotent.
        info = await orders_stream(js)
        assert info.config.name == "ORDERS"
        with pytest.raises(NotFoundError) as e:
            await js.update_stream(name="MISSING", subjects=["missing"])
        assert e.value.err_code == 10059
        await nc.close()

    run(main())


def test_publish_ack_and_msg_id_dedup(js_server):
    async def main():
        nc, js = await connect(js_server)
        await orders_stream(js)
        ack = await js.publish("orders.new", b"one", headers={"Nats-Msg-Id": "id-1"})
        assert ack.stream == "ORDERS"
        assert ack.seq == 1
        assert not ack.duplicate
        again = await js.publish("orders.new", b"one", headers={"Nats-Msg-Id": "id-1"})
        assert again.stream == "ORDERS"
        assert again.seq == 1
        assert again.duplicate is True
        other = await js.publish("orders.new", b"two", headers={"Nats-Msg-Id": "id-2"})
        assert other.seq == 2 and not other.duplicate
        plain = await js.publish("orders.new", b"three", stream="ORDERS")
        assert plain.seq == 3
        info = await js.stream_info("ORDERS")
        assert info.state.messages == 3

        # Async publishing: every ack arrives, in order.
        futures = [await js.publish_async("orders.async", str(i).encode()) for i in range(20)]
        acks = await asyncio.wait_for(asyncio.gather(*futures), 5)
        assert [a.seq for a in acks] == list(range(4, 24))

        with pytest.raises(NoStreamResponseError):
            await js.publish("nostream.here", b"x", timeout=1)
        await nc.close()

    run(main())


def test_publish_expectations_fail_with_api_errors(js_server):
    async def main():
        nc, js = await connect(js_server)
        await orders_stream(js)
        await js.publish("orders.a", b"1")
        await js.publish("orders.b", b"2")
        with pytest.raises(APIError) as e:
            await js.publish("orders.a", b"x", headers={"Nats-Expected-Last-Sequence": "1"})
        assert e.value.code == 400
        assert e.value.err_code == 10071
        ok = await js.publish("orders.a", b"3", headers={"Nats-Expected-Last-Sequence": "2"})
        assert ok.seq == 3
        with pytest.raises(APIError) as e:
            await js.publish("orders.b", b"x", headers={"Nats-Expected-Last-Subject-Sequence": "1"})
        assert e.value.err_code == 10071
        ok = await js.publish("orders.b", b"4", headers={"Nats-Expected-Last-Subject-Sequence": "2"})
        assert ok.seq == 4
        with pytest.raises(APIError) as e:
            await js.publish("orders.a", b"x", headers={"Nats-Expected-Stream": "OTHER"})
        assert e.value.err_code == 10060
        with pytest.raises(APIError) as e:
            await js.publish("orders.a", b"x", headers={"Nats-Expected-Last-Msg-Id": "nope"})
        assert e.value.err_code == 10070
        info = await js.stream_info("ORDERS")
        assert info.state.messages == 4
        await nc.close()

    run(main())


def test_get_msg_and_direct_get(js_server):
    async def main():
        nc, js = await connect(js_server)
        await orders_stream(js, allow_direct=True)
        await js.publish("orders.a", b"first", headers={"X-Tag": "one"})
        await js.publish("orders.b", b"second")
        await js.publish("orders.a", b"third")

        msg = await js.get_msg("ORDERS", 1)
        assert (msg.subject, msg.seq, msg.data) == ("orders.a", 1, b"first")
        assert msg.headers["X-Tag"] == "one"
        msg = await js.get_last_msg("ORDERS", "orders.a")
        assert (msg.seq, msg.data) == (3, b"third")
        msg = await js.get_msg("ORDERS", seq=2, subject="orders.a", next=True)
        assert (msg.seq, msg.data) == (3, b"third")
        with pytest.raises(NotFoundError) as e:
            await js.get_msg("ORDERS", 99)
        assert e.value.err_code == 10037

        msg = await js.get_msg("ORDERS", 2, direct=True)
        assert (msg.subject, msg.seq, msg.data) == ("orders.b", 2, b"second")
        assert msg.headers["Nats-Stream"] == "ORDERS"
        msg = await js.get_msg("ORDERS", 1, direct=True)
        assert msg.headers["X-Tag"] == "one"
        msg = await js.get_last_msg("ORDERS", "orders.a", direct=True)
        assert (msg.seq, msg.data) == (3, b"third")
        with pytest.raises(NotFoundError):
            await js.get_msg("ORDERS", 99, direct=True)

        assert await js.delete_msg("ORDERS", 2) is True
        with pytest.raises(NotFoundError):
            await js.get_msg("ORDERS", 2)
        info = await js.stream_info("ORDERS")
        assert info.state.messages == 2
        await nc.close()

    run(main())


def test_pull_fetch_ack_nak_term_in_progress(js_server):
    async def main():
        nc, js = await connect(js_server)
        await orders_stream(js)
        for i in range(3):
            await js.publish(f"orders.{i}", str(i).encode())
        psub = await js.pull_subscribe("orders.>", durable="worker", stream="ORDERS")
        msgs = await psub.fetch(3, timeout=2)
        assert [m.data for m in msgs] == [b"0", b"1", b"2"]
        assert msgs[0].metadata.sequence.stream == 1
        assert msgs[0].metadata.sequence.consumer == 1
        assert msgs[0].metadata.num_delivered == 1
        assert msgs[0].metadata.num_pending == 2
        assert msgs[0].metadata.stream == "ORDERS"
        assert msgs[0].metadata.consumer == "worker"

        await msgs[0].ack_sync(timeout=2)
        await msgs[1].nak()
        await msgs[2].term()

        again = await psub.fetch(1, timeout=2)
        assert again[0].data == b"1"
        assert again[0].metadata.num_delivered == 2
        await again[0].in_progress()
        await again[0].ack_sync(timeout=2)

        with pytest.raises(TimeoutError):
            await psub.fetch(1, timeout=0.5)

        info = await psub.consumer_info()
        assert info.name == "worker"
        assert info.config.durable_name == "worker"
        assert info.config.ack_policy == api.AckPolicy.EXPLICIT
        assert info.num_pending == 0
        assert info.num_ack_pending == 0
        assert info.delivered.stream_seq == 3
        assert info.ack_floor.stream_seq == 3

        # A new message after the fetch loop is seen by the same durable.
        await js.publish("orders.9", b"9")
        msgs = await psub.fetch(5, timeout=1)
        assert [m.data for m in msgs] == [b"9"]
        await msgs[0].ack()
        await nc.flush()
        await nc.close()

    run(main())


def test_pull_nak_with_delay_and_ack_wait_redelivery(js_server):
    async def main():
        nc, js = await connect(js_server)
        await orders_stream(js)
        await js.publish("orders.1", b"1")
        psub = await js.pull_subscribe(
            "orders.>", durable="slow", config=api.ConsumerConfig(ack_wait=0.5)
        )
        first = (await psub.fetch(1, timeout=2))[0]
        assert first.metadata.num_delivered == 1
        # Not acked: after ack_wait the server redelivers it.
        again = (await psub.fetch(1, timeout=3))[0]
        assert again.data == b"1"
        assert again.metadata.num_delivered == 2
        await again.ack_sync(timeout=2)
        await nc.close()

    run(main())


def test_push_durable_consumer_info_and_delete(js_server):
    async def main():
        nc, js = await connect(js_server)
        await orders_stream(js)
        for i in range(3):
            await js.publish(f"orders.{i}", str(i).encode())
        sub = await js.subscribe("orders.>", durable="pusher", manual_ack=True)
        got = []
        for _ in range(3):
            msg = await sub.next_msg(timeout=2)
            got.append(msg.data)
            await msg.ack()
        assert got == [b"0", b"1", b"2"]
        await js.publish("orders.3", b"3")
        msg = await sub.next_msg(timeout=2)
        assert msg.data == b"3"
        assert msg.metadata.sequence.stream == 4
        await msg.ack_sync(timeout=2)

        info = await js.consumer_info("ORDERS", "pusher")
        assert info.config.durable_name == "pusher"
        assert info.config.deliver_subject
        assert info.push_bound is True
        assert info.num_ack_pending == 0
        assert info.delivered.stream_seq == 4
        consumers = await js.consumers_info("ORDERS")
        assert [c.name for c in consumers] == ["pusher"]
        si = await js.stream_info("ORDERS")
        assert si.state.consumer_count == 1

        await sub.unsubscribe()
        assert await js.delete_consumer("ORDERS", "pusher") is True
        with pytest.raises(NotFoundError) as e:
            await js.consumer_info("ORDERS", "pusher")
        assert e.value.err_code == 10014
        await nc.close()

    run(main())


def test_push_deliver_group_splits_messages(js_server):
    async def main():
        nc, js = await connect(js_server)
        await orders_stream(js)
        seen = {"a": [], "b": []}
        done = asyncio.Event()

        def handler(name):
            async def cb(msg):
                seen[name].append(int(msg.data))
                await msg.ack()
                if len(seen["a"]) + len(seen["b"]) == 20:
                    done.set()

            return cb

        await js.subscribe("orders.>", queue="workers", durable="workers", cb=handler("a"))
        await js.subscribe("orders.>", queue="workers", durable="workers", cb=handler("b"))
        for i in range(20):
            await js.publish("orders.x", str(i).encode())
        await asyncio.wait_for(done.wait(), 5)
        await asyncio.sleep(0.2)
        assert sorted(seen["a"] + seen["b"]) == list(range(20))
        info = await js.consumer_info("ORDERS", "workers")
        assert info.config.deliver_group == "workers"
        await nc.close()

    run(main())


def test_ordered_consumer_sees_everything_in_order(js_server):
    async def main():
        nc, js = await connect(js_server)
        await orders_stream(js)
        for i in range(5):
            await js.publish(f"orders.{i % 2}", str(i).encode())
        sub = await js.subscribe("orders.>", ordered_consumer=True)
        got = [int((await sub.next_msg(timeout=2)).data) for _ in range(5)]
        for i in range(5, 8):
            await js.publish("orders.x", str(i).encode())
        got += [int((await sub.next_msg(timeout=2)).data) for _ in range(3)]
        assert got == list(range(8))
        info = await sub.consumer_info()
        assert info.config.ack_policy == api.AckPolicy.NONE
        assert info.config.flow_control is True
        await sub.unsubscribe()
        await nc.close()

    run(main())


def test_account_info(js_server):
    async def main():
        nc, js = await connect(js_server)
        info = await js.account_info()
        assert info.streams == 0
        assert info.consumers == 0
        await orders_stream(js)
        await js.publish("orders.1", b"x" * 100)
        await js.pull_subscribe("orders.>", durable="d")
        # A clustered nats-server counts the stored bytes a moment later (usage is gathered
        # from the nodes asynchronously).
        deadline = asyncio.get_running_loop().time() + 5
        info = await js.account_info()
        while info.storage <= 100 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
            info = await js.account_info()
        assert info.streams == 1
        assert info.consumers == 1
        assert info.storage > 100
        assert info.memory == 0
        assert info.limits.max_streams == -1
        assert info.api.total > 0
        await nc.close()

    run(main())


def test_key_value(js_server):
    async def main():
        nc, js = await connect(js_server)
        kv = await js.create_key_value(bucket="cfg", history=5)
        rev1 = await kv.put("color", b"red")
        assert rev1 == 1
        entry = await kv.get("color")
        assert (entry.key, entry.value, entry.revision) == ("color", b"red", 1)

        rev2 = await kv.update("color", b"blue", last=rev1)
        assert rev2 == 2
        with pytest.raises(KeyWrongLastSequenceError):
            await kv.update("color", b"green", last=rev1)
        with pytest.raises(KeyWrongLastSequenceError):
            await kv.create("color", b"green")
        assert await kv.create("size", b"L") == 3
        assert (await kv.get("color", revision=1)).value == b"red"

        assert await kv.delete("size") is True
        # nats.py reports a deleted key as not found, with the delete marker's operation.
        with pytest.raises(KeyNotFoundError) as e:
            await kv.get("size")
        assert e.value.op == "DEL"
        # A deleted key can be created again.
        assert await kv.create("size", b"M") == 5
        with pytest.raises(KeyNotFoundError):
            await kv.get("missing")

        assert sorted(await kv.keys()) == ["color", "size"]
        history = await kv.history("color")
        assert [(e.value, e.revision) for e in history] == [(b"red", 1), (b"blue", 2)]

        await kv.purge("color")
        with pytest.raises(KeyNotFoundError):
            await kv.get("color")
        assert await kv.keys() == ["size"]
        history = await kv.history("color")
        assert len(history) == 1 and history[0].operation == "PURGE"

        status = await kv.status()
        assert status.bucket == "cfg"
        assert status.history == 5
        again = await js.key_value("cfg")
        assert (await again.get("size")).value == b"M"
        assert await js.delete_key_value("cfg") is True
        await nc.close()

    run(main())


def test_key_value_watch(js_server):
    async def main():
        nc, js = await connect(js_server)
        kv = await js.create_key_value(bucket="live")
        await kv.put("a", b"1")
        watcher = await kv.watchall()
        first = await watcher.updates(timeout=2)
        assert (first.key, first.value) == ("a", b"1")
        assert await watcher.updates(timeout=2) is None  # caught up
        await kv.put("b", b"2")
        await kv.delete("a")
        update = await watcher.updates(timeout=2)
        assert (update.key, update.value, update.revision) == ("b", b"2", 2)
        deleted = await watcher.updates(timeout=2)
        assert (deleted.key, deleted.operation) == ("a", "DEL")
        await watcher.stop()

        empty = await js.create_key_value(bucket="empty")
        with pytest.raises(NoKeysError):
            await empty.keys()
        await nc.close()

    run(main())


def test_object_store(js_server):
    async def main():
        nc, js = await connect(js_server)
        obs = await js.create_object_store("files")
        data = os.urandom(1024 * 1024 + 17)
        info = await obs.put("big.bin", data)
        assert info.name == "big.bin"
        assert info.size == len(data)
        assert info.chunks == 9  # 128 KiB chunks
        await obs.put("small.txt", b"hello")

        result = await obs.get("big.bin")
        assert result.data == data
        assert result.info.size == len(data)
        info = await obs.get_info("small.txt")
        assert info.size == 5
        assert (await obs.get("small.txt")).data == b"hello"
        names = sorted(i.name for i in await obs.list())
        assert names == ["big.bin", "small.txt"]

        await obs.delete("big.bin")
        with pytest.raises(ObjectNotFoundError):
            await obs.get_info("big.bin")
        names = [i.name for i in await obs.list(ignore_deletes=True)]
        assert names == ["small.txt"]
        # The chunks of the deleted object are purged.
        status = await obs.status()
        assert status.size < 1024
        await nc.close()

    run(main())


def test_work_queue_retention(js_server):
    async def main():
        nc, js = await connect(js_server)
        info = await js.add_stream(
            name="JOBS", subjects=["jobs.*"], retention=api.RetentionPolicy.WORK_QUEUE
        )
        assert info.config.retention == api.RetentionPolicy.WORK_QUEUE
        for i in range(4):
            await js.publish(f"jobs.{i % 2}", str(i).encode())
        psub = await js.pull_subscribe("jobs.*", durable="w")
        msgs = await psub.fetch(4, timeout=2)
        assert [m.data for m in msgs] == [b"0", b"1", b"2", b"3"]
        for m in msgs[:3]:
            await m.ack_sync(timeout=2)
        info = await js.stream_info("JOBS")
        assert info.state.messages == 1
        assert info.state.first_seq == 4
        # A second consumer overlapping the first is refused on a work queue.
        with pytest.raises(BadRequestError) as e:
            await js.add_consumer("JOBS", durable_name="w2", ack_policy=api.AckPolicy.EXPLICIT)
        assert e.value.err_code == 10099
        await msgs[3].ack_sync(timeout=2)
        info = await js.stream_info("JOBS")
        assert info.state.messages == 0
        await nc.close()

    run(main())


def test_limits_discard_new_and_per_subject(js_server):
    async def main():
        nc, js = await connect(js_server)
        await js.add_stream(
            name="LIM", subjects=["lim.>"], max_msgs=3, discard=api.DiscardPolicy.NEW
        )
        for i in range(3):
            await js.publish("lim.a", str(i).encode())
        with pytest.raises(APIError) as e:
            await js.publish("lim.a", b"over")
        assert e.value.err_code == 10077
        info = await js.stream_info("LIM")
        assert (info.state.messages, info.state.last_seq) == (3, 3)

        await js.add_stream(name="PER", subjects=["per.>"], max_msgs_per_subject=2)
        for i in range(5):
            await js.publish(f"per.{'a' if i < 3 else 'b'}", str(i).encode())
        info = await js.stream_info("PER", subjects_filter=">")
        assert info.state.messages == 4
        assert info.state.subjects == {"per.a": 2, "per.b": 2}
        assert (await js.get_msg("PER", 2)).data == b"1"
        with pytest.raises(NotFoundError):
            await js.get_msg("PER", 1)

        await js.add_stream(name="BYTES", subjects=["bytes"], max_msg_size=10)
        with pytest.raises(APIError) as e:
            await js.publish("bytes", b"x" * 11)
        assert e.value.err_code == 10054
        await nc.close()

    run(main())


def test_rollup_header(js_server):
    async def main():
        nc, js = await connect(js_server)
        await js.add_stream(name="ROLL", subjects=["roll.>"], allow_rollup_hdrs=True)
        for i in range(3):
            await js.publish("roll.a", str(i).encode())
            await js.publish("roll.b", str(i).encode())
        await js.publish("roll.a", b"snap", headers={"Nats-Rollup": "sub"})
        info = await js.stream_info("ROLL")
        assert info.state.messages == 4
        await js.publish("roll.b", b"all", headers={"Nats-Rollup": "all"})
        info = await js.stream_info("ROLL")
        assert info.state.messages == 1
        assert info.state.first_seq == 8
        await js.add_stream(name="NOROLL", subjects=["noroll"])
        with pytest.raises(APIError) as e:
            await js.publish("noroll", b"x", headers={"Nats-Rollup": "all"})
        assert e.value.err_code == 10111  # rollup not permitted
        await nc.close()

    run(main())


def test_consumer_deliver_policies_and_filters(js_server):
    async def main():
        nc, js = await connect(js_server)
        await orders_stream(js)
        for i in range(6):
            await js.publish(f"orders.{'a' if i % 2 else 'b'}", str(i).encode())

        async def first_data(**cfg):
            name = f"c{len(cfg)}{abs(hash(str(cfg))) % 10000}"
            psub = await js.pull_subscribe(
                cfg.pop("subject", "orders.>"), durable=name, config=api.ConsumerConfig(**cfg)
            )
            msgs = await psub.fetch(10, timeout=1)
            return [m.data for m in msgs]

        assert await first_data(subject="orders.a") == [b"1", b"3", b"5"]
        assert await first_data(deliver_policy=api.DeliverPolicy.LAST) == [b"5"]
        assert await first_data(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=4
        ) == [b"3", b"4", b"5"]
        assert await first_data(deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT) == [b"4", b"5"]
        psub = await js.pull_subscribe(
            "orders.>", durable="new", config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.NEW)
        )
        with pytest.raises(TimeoutError):
            await psub.fetch(1, timeout=0.3)
        await js.publish("orders.c", b"6")
        assert [m.data for m in await psub.fetch(1, timeout=1)] == [b"6"]

        # headers_only consumers deliver the size instead of the body.
        sub = await js.subscribe("orders.a", headers_only=True, deliver_policy=api.DeliverPolicy.ALL)
        msg = await sub.next_msg(timeout=2)
        assert msg.data == b""
        assert msg.headers["Nats-Msg-Size"] == "1"
        await nc.close()

    run(main())


def test_max_deliver_and_ack_all(js_server):
    async def main():
        nc, js = await connect(js_server)
        await orders_stream(js)
        await js.publish("orders.x", b"poison")
        psub = await js.pull_subscribe(
            "orders.>", durable="md", config=api.ConsumerConfig(max_deliver=2)
        )
        for n in (1, 2):
            (m,) = await psub.fetch(1, timeout=2)
            assert m.metadata.num_delivered == n
            await m.nak()
        with pytest.raises(TimeoutError):
            await psub.fetch(1, timeout=0.5)
        info = await psub.consumer_info()
        # Exhausted max_deliver: no longer pending. (The ack floor differs by version: nats-server
        # 2.9 leaves it at 0, later ones move it past the message; not asserted.)
        assert (info.num_ack_pending, info.num_redelivered, info.num_pending) == (0, 1, 0)
        assert (info.delivered.consumer_seq, info.delivered.stream_seq) == (2, 1)

        for i in range(3):
            await js.publish("orders.y", str(i).encode())
        psub = await js.pull_subscribe(
            "orders.y", durable="all", config=api.ConsumerConfig(ack_policy=api.AckPolicy.ALL)
        )
        msgs = await psub.fetch(3, timeout=2)
        assert len(msgs) == 3
        info = await psub.consumer_info()
        assert info.num_ack_pending == 3
        await msgs[2].ack_sync(timeout=2)
        info = await psub.consumer_info()
        assert info.num_ack_pending == 0
        assert info.ack_floor.stream_seq == 4
        await nc.close()

    run(main())


def test_consumer_errors(js_server):
    async def main():
        nc, js = await connect(js_server)
        await orders_stream(js)
        with pytest.raises(NotFoundError) as e:
            await js.add_consumer("MISSING", durable_name="x")
        assert e.value.err_code == 10059
        with pytest.raises(NotFoundError) as e:
            await js.delete_consumer("ORDERS", "nope")
        assert e.value.err_code == 10014
        await js.add_consumer("ORDERS", durable_name="dup", ack_policy=api.AckPolicy.EXPLICIT)
        # Same config again is fine; a different one is refused.
        await js.add_consumer("ORDERS", durable_name="dup", ack_policy=api.AckPolicy.EXPLICIT)
        with pytest.raises(APIError) as e:
            await js.add_consumer(
                "ORDERS", durable_name="dup", ack_policy=api.AckPolicy.EXPLICIT,
                filter_subject="orders.other",
                deliver_policy=api.DeliverPolicy.NEW,
            )
        assert e.value.err_code == 10012  # deliver policy can not be updated
        with pytest.raises(BadRequestError) as e:
            await js.add_consumer("ORDERS", durable_name="bad", filter_subject="elsewhere.>")
        assert e.value.err_code == 10093
        await nc.close()

    run(main())


def test_restart_keeps_streams_consumers_and_kv(js_server):
    async def before():
        nc, js = await connect(js_server)
        await orders_stream(js)
        for i in range(5):
            await js.publish("orders.x", str(i).encode(), headers={"Nats-Msg-Id": f"m{i}"})
        psub = await js.pull_subscribe("orders.>", durable="keep")
        msgs = await psub.fetch(3, timeout=2)
        for m in msgs[:2]:
            await m.ack_sync(timeout=2)
        kv = await js.create_key_value(bucket="state", history=3)
        await kv.put("k", b"v1")
        await kv.put("k", b"v2")
        await nc.close()

    async def after():
        nc, js = await connect(js_server)
        info = await js.stream_info("ORDERS")
        assert (info.state.messages, info.state.first_seq, info.state.last_seq) == (5, 1, 5)
        # The dedup window survives the restart.
        ack = await js.publish("orders.x", b"again", headers={"Nats-Msg-Id": "m4"})
        assert (ack.seq, ack.duplicate) == (5, True)
        info = await js.consumer_info("ORDERS", "keep")
        assert info.ack_floor.stream_seq == 2
        assert info.delivered.stream_seq == 3
        psub = await js.pull_subscribe_bind("keep", stream="ORDERS")
        # Message 3 was delivered and not acked: it comes again after the ack wait; 4 and 5 are new.
        msgs = await psub.fetch(2, timeout=2)
        assert [m.data for m in msgs] == [b"3", b"4"]
        kv = await js.key_value("state")
        entry = await kv.get("k")
        assert (entry.value, entry.revision) == (b"v2", 2)
        assert [e.value for e in await kv.history("k")] == [b"v1", b"v2"]
        await nc.close()

    run(before())
    js_server.stop()
    js_server.start()
    run(after())


def test_push_flow_control_heartbeats_and_fetch_heartbeat(js_server):
    async def main():
        nc, js = await connect(js_server)
        await orders_stream(js)
        payload = b"p" * 4096
        futures = [await js.publish_async("orders.bulk", payload) for _ in range(300)]
        await asyncio.wait_for(asyncio.gather(*futures), 5)
        sub = await js.subscribe(
            "orders.>", durable="fc", idle_heartbeat=0.5, flow_control=True, manual_ack=True
        )
        for i in range(300):
            msg = await sub.next_msg(timeout=2)
            assert msg.metadata.sequence.stream == i + 1
            await msg.ack()
        await nc.flush()
        info = await js.consumer_info("ORDERS", "fc")
        assert info.config.flow_control is True
        assert info.config.idle_heartbeat == 0.5
        assert info.delivered.stream_seq == 300

        psub = await js.pull_subscribe("orders.>", durable="hb")
        msgs = await psub.fetch(10, timeout=2, heartbeat=0.2)
        assert len(msgs) == 10
        await nc.close()

    run(main())


def test_max_age_and_ephemeral_inactive_threshold(js_server):
    async def main():
        nc, js = await connect(js_server)
        await js.add_stream(name="AGE", subjects=["age"], max_age=0.5)
        await js.publish("age", b"old")
        info = await js.stream_info("AGE")
        assert info.config.max_age == 0.5
        assert info.state.messages == 1
        deadline = asyncio.get_running_loop().time() + 3
        while (await js.stream_info("AGE")).state.messages and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        info = await js.stream_info("AGE")
        assert (info.state.messages, info.state.first_seq, info.state.last_seq) == (0, 2, 1)

        ci = await js.add_consumer("AGE", inactive_threshold=0.5, ack_policy=api.AckPolicy.EXPLICIT)
        assert ci.config.durable_name is None
        assert ci.config.inactive_threshold == 0.5
        deadline = asyncio.get_running_loop().time() + 3
        while asyncio.get_running_loop().time() < deadline:
            try:
                await js.consumer_info("AGE", ci.name)
            except NotFoundError:
                break
            except TypeError:
                # nats-server 2.9.10 can answer for a consumer it is just deleting with an
                # info of nulls, which nats.py cannot read; ask again.
                pass
            await asyncio.sleep(0.1)
        with pytest.raises(NotFoundError):
            await js.consumer_info("AGE", ci.name)
        await nc.close()

    run(main())
