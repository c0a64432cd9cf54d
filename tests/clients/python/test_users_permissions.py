"""Users, bcrypt passwords, NKeys, no_auth_user and permissions as nats.py sees them, against
natrix and nats-server started from the same configuration file."""

import asyncio

import nats
import nkeys
import pytest
from nats.errors import Error

from conftest import run

# An NKey user whose seed is fixed so that the configuration can name its public key.
SEED = b"SUAAAAICAMCAKBQHBAEQUCYMBUHA6EARCIJRIFIWC4MBSGQ3DQOR4H776Y"
PUBLIC = nkeys.from_seed(SEED).public_key.decode()
# bcrypt of "s3cret" at cost 4.
S3CRET_BCRYPT = "$2b$04$xaBmIBJnThhjuylTwyw4F.1cryKdT0kzLF/dc.PyqdD90eixfkoeW"

CONFIG = f"""
authorization {{
  users: [
    {{ user: alice, password: "{S3CRET_BCRYPT}" }}
    {{ user: bob, password: pw, permissions: {{
        publish: {{ allow: ["foo.>", "req"], deny: "foo.secret" }}
        subscribe: {{ allow: ["foo.*", "_INBOX.>"], deny: "foo.bar" }} }} }}
    {{ user: svc, password: pw, permissions: {{ subscribe: "req", allow_responses: true }} }}
    {{ nkey: {PUBLIC}, permissions: {{ publish: "nk.>", subscribe: "nk.>" }} }}
  ]
}}
"""


@pytest.fixture
def users_server(start_server, tmp_path):
    def start(extra: str = ""):
        path = tmp_path / "users.conf"
        path.write_text(extra + CONFIG)
        return start_server("-c", str(path))

    return start


async def refused(server, **kw):
    with pytest.raises(Error) as err:
        await nats.connect(server.url, allow_reconnect=False, connect_timeout=2, **kw)
    assert str(err.value) == "nats: 'Authorization Violation'"


def test_bcrypt_password_user(users_server):
    server = users_server()

    async def main():
        nc = await nats.connect(server.url, user="alice", password="s3cret", allow_reconnect=False)
        await nc.flush()
        await nc.close()
        await refused(server, user="alice", password="nope")
        await refused(server, user="alice", password=S3CRET_BCRYPT)

    run(main())


def test_nkey_user_signs_the_nonce(users_server, tmp_path):
    server = users_server()
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(SEED)

    async def main():
        nc = await nats.connect(server.url, nkeys_seed=str(seed_file), allow_reconnect=False)
        sub = await nc.subscribe("nk.echo")
        await nc.publish("nk.echo", b"signed")
        assert (await sub.next_msg(2)).data == b"signed"
        await nc.close()
        other = tmp_path / "other.nk"
        other.write_bytes(nkeys.encode_seed(bytes(32), nkeys.PREFIX_BYTE_USER))
        await refused(server, nkeys_seed=str(other))

    run(main())


def test_permission_violations_reach_the_error_callback(users_server):
    server = users_server()

    async def main():
        errors = []

        async def error_cb(e):
            errors.append(str(e))

        nc = await nats.connect(
            server.url, user="bob", password="pw", error_cb=error_cb, allow_reconnect=False
        )
        await nc.publish("foo.secret", b"x")
        await nc.subscribe("foo.bar")
        await nc.flush()
        for _ in range(50):
            if len(errors) >= 2:
                break
            await asyncio.sleep(0.05)
        # nats.py turns the server's -ERR into its own lower-case wording.
        assert errors == [
            'nats: permissions violation for publish to "foo.secret"',
            'nats: permissions violation for subscription to "foo.bar"',
        ], errors
        # The connection stays open and allowed traffic flows.
        sub = await nc.subscribe("foo.*")
        await nc.publish("foo.bar", b"denied on delivery")
        await nc.publish("foo.baz", b"allowed")
        msg = await sub.next_msg(2)
        assert (msg.subject, msg.data) == ("foo.baz", b"allowed")
        assert nc.is_connected
        await nc.close()

    run(main())


def test_a_service_may_answer_requests_it_received(users_server):
    server = users_server()

    async def main():
        svc = await nats.connect(server.url, user="svc", password="pw", allow_reconnect=False)

        async def answer(msg):
            await msg.respond(b"pong:" + msg.data)

        await svc.subscribe("req", cb=answer)
        await svc.flush()
        bob = await nats.connect(server.url, user="bob", password="pw", allow_reconnect=False)
        reply = await bob.request("req", b"ping", timeout=2)
        assert reply.data == b"pong:ping"
        await bob.close()
        await svc.close()

    run(main())


def test_no_auth_user_connects_clients_without_credentials(users_server):
    server = users_server("no_auth_user: bob\n")

    async def main():
        nc = await nats.connect(server.url, allow_reconnect=False)
        assert not nc._server_info.get("auth_required", False)
        sub = await nc.subscribe("foo.a")
        await nc.publish("foo.a", b"as bob")
        assert (await sub.next_msg(2)).data == b"as bob"
        await nc.close()
        await refused(server, user="bob", password="wrong")

    run(main())
