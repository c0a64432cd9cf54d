"""Server limits, server-side errors and protocol corners, seen through nats.py."""

import asyncio
import time

import nats
import pytest
from nats.errors import NoServersError, TimeoutError

from conftest import run


def config(tmp_path, text):
    conf = tmp_path / "server.conf"
    conf.write_text(text)
    return str(conf)


async def closed_with_error(server, action, **kw):
    """Runs `action(nc)` on a fresh connection and returns nats.py's last_error once it closes."""
    closed = asyncio.Event()

    async def closed_cb():
        closed.set()

    nc = await nats.connect(server.url, allow_reconnect=False, closed_cb=closed_cb, **kw)
    await action(nc)
    try:
        await nc.flush(timeout=2)
    except Exception:
        pass
    await asyncio.wait_for(closed.wait(), 3)
    return str(nc.last_error)


def test_payload_over_the_server_limit_is_refused_by_the_server(server):
    async def main():
        async def oversize(nc):
            nc._max_payload = 10 * 1024 * 1024  # get past nats.py's own check
            await nc.publish("big", b"z" * (1024 * 1024 + 1))

        assert await closed_with_error(server, oversize) == "nats: maximum payload violation"

    run(main())


def test_pedantic_publish_to_an_invalid_subject(server):
    async def main():
        async def bad_publish(nc):
            await nc.publish("foo..bar", b"still delivered")

        err = await closed_with_error(server, bad_publish, pedantic=True, skip_subject_validation=True)
        assert err == "nats: invalid publish subject"

    run(main())


def test_max_subscriptions(start_server, tmp_path):
    server = start_server("-c", config(tmp_path, "max_subscriptions: 3\n"))

    async def main():
        async def four(nc):
            for i in range(4):
                await nc.subscribe(f"s.{i}")

        assert await closed_with_error(server, four) == "nats: maximum subscriptions exceeded"

    run(main())


def test_max_connections(start_server, tmp_path):
    server = start_server("-c", config(tmp_path, "max_connections: 2\n"))

    async def main():
        a = await nats.connect(server.url, allow_reconnect=False)
        b = await nats.connect(server.url, allow_reconnect=False)
        # Both servers send INFO, -ERR and close at once; the client's CONNECT may race the close
        # into a reset that hides the -ERR, so either outcome is a refusal.
        with pytest.raises((nats.errors.Error, ConnectionResetError)) as err:
            await nats.connect(server.url, allow_reconnect=False, connect_timeout=2)
        if isinstance(err.value, nats.errors.Error):
            assert str(err.value) == "nats: 'maximum connections exceeded'"
        await a.close()
        await asyncio.sleep(0.1)
        c = await nats.connect(server.url, allow_reconnect=False)
        assert c.is_connected
        await b.close()
        await c.close()

    run(main())


def test_server_pings_are_answered_by_the_client(start_server, tmp_path):
    server = start_server("-c", config(tmp_path, 'ping_interval: "100ms"\nping_max: 1\n'))

    async def main():
        nc = await nats.connect(server.url, allow_reconnect=False)
        sub = await nc.subscribe("alive")
        await asyncio.sleep(1)
        assert nc.is_connected
        await nc.publish("alive", b"yes")
        assert (await sub.next_msg(1)).data == b"yes"
        await nc.close()

    run(main())


def test_client_pings_keep_the_connection(server):
    async def main():
        nc = await nats.connect(server.url, allow_reconnect=False, ping_interval=0.1, max_outstanding_pings=2)
        await asyncio.sleep(0.7)
        assert nc.is_connected
        assert nc.stats["reconnects"] == 0
        await nc.close()

    run(main())


def test_utf8_subjects_and_queue_names(server):
    async def main():
        nc = await nats.connect(server.url, allow_reconnect=False)
        sub = await nc.subscribe("grüße.*", queue="wörker")
        await nc.publish("grüße.日本", "ok".encode())
        msg = await sub.next_msg(2)
        assert (msg.subject, msg.data) == ("grüße.日本", b"ok")
        await nc.close()

    run(main())


def test_message_order_and_count_under_load(server):
    async def main():
        sub_nc = await nats.connect(server.url, allow_reconnect=False)
        count = 0
        order_ok = True
        done = asyncio.Event()

        async def cb(msg):
            nonlocal count, order_ok
            order_ok &= int(msg.data) == count
            count += 1
            if count == 20000:
                done.set()

        await sub_nc.subscribe("load", cb=cb, pending_msgs_limit=100000)
        await sub_nc.flush()
        pub = await nats.connect(server.url, allow_reconnect=False)
        for i in range(20000):
            await pub.publish("load", b"%d" % i)
        await pub.flush()
        await asyncio.wait_for(done.wait(), 10)
        assert order_ok
        await pub.close()
        await sub_nc.close()

    run(main(), timeout=30)


def test_dead_server_in_the_pool_is_skipped(start_server):
    dead = start_server()
    dead.stop()
    live = start_server()

    async def main():
        nc = await nats.connect(
            [dead.url, live.url], dont_randomize=True, max_reconnect_attempts=1, reconnect_time_wait=0.05
        )
        assert nc.connected_url.port == live.port
        await nc.close()

    run(main())


def test_server_shutdown_closes_a_client_without_reconnect(start_server):
    server = start_server()

    async def main():
        closed = asyncio.Event()

        async def closed_cb():
            closed.set()

        nc = await nats.connect(server.url, allow_reconnect=False, closed_cb=closed_cb)
        sub = await nc.subscribe("bye")
        await asyncio.to_thread(server.stop)
        await asyncio.wait_for(closed.wait(), 5)
        assert nc.is_closed
        with pytest.raises(nats.errors.ConnectionClosedError):
            await nc.publish("bye", b"")
        with pytest.raises((nats.errors.ConnectionClosedError, TimeoutError)):
            await sub.next_msg(0.1)

    run(main())


def test_request_reply_across_many_clients(server):
    async def main():
        responders = [await nats.connect(server.url, allow_reconnect=False) for _ in range(3)]
        for i, r in enumerate(responders):

            async def answer(msg, i=i):
                await msg.respond(b"%d:" % i + msg.data)

            await r.subscribe("calc", queue="calc", cb=answer)
            await r.flush()
        clients = [await nats.connect(server.url, allow_reconnect=False) for _ in range(5)]
        started = time.monotonic()
        replies = await asyncio.gather(
            *(c.request("calc", b"%d" % n, timeout=3) for c in clients for n in range(40))
        )
        assert time.monotonic() - started < 5
        assert sorted(r.data.split(b":")[1] for r in replies) == sorted(b"%d" % n for _ in clients for n in range(40))
        for c in clients + responders:
            await c.close()

    run(main())
