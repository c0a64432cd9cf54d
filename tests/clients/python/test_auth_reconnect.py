"""Authentication and reconnection as nats.py sees them."""

import asyncio

import nats
import pytest
from nats.errors import Error, NoServersError

from conftest import run


async def refused(server, **kw):
    """Connects expecting a refusal; returns the exception nats.py raised."""
    with pytest.raises(Error) as err:
        await nats.connect(server.url, allow_reconnect=False, connect_timeout=2, **kw)
    return err.value


def test_user_and_password(start_server):
    server = start_server("--user", "alice", "--pass", "s3cret")

    async def main():
        nc = await nats.connect(server.url, user="alice", password="s3cret", allow_reconnect=False)
        assert nc._server_info["auth_required"] is True
        sub = await nc.subscribe("auth.ok")
        await nc.publish("auth.ok", b"in")
        assert (await sub.next_msg(2)).data == b"in"
        await nc.close()
        nc = await nats.connect(f"nats://alice:s3cret@127.0.0.1:{server.port}", allow_reconnect=False)
        await nc.close()

        wrong = await refused(server, user="alice", password="nope")
        missing = await refused(server)
        for err in (wrong, missing):
            assert type(err) is Error
            assert str(err) == "nats: 'Authorization Violation'"

    run(main())


def test_token(start_server):
    server = start_server("--auth", "t0ken")

    async def main():
        nc = await nats.connect(server.url, token="t0ken", allow_reconnect=False)
        await nc.flush()
        await nc.close()
        nc = await nats.connect(f"nats://t0ken@127.0.0.1:{server.port}", allow_reconnect=False)
        await nc.close()
        err = await refused(server, token="wrong")
        assert type(err) is Error
        assert str(err) == "nats: 'Authorization Violation'"

    run(main())


def test_bad_credentials_with_reconnect_enabled_give_no_servers(start_server):
    server = start_server("--user", "alice", "--pass", "s3cret")

    async def main():
        errors = []

        async def error_cb(e):
            errors.append(e)

        with pytest.raises(NoServersError):
            await nats.connect(
                server.url,
                user="alice",
                password="nope",
                max_reconnect_attempts=1,
                reconnect_time_wait=0.05,
                error_cb=error_cb,
            )
        # Each attempt is refused; nats-server's close can race the client's PING into a reset.
        assert any("Authorization Violation" in str(e) for e in errors)
        assert all("Authorization Violation" in str(e) or isinstance(e, OSError) for e in errors)

    run(main())


def test_client_reconnects_and_resubscribes_after_server_restart(start_server):
    server = start_server()

    async def main():
        disconnected = asyncio.Event()
        reconnected = asyncio.Event()

        async def on_disconnect():
            disconnected.set()

        async def on_reconnect():
            reconnected.set()

        nc = await nats.connect(
            server.url,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            reconnect_time_wait=0.1,
            max_reconnect_attempts=100,
        )
        got = []

        async def cb(msg):
            got.append(msg.data)

        await nc.subscribe("survive.>", cb=cb)
        queued = await nc.subscribe("survive.q", queue="g")

        async def responder(msg):
            await msg.respond(b"pong")

        await nc.subscribe("survive.svc", cb=responder)
        await nc.publish("survive.a", b"before")
        await nc.flush()
        first_id = nc._server_info["server_id"]

        await asyncio.to_thread(server.stop)
        await asyncio.wait_for(disconnected.wait(), 5)
        await nc.publish("survive.a", b"while down")  # buffered by nats.py, sent on reconnect
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(reconnected.wait(), 10)

        assert nc.is_connected
        assert nc._server_info["server_id"] != first_id  # a new server process answered
        await nc.publish("survive.a", b"after")
        await nc.publish("survive.q", b"queued")
        await nc.flush()
        assert (await queued.next_msg(2)).data == b"queued"
        reply = await nc.request("survive.svc", b"ping", timeout=2)
        assert reply.data == b"pong"

        other = await nats.connect(server.url, allow_reconnect=False)
        await other.publish("survive.b", b"from another client")
        await other.flush()
        await asyncio.sleep(0.1)
        assert got[0] == b"before"
        assert b"while down" in got and b"after" in got and b"from another client" in got
        await other.close()
        await nc.close()

    run(main(), timeout=30)



def test_reconnect_resends_credentials(start_server):
    server = start_server("--user", "alice", "--pass", "s3cret")

    async def main():
        reconnected = asyncio.Event()

        async def on_reconnect():
            reconnected.set()

        nc = await nats.connect(
            server.url,
            user="alice",
            password="s3cret",
            reconnected_cb=on_reconnect,
            reconnect_time_wait=0.1,
            max_reconnect_attempts=100,
        )
        sub = await nc.subscribe("auth.again")
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(reconnected.wait(), 10)
        await nc.publish("auth.again", b"still me")
        assert (await sub.next_msg(2)).data == b"still me"
        await nc.close()

    run(main(), timeout=30)
