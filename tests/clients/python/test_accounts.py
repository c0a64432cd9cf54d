"""One configured account with JetStream account limits, as nats.py sees it: the account's user
logs in and uses JetStream, and past max_streams, max_consumers, max_ack_pending and max_file the
API and the publish acks answer nats-server's error codes; an account defined without
`jetstream` gets 10039 for every request. natrix and nats-server start from the same file."""

import nats
import pytest
from nats.js import api
from nats.js.errors import APIError, BadRequestError, ServerError, ServiceUnavailableError

from conftest import run

LIMITS = "max_streams: 2, max_consumers: 1, max_file: 1MB, max_mem: 512KB, max_ack_pending: 100"


@pytest.fixture
def account_server(start_server, tmp_path):
    """Starts a server whose only account APP (user a, password a) has the given JetStream
    limits, or no `jetstream` at all when limits is None; JetStream is enabled on the server."""

    def start(limits=LIMITS):
        jetstream = "" if limits is None else f"jetstream: {{ {limits} }}"
        path = tmp_path / "accounts.conf"
        path.write_text(
            f'jetstream {{ store_dir: "{tmp_path / "jetstream"}" }}\n'
            "accounts {\n"
            "  APP: {\n"
            f"    {jetstream}\n"
            "    users: [ {user: a, password: a} ]\n"
            "  }\n"
            "}\n"
        )
        return start_server("-c", str(path))

    return start


async def connect(server):
    nc = await nats.connect(server.url, user="a", password="a", allow_reconnect=False)
    return nc, nc.jetstream(timeout=3)


def test_the_account_user_uses_jetstream_within_its_limits(account_server):
    server = account_server()

    async def main():
        nc, js = await connect(server)
        info = await js.account_info()
        limits = info.limits
        assert (limits.max_streams, limits.max_consumers, limits.max_ack_pending) == (2, 1, 100)
        assert (limits.max_storage, limits.max_memory) == (1024 * 1024, 512 * 1024)
        assert (info.streams, info.consumers) == (0, 0)

        await js.add_stream(name="ORDERS", subjects=["orders.>"])
        ack = await js.publish("orders.1", b"first")
        assert (ack.stream, ack.seq) == ("ORDERS", 1)
        sub = await js.pull_subscribe("orders.>", "worker")
        [msg] = await sub.fetch(1, timeout=2)
        assert msg.data == b"first"
        await msg.ack()
        info = await js.account_info()
        assert (info.streams, info.consumers) == (1, 1)
        await nc.close()

    run(main())


def test_a_stream_past_max_streams_is_refused(account_server):
    server = account_server()

    async def main():
        nc, js = await connect(server)
        await js.add_stream(name="S1", subjects=["s1"])
        await js.add_stream(name="S2", subjects=["s2"])
        with pytest.raises(BadRequestError) as e:
            await js.add_stream(name="S3", subjects=["s3"])
        assert (e.value.code, e.value.err_code) == (400, 10027)
        assert e.value.description == "maximum number of streams reached"
        # Deleting a stream frees its place.
        await js.delete_stream("S2")
        await js.add_stream(name="S3", subjects=["s3"])
        assert sorted(s.config.name for s in await js.streams_info()) == ["S1", "S3"]
        await nc.close()

    run(main())


def test_max_consumers_caps_each_stream(account_server):
    server = account_server()

    async def main():
        nc, js = await connect(server)
        await js.add_stream(name="S1", subjects=["s1"])
        await js.add_stream(name="S2", subjects=["s2"])
        await js.add_consumer("S1", durable_name="c1", ack_policy=api.AckPolicy.EXPLICIT)
        with pytest.raises(BadRequestError) as e:
            await js.add_consumer("S1", durable_name="c2", ack_policy=api.AckPolicy.EXPLICIT)
        assert (e.value.code, e.value.err_code) == (400, 10026)
        assert e.value.description == "maximum consumers limit reached"
        # The cap is per stream, as in nats-server: another stream still takes one.
        await js.add_consumer("S2", durable_name="c2", ack_policy=api.AckPolicy.EXPLICIT)
        assert (await js.account_info()).consumers == 2
        await nc.close()

    run(main())


def test_max_ack_pending_defaults_to_and_is_capped_by_the_account(account_server):
    server = account_server()

    async def main():
        nc, js = await connect(server)
        await js.add_stream(name="S1", subjects=["s1"])
        await js.add_stream(name="S2", subjects=["s2"])
        with pytest.raises(BadRequestError) as e:
            await js.add_consumer(
                "S1", durable_name="greedy", ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=101
            )
        assert (e.value.code, e.value.err_code) == (400, 10121)
        assert e.value.description == "consumer max ack pending exceeds system limit of 100"
        info = await js.add_consumer("S1", durable_name="plain", ack_policy=api.AckPolicy.EXPLICIT)
        assert info.config.max_ack_pending == 100
        info = await js.add_consumer(
            "S2", durable_name="modest", ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=50
        )
        assert info.config.max_ack_pending == 50
        await nc.close()

    run(main())


def test_a_stream_reserving_more_than_max_file_is_refused(account_server):
    server = account_server()

    async def main():
        nc, js = await connect(server)
        # nats-server answers this one with code 500, which nats.py raises as ServerError.
        with pytest.raises(ServerError) as e:
            await js.add_stream(name="BIG", subjects=["big"], max_bytes=2 * 1024 * 1024)
        assert (e.value.code, e.value.err_code) == (500, 10047)
        assert e.value.description == "insufficient storage resources available"
        info = await js.add_stream(name="FITS", subjects=["fits"], max_bytes=1024 * 1024)
        assert info.config.max_bytes == 1024 * 1024
        await nc.close()

    run(main())


def test_a_publish_past_max_file_gets_10002(account_server, kind):
    server = account_server("max_file: 2000, max_mem: 1000")

    async def main():
        nc, js = await connect(server)
        await js.add_stream(name="FILE", subjects=["file"])
        payload = b"x" * 200
        stored = 0
        with pytest.raises(APIError) as e:
            for _ in range(20):
                await js.publish("file", payload)
                stored += 1
        assert (e.value.code, e.value.err_code) == (400, 10002)
        assert e.value.description == "resource limits exceeded for account"
        # A file-store message counts 4 (subject) + 200 (payload) + 30 bytes: eight fit in 2,000.
        assert stored == 8
        await js.publish("file", b"")  # an empty message fits in what is left
        with pytest.raises(APIError) as e:
            await js.publish("file", payload)
        assert e.value.err_code == 10002
        info = await js.stream_info("FILE")
        assert info.state.messages == 9
        # A known difference: nats-server 2.9.10 stores a refused message and deletes it again,
        # so each refusal uses a sequence (last_seq and num_deleted grow, the next accepted
        # publish skips them); natrix refuses before storing and uses none.
        refused_sequences = {"natrix": 0, "nats-server": 2}[kind]
        assert info.state.last_seq == 9 + refused_sequences
        assert (info.state.num_deleted or 0) == refused_sequences
        await nc.close()

    run(main())


def test_an_account_without_jetstream_gets_10039(account_server):
    server = account_server(None)

    async def main():
        nc, js = await connect(server)
        for request in (js.account_info(), js.add_stream(name="S", subjects=["s"])):
            with pytest.raises(ServiceUnavailableError) as e:
                await request
            assert (e.value.code, e.value.err_code) == (503, 10039)
            assert e.value.description == "JetStream not enabled for account"
        # Core messaging is unaffected.
        sub = await nc.subscribe("core")
        await nc.publish("core", b"hi")
        assert (await sub.next_msg(2)).data == b"hi"
        await nc.close()

    run(main())
