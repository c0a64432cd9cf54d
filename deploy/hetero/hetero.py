#!/usr/bin/env python3
"""The heterogeneous-architecture cluster test: one natrix cluster of an x86_64, an aarch64 and an
armv7 node on loopback (deploy/hetero/run.sh builds the binaries and runs this).

The Arm nodes run under QEMU user-mode emulation (`qemu-aarch64-static <bin>`, without -L: with
libc6:arm64 installed, -L hangs every program that starts a thread; `qemu-arm-static -L
/usr/arm-linux-gnueabihf <bin>`). Each node has its own config file, store, ports and log.

Steps, each with a deadline (any violation makes the exit status 1):
  1. start the three nodes, wait for every /healthz;
  2. every node reports its automatic architecture tag in /varz `tags`;
  3. placement: an R1 stream with `placement.tags: ["arch:<a>"]` lands on the node of arch <a>
     (stream leader, and only that node holds it in /jsz), takes a message and gives it back;
     an R3 stream with one arch tag is refused with nats-server's error (10005, text below);
  4. an R3 stream (`allow_direct`) takes acknowledged publishes through every node (one client
     per node, each message with a unique id in payload and `Nats-Msg-Id`, a publish with an
     unknown outcome retried with the same id); every ack is recorded (id, seq, time);
  5. the stream leader is SIGKILLed while publishing goes on; the survivors must agree on a new
     leader and a publish sent after the kill must be acknowledged; the killed node is restarted
     on the same store and must catch up (its own /jsz) with what the stream held at its restart;
  6. publishing stops; every node's /jsz must show the same state as the leader's STREAM.INFO;
  7. every replica's copy is read in full: natrix answers `$JS.API.DIRECT.GET` on the stream
     leader only (`jetstream/api.rs` routes DIRECT.GET like STREAM.MSG.GET to the leader; the
     leader reads its own store), so leadership is moved to each node in turn with
     `$JS.API.STREAM.LEADER.STEPDOWN` (the target among the up-to-date voters is random, so
     repeated step-downs reach every node) and the stream is read through that node, its
     leadership checked before and after the read. Raw NATS protocol is used for the reads, so
     the header block is compared byte for byte: subject, headers (the message's own and the
     Nats-Stream/-Subject/-Sequence/-Time-Stamp lines), payload and sequence of every message
     must be identical on the three nodes; every acknowledged message must be present exactly
     once, at its acknowledged sequence, with the payload and subject it was published with.

Prints a summary and writes it as JSON (--result). Every started node is killed on exit; the pids
are also kept in <workdir>/pids for run.sh's trap.
"""

import argparse
import asyncio
import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import nats

STREAM = "HETERO"
SUBJECT_PREFIX = "hetero"
CLUSTER = "hetero"
# nats-server 2.9.10's answer to an R3 stream whose placement tag only one node carries (checked
# against the reference server of scripts/install-test-deps.sh, three nodes with server_tags).
PLACEMENT_REFUSAL_CODE = 10005
PLACEMENT_REFUSAL_TEXT = "no suitable peers for placement, tags not matched ['{tag}']"
DIRECT_GET_HEADERS = (b"Nats-Stream:", b"Nats-Subject:", b"Nats-Sequence:", b"Nats-Time-Stamp:")

T0 = time.monotonic()


def now() -> float:
    """Seconds since the test started."""
    return time.monotonic() - T0


def log(text: str) -> None:
    print(f"hetero: [{now():7.1f} s] {text}", flush=True)


class Violation(Exception):
    pass


# --- nodes -----------------------------------------------------------------------------------

class Node:
    def __init__(self, index: int, arch: str, binary: str, ports: tuple, workdir: str, routes: list):
        self.arch = arch
        self.name = f"n{index + 1}-{arch}"
        self.client_port, self.cluster_port, self.http_port = ports
        self.dir = os.path.join(workdir, self.name)
        self.store = os.path.join(self.dir, "store")
        self.config = os.path.join(self.dir, "server.conf")
        self.log = os.path.join(self.dir, "server.log")
        self.pidfile = os.path.join(workdir, "pids")
        self.proc = None
        os.makedirs(self.store, exist_ok=True)
        if arch == "aarch64":
            self.command = ["qemu-aarch64-static", binary]
        elif arch == "armv7":
            self.command = ["qemu-arm-static", "-L", "/usr/arm-linux-gnueabihf", binary]
        else:
            self.command = [binary]
        route_lines = "".join(f'    "nats-route://127.0.0.1:{p}"\n' for p in routes)
        with open(self.config, "w") as f:
            f.write(
                f'server_name: "{self.name}"\n'
                f'listen: "127.0.0.1:{self.client_port}"\n'
                f'http: "127.0.0.1:{self.http_port}"\n'
                f'jetstream {{\n  store_dir: "{self.store}"\n}}\n'
                f'cluster {{\n  name: "{CLUSTER}"\n  listen: "127.0.0.1:{self.cluster_port}"\n'
                f"  routes: [\n{route_lines}  ]\n}}\n"
            )

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            out.write(f"==== hetero: start {self.name} at {now():.1f} s: {' '.join(self.command)} "
                      f"-c {self.config}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.command + ["-c", self.config],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # a ^C to run.sh reaches this script, which stops the nodes
            )
        with open(self.pidfile, "a") as f:
            f.write(f"{self.proc.pid}\n")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (for a QEMU node the emulator is the process: the program dies with it)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None

    def tail(self, lines: int = 30) -> str:
        try:
            with open(self.log, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_ports(first: int, last: int, count: int) -> list:
    """`count` consecutive free loopback ports in [first, last], probed in blocks of 10."""
    for base in range(first, last - count + 2, 10):
        ports = list(range(base, base + count))
        if all(port_free(p) for p in ports):
            return ports
    raise SystemExit(f"hetero: no {count} free consecutive ports in {first}-{last}")


def http_json(node: Node, path: str, timeout: float = 5):
    with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}{path}", timeout=timeout) as r:
        return json.load(r)


def healthy(node: Node) -> bool:
    try:
        return http_json(node, "/healthz", 3).get("status") == "ok"
    except Exception:
        return False


async def wait_healthy(nodes: list, deadline: float, what: str) -> None:
    while True:
        for n in nodes:
            if not n.running():
                raise Violation(f"{n.name} exited during {what}; log tail:\n{n.tail()}")
        if all(healthy(n) for n in nodes):
            return
        if time.monotonic() > deadline:
            bad = [n.name for n in nodes if not healthy(n)]
            raise Violation(f"{what}: {bad} not healthy before the deadline")
        await asyncio.sleep(0.5)


def local_state(node: Node, stream: str):
    """The node's own copy of `stream` from its /jsz (answered locally), or None."""
    try:
        jsz = http_json(node, "/jsz?streams=true", 5)
    except Exception:
        return None
    for account in jsz.get("account_details", []):
        for s in account.get("stream_detail", []):
            if s.get("name") == stream:
                st = s["state"]
                return {k: st.get(k) for k in ("messages", "bytes", "first_seq", "last_seq")}
    return "absent"


# --- NATS clients ----------------------------------------------------------------------------

async def quiet(_err) -> None:
    """Reconnect errors are expected while a node is down; the counters tell the story."""


async def connect(servers: list, deadline: float, reconnect: bool = True):
    last = None
    while time.monotonic() < deadline:
        try:
            return await nats.connect(
                servers=servers, dont_randomize=True, error_cb=quiet, connect_timeout=3,
                allow_reconnect=reconnect, reconnect_time_wait=0.2,
                max_reconnect_attempts=1000,  # bounded: 1000 rounds over the servers
                ping_interval=5, max_outstanding_pings=3,
            )
        except Exception as e:
            last = e
            await asyncio.sleep(0.5)
    raise Violation(f"cannot connect to {servers}: {last!r}")


async def api(nc, subject: str, body, timeout: float = 10) -> dict:
    data = b"" if body is None else json.dumps(body).encode()
    msg = await nc.request(subject, data, timeout=timeout)
    return json.loads(msg.data)


async def api_retry(nc, subject: str, body, deadline: float, what: str) -> dict:
    """An API call repeated until it answers without error (leaders may be moving)."""
    last = None
    while time.monotonic() < deadline:
        try:
            reply = await api(nc, subject, body)
            if "error" not in reply:
                return reply
            last = reply["error"]
        except Exception as e:
            last = repr(e)
        await asyncio.sleep(0.5)
    raise Violation(f"{what} failed before the deadline (last: {last})")


class RawClient:
    """A minimal NATS protocol client for direct gets: keeps the reply's header block as bytes
    (nats-py turns headers into a dict). Requests are pipelined, `window` in flight."""

    def __init__(self, port: int):
        self.port = port
        self.reader = None
        self.writer = None
        self.pending: dict = {}
        self.inbox = f"_INBOX.hetero{random.randrange(1 << 30)}"
        self.task = None

    async def connect(self, timeout: float = 10) -> None:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port), timeout)
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        if not line.startswith(b"INFO "):
            raise Violation(f"port {self.port}: expected INFO, got {line[:80]!r}")
        connect = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True,
                   "protocol": 1, "lang": "python-raw", "version": "0"}
        self.writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        await self.writer.drain()
        while True:
            line = await asyncio.wait_for(self.reader.readline(), timeout)
            if line.startswith(b"PONG"):
                break
            if line.startswith(b"-ERR"):
                raise Violation(f"port {self.port}: {line!r}")
        self.writer.write(f"SUB {self.inbox}.* 1\r\nPING\r\n".encode())
        await self.writer.drain()
        self.task = asyncio.create_task(self.read_loop())

    async def read_loop(self) -> None:
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    break
                parts = line.split()
                if not parts:
                    continue
                op = parts[0].upper()
                if op == b"PING":
                    self.writer.write(b"PONG\r\n")
                elif op in (b"MSG", b"HMSG"):
                    subject = parts[1].decode()
                    if op == b"HMSG":
                        hlen, tlen = int(parts[-2]), int(parts[-1])
                    else:
                        hlen, tlen = 0, int(parts[-1])
                    body = await self.reader.readexactly(tlen + 2)
                    fut = self.pending.pop(subject, None)
                    if fut is not None and not fut.done():
                        fut.set_result((body[:hlen], body[hlen:tlen]))
                elif op == b"-ERR":
                    log(f"raw client on {self.port}: {line.strip()!r}")
        finally:
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("connection closed"))

    async def request(self, subject: str, payload: bytes, timeout: float):
        reply = f"{self.inbox}.{random.randrange(1 << 40)}"
        fut = asyncio.get_running_loop().create_future()
        self.pending[reply] = fut
        self.writer.write(f"PUB {subject} {reply} {len(payload)}\r\n".encode() + payload + b"\r\n")
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.pending.pop(reply, None)

    async def close(self) -> None:
        if self.task:
            self.task.cancel()
        if self.writer:
            self.writer.close()


def status_of(headers: bytes):
    """The status code of a reply's header block (`NATS/1.0 404 ...`), or None."""
    first = headers.split(b"\r\n", 1)[0].split()
    return int(first[1]) if len(first) > 1 and first[1].isdigit() else None


# --- messages --------------------------------------------------------------------------------

def payload_of(msg_id: str) -> bytes:
    """Deterministic content of message `msg_id`: the id, then 0-2047 pseudo-random bytes (any
    byte value, CR/LF included), so a copy can be checked against what was published."""
    rng = random.Random(msg_id)
    return msg_id.encode() + b"|" + rng.randbytes(rng.randrange(2048))


def subject_of(msg_id: str) -> str:
    return f"{SUBJECT_PREFIX}.{msg_id.split('-')[0]}.{sum(msg_id.encode()) % 8}"


class Publishers:
    """One client per node (that node first in its server list, so it fails over when its node
    dies), `concurrency` publishes in flight each. Acks: id -> (seq, ack time, send time of the
    acknowledged attempt, server it went through, duplicate flag)."""

    def __init__(self, nodes: list, concurrency: int, ack_timeout: float, retry_seconds: float):
        self.nodes = nodes
        self.concurrency = concurrency
        self.ack_timeout = ack_timeout
        self.retry_seconds = retry_seconds
        self.acks: dict = {}
        self.attempted = 0
        self.retries = 0
        self.gave_up: list = []
        self.errors: dict = {}
        self.dup_flags = 0
        self.stop = asyncio.Event()
        self.clients = []
        self.tasks = []

    async def start(self, deadline: float) -> None:
        for i, node in enumerate(self.nodes):
            others = [n.url for n in self.nodes if n is not node]
            nc = await connect([node.url] + others, deadline)
            self.clients.append(nc)
            for w in range(self.concurrency):
                self.tasks.append(asyncio.create_task(self.worker(nc, f"p{i + 1}", w)))

    async def worker(self, nc, publisher: str, w: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            msg_id = f"{publisher}w{w}-{n}"
            self.attempted += 1
            await self.publish_one(nc, msg_id)

    async def publish_one(self, nc, msg_id: str) -> None:
        data = payload_of(msg_id)
        headers = {"Nats-Msg-Id": msg_id, "Hetero-Publisher": msg_id.split("w")[0]}
        give_up_at = time.monotonic() + self.retry_seconds
        attempt = 0
        while time.monotonic() < give_up_at:
            attempt += 1
            sent = now()
            try:
                msg = await nc.request(subject_of(msg_id), data, timeout=self.ack_timeout,
                                       headers=headers)
                ack = json.loads(msg.data)
                if "error" in ack or "seq" not in ack:
                    raise RuntimeError(f"api error {ack.get('error', {}).get('err_code')}")
            except Exception as e:
                name = str(e) if isinstance(e, RuntimeError) else type(e).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
                self.retries += 1
                await asyncio.sleep(min(0.5, 0.05 * attempt))
                continue
            dup = bool(ack.get("duplicate"))
            self.dup_flags += dup
            url = nc.connected_url
            via = url.port if url else None
            self.acks[msg_id] = (ack["seq"], now(), sent, via, dup)
            return
        self.gave_up.append(msg_id)

    async def finish(self, timeout: float) -> None:
        self.stop.set()
        done, pending = await asyncio.wait(self.tasks, timeout=timeout)
        for t in pending:
            t.cancel()
        for nc in self.clients:
            try:
                await asyncio.wait_for(nc.close(), 5)
            except Exception:
                pass

    def acks_after(self, t: float) -> int:
        return sum(1 for a in self.acks.values() if a[1] >= t)

    def first_ack_sent_after(self, t: float):
        """The earliest ack time of a publish whose acknowledged attempt was sent at or after t."""
        times = [a[1] for a in self.acks.values() if a[2] >= t]
        return min(times) if times else None


# --- the test --------------------------------------------------------------------------------

class HeteroTest:
    def __init__(self, args):
        self.args = args
        self.nodes: list = []
        self.violations: list = []
        self.summary: dict = {}
        self.control = None  # nats-py client over every node, for API calls

    def violation(self, text: str) -> None:
        log(f"VIOLATION: {text}")
        self.violations.append(text)

    def node_named(self, name: str):
        return next((n for n in self.nodes if n.name == name), None)

    def running(self) -> list:
        return [n for n in self.nodes if n.running()]

    async def setup(self) -> None:
        a = self.args
        ports = choose_ports(a.port_first, a.port_last, 9)
        cluster_ports = ports[3:6]
        binaries = {"x86_64": a.bin_x86_64, "aarch64": a.bin_aarch64, "armv7": a.bin_armv7}
        for i, arch in enumerate(("x86_64", "aarch64", "armv7")):
            self.nodes.append(Node(i, arch, binaries[arch],
                                   (ports[i], cluster_ports[i], ports[6 + i]),
                                   a.workdir, cluster_ports))
        for n in self.nodes:
            log(f"{n.name}: client {n.client_port}, cluster {n.cluster_port}, http {n.http_port}: "
                f"{' '.join(n.command)}")
        started = time.monotonic()
        for n in self.nodes:
            n.start()
        await wait_healthy(self.nodes, started + a.start_timeout, "cluster start")
        self.summary["cluster_ready_s"] = round(time.monotonic() - started, 1)
        log(f"cluster ready after {self.summary['cluster_ready_s']} s (every /healthz ok)")
        self.control = await connect([n.url for n in self.nodes], time.monotonic() + 30)

    def check_arch_tags(self) -> None:
        archs = {}
        for n in self.nodes:
            varz = http_json(n, "/varz")
            tags = varz.get("tags", [])
            archs[n.name] = {"tags": tags, "server_name": varz.get("server_name")}
            want = f"arch:{n.arch}"
            if want not in tags:
                self.violation(f"{n.name} reports tags {tags}, without {want}")
            others = [t for t in tags if t.startswith("arch:") and t != want]
            if others:
                self.violation(f"{n.name} reports other arch tags {others}")
            if varz.get("server_name") != n.name:
                self.violation(f"{n.name}: /varz server_name is {varz.get('server_name')}")
        self.summary["nodes"] = archs
        log("arch tags: " + ", ".join(f"{k} {v['tags']}" for k, v in archs.items()))

    async def check_placement(self) -> None:
        results = {}
        timeout = self.args.placement_timeout

        def within() -> float:
            return time.monotonic() + timeout

        for n in self.nodes:
            tag = f"arch:{n.arch}"
            name = f"PLACE_{n.arch.upper()}"
            subject = f"place.{n.arch}"
            outcome = {}
            config = {"name": name, "subjects": [subject], "num_replicas": 1, "storage": "file",
                      "allow_direct": True, "placement": {"tags": [tag]}}
            created = await api_retry(self.control, f"$JS.API.STREAM.CREATE.{name}", config,
                                      within(), f"create {name}")
            leader = created.get("cluster", {}).get("leader")
            outcome["r1_leader"] = leader
            if leader != n.name:
                self.violation(f"R1 stream with placement {tag} landed on {leader}, not {n.name}")
            # Only that node holds the stream (the meta state reaches the others asynchronously:
            # wait until the chosen one has it, then look at every node).
            holders = []
            deadline = within()
            while time.monotonic() < deadline:
                holders = [m.name for m in self.nodes if isinstance(local_state(m, name), dict)]
                if holders == [n.name]:
                    break
                await asyncio.sleep(0.3)
            outcome["held_by"] = holders
            if holders != [n.name]:
                self.violation(f"{name} is held by {holders}, expected only {n.name}")
            # Every node learns of the new stream from the meta log: until this client's node
            # has, a publish finds no responder. Retried with one Nats-Msg-Id: stored once.
            body = b"placed on " + n.arch.encode()
            ack, last = {}, None
            deadline = within()
            while time.monotonic() < deadline and "seq" not in ack:
                try:
                    msg = await self.control.request(subject, body, timeout=10,
                                                     headers={"Nats-Msg-Id": name})
                    ack = json.loads(msg.data)
                except Exception as e:
                    last = repr(e)
                    await asyncio.sleep(0.3)
            try:
                got = await api_retry(self.control, f"$JS.API.STREAM.MSG.GET.{name}", {"seq": 1},
                                      within(), f"get from {name}")
                data = base64.b64decode(got.get("message", {}).get("data", ""))
            except Violation as e:
                data, last = b"", str(e)
            outcome["roundtrip"] = ack.get("seq") == 1 and data == body
            if not outcome["roundtrip"]:
                outcome["roundtrip_error"] = f"ack {ack}, data {data!r}, last error {last}"
            if not outcome["roundtrip"]:
                self.violation(f"{name} on {n.name}: publish/get round trip failed ({outcome})")
            await api_retry(self.control, f"$JS.API.STREAM.DELETE.{name}", None, within(),
                            f"delete {name}")

            refused_name = f"PLACE_R3_{n.arch.upper()}"
            config3 = dict(config, name=refused_name, subjects=[f"place3.{n.arch}"],
                           num_replicas=3)
            reply = await api(self.control, f"$JS.API.STREAM.CREATE.{refused_name}", config3)
            err = reply.get("error")
            expected = PLACEMENT_REFUSAL_TEXT.format(tag=tag)
            outcome["r3_refusal"] = err
            if not err:
                self.violation(f"R3 stream with placement {tag} was accepted: {reply.get('cluster')}")
                await api(self.control, f"$JS.API.STREAM.DELETE.{refused_name}", None)
            elif err.get("err_code") != PLACEMENT_REFUSAL_CODE or err.get("description") != expected \
                    or err.get("code") != 400:
                self.violation(f"R3 {tag} refused with {err}, nats-server answers code 400 "
                               f"err_code {PLACEMENT_REFUSAL_CODE} {expected!r}")
            results[tag] = outcome
            log(f"placement {tag}: R1 on {leader}, held by {holders}, round trip "
                f"{outcome['roundtrip']}; R3 refused: {err}")
        self.summary["placement"] = results

    async def stream_leader(self, via: list, deadline: float):
        """The leader every node of `via` names (agreement, not one node's word), or None."""
        while time.monotonic() < deadline:
            named = []
            for n in via:
                try:
                    nc = await connect([n.url], time.monotonic() + 5, reconnect=False)
                    try:
                        info = await api(nc, f"$JS.API.STREAM.INFO.{STREAM}", None, 5)
                    finally:
                        await nc.close()
                    named.append(info.get("cluster", {}).get("leader"))
                except Exception:
                    named.append(None)
            if named and named[0] and all(x == named[0] for x in named):
                return named[0]
            await asyncio.sleep(0.2)
        return None

    async def stream_info(self, deadline: float) -> dict:
        return await api_retry(self.control, f"$JS.API.STREAM.INFO.{STREAM}", None, deadline,
                               "stream info")

    async def kill_round(self, pubs: Publishers, round_no: int) -> dict:
        a = self.args
        out = {}
        leader_name = await self.stream_leader(self.running(), time.monotonic() + 30)
        victim = self.node_named(leader_name) if leader_name else None
        if victim is None:
            raise Violation(f"round {round_no}: no agreed stream leader to kill ({leader_name})")
        before = len(pubs.acks)
        killed_at = now()
        victim.kill()
        out["killed"] = victim.name
        log(f"round {round_no}: SIGKILLed the stream leader {victim.name} "
            f"({before} acks so far)")

        survivors = self.running()
        new_leader = await self.stream_leader(survivors, time.monotonic() + a.max_election)
        if new_leader is None or new_leader == victim.name:
            raise Violation(f"round {round_no}: no new leader agreed by {[n.name for n in survivors]}"
                            f" within {a.max_election} s")
        out["new_leader"] = new_leader
        out["new_leader_after_s"] = round(now() - killed_at, 2)
        log(f"round {round_no}: new stream leader {new_leader} after {out['new_leader_after_s']} s")

        resume_deadline = time.monotonic() + a.max_resume
        resumed = None
        while time.monotonic() < resume_deadline:
            resumed = pubs.first_ack_sent_after(killed_at)
            if resumed is not None:
                break
            await asyncio.sleep(0.1)
        if resumed is None:
            raise Violation(f"round {round_no}: no publish sent after the kill was acknowledged "
                            f"within {a.max_resume} s")
        out["publishing_resumed_after_s"] = round(resumed - killed_at, 2)
        log(f"round {round_no}: a publish sent after the kill was acknowledged "
            f"{out['publishing_resumed_after_s']} s after the kill")
        if out["new_leader_after_s"] > a.max_election_ok:
            self.violation(f"round {round_no}: new leader after {out['new_leader_after_s']} s "
                           f"(> {a.max_election_ok} s)")

        # Stay down a while (writes go on without it), then restart on the same store.
        await asyncio.sleep(max(0.0, a.down_seconds - (now() - killed_at)))
        target = (await self.stream_info(time.monotonic() + 30))["state"]["last_seq"]
        restarted_at = now()
        victim.start()
        log(f"round {round_no}: restarted {victim.name} on its store "
            f"(stream at last_seq {target})")
        caught = None
        deadline = time.monotonic() + a.max_catchup
        last_state = None
        while time.monotonic() < deadline:
            if not victim.running():
                raise Violation(f"{victim.name} exited after its restart:\n{victim.tail()}")
            last_state = local_state(victim, STREAM)
            if isinstance(last_state, dict) and (last_state["last_seq"] or 0) >= target:
                caught = now()
                break
            await asyncio.sleep(0.2)
        if caught is None:
            raise Violation(f"round {round_no}: {victim.name} did not catch up to seq {target} "
                            f"within {a.max_catchup} s (last: {last_state})")
        out["catch_up_s"] = round(caught - restarted_at, 2)
        out["caught_up_to_seq"] = target
        await wait_healthy([victim], time.monotonic() + a.start_timeout, f"{victim.name} restart")
        out["healthy_after_restart_s"] = round(now() - restarted_at, 2)
        log(f"round {round_no}: {victim.name} held seq {target} {out['catch_up_s']} s after its "
            f"restart, /healthz ok after {out['healthy_after_restart_s']} s; "
            f"{pubs.acks_after(killed_at)} acks since the kill")
        return out

    async def wait_replicas_agree(self) -> dict:
        deadline = time.monotonic() + self.args.max_catchup
        while True:
            info = await self.stream_info(deadline)
            st = info["state"]
            want = {k: st.get(k) for k in ("messages", "bytes", "first_seq", "last_seq")}
            states = {n.name: local_state(n, STREAM) for n in self.nodes}
            if all(s == want for s in states.values()):
                return {"leader_state": want, "replicas": states}
            if time.monotonic() > deadline:
                self.violation(f"replica states differ from the leader's {want}: {states}")
                return {"leader_state": want, "replicas": states}
            await asyncio.sleep(0.5)

    async def move_leader_to(self, node: Node, deadline: float) -> bool:
        for _ in range(self.args.max_stepdowns):
            leader = await self.stream_leader(self.nodes, deadline)
            if leader == node.name:
                return True
            if leader is None or time.monotonic() > deadline:
                return False
            try:
                reply = await api(self.control, f"$JS.API.STREAM.LEADER.STEPDOWN.{STREAM}", None, 15)
                if "error" in reply:
                    log(f"stepdown: {reply['error']}")
            except Exception as e:
                log(f"stepdown: {e!r}")
            await asyncio.sleep(0.5)
        return await self.stream_leader(self.nodes, deadline) == node.name

    async def read_replica(self, node: Node, last_seq: int) -> dict:
        """seq -> (header block, payload) of every message, read through `node` while it leads."""
        deadline = time.monotonic() + self.args.read_timeout
        for attempt in range(1, 4):
            if not await self.move_leader_to(node, deadline):
                raise Violation(f"could not make {node.name} the stream leader to read its copy")
            client = RawClient(node.client_port)
            await client.connect()
            copy: dict = {}
            sem = asyncio.Semaphore(self.args.read_window)

            async def get(seq: int) -> None:
                async with sem:
                    for _ in range(20):
                        if time.monotonic() > deadline:
                            raise Violation(f"reading {node.name}'s copy: deadline at seq {seq}")
                        try:
                            hdr, data = await client.request(
                                f"$JS.API.DIRECT.GET.{STREAM}",
                                json.dumps({"seq": seq}).encode(), 10)
                        except (asyncio.TimeoutError, ConnectionError):
                            continue
                        status = status_of(hdr)
                        if status == 404:
                            copy[seq] = None
                            return
                        if status is None:
                            copy[seq] = (hdr, data)
                            return
                        await asyncio.sleep(0.2)  # 503: no leader right now
                    raise Violation(f"reading {node.name}'s copy: no answer for seq {seq}")

            try:
                await asyncio.gather(*(get(s) for s in range(1, last_seq + 1)))
            finally:
                await client.close()
            after = await self.stream_leader(self.nodes, deadline)
            if after == node.name:
                return copy
            log(f"leadership moved from {node.name} to {after} during the read; reading again")
        raise Violation(f"{node.name} did not keep the leadership through a full read")

    def compare(self, copies: dict, last_seq: int, pubs: Publishers) -> dict:
        names = list(copies)
        reference = copies[names[0]]
        differing = []
        for seq in range(1, last_seq + 1):
            versions = {n: copies[n].get(seq, "missing") for n in names}
            if any(v != versions[names[0]] for v in versions.values()):
                differing.append(seq)
        if differing:
            seq = differing[0]
            detail = {n: copies[n].get(seq) for n in names}
            self.violation(f"replicas differ at {len(differing)} sequences, first {seq}: {detail}")

        result = {"differing_sequences": len(differing)}
        for name in names:
            copy = copies[name]
            stored: dict = {}  # msg id -> [seq]
            bad_content = []
            holes = 0
            for seq in range(1, last_seq + 1):
                entry = copy.get(seq)
                if entry is None:
                    holes += 1
                    continue
                hdr, data = entry
                msg_id = data.split(b"|", 1)[0].decode(errors="replace")
                stored.setdefault(msg_id, []).append(seq)
                lines = hdr.split(b"\r\n")
                own = [l for l in lines[1:] if l and not l.startswith(DIRECT_GET_HEADERS)]
                fields = dict(l.split(b": ", 1) for l in lines[1:] if b": " in l)
                ok = (
                    data == payload_of(msg_id)
                    and fields.get(b"Nats-Subject") == subject_of(msg_id).encode()
                    and fields.get(b"Nats-Sequence") == str(seq).encode()
                    and fields.get(b"Nats-Stream") == STREAM.encode()
                    and sorted(own) == sorted([f"Nats-Msg-Id: {msg_id}".encode(),
                                               f"Hetero-Publisher: {msg_id.split('w')[0]}".encode()])
                )
                if not ok:
                    bad_content.append(seq)
            lost = [i for i in pubs.acks if i not in stored]
            misplaced = [(i, pubs.acks[i][0], stored[i]) for i in pubs.acks
                         if i in stored and pubs.acks[i][0] not in stored[i]]
            duplicated = {i: s for i, s in stored.items() if len(s) > 1}
            unacked = [i for i in stored if i not in pubs.acks]
            r = {"messages": last_seq - holes, "holes": holes, "lost": len(lost),
                 "duplicates": len(duplicated), "misplaced": len(misplaced),
                 "content_mismatch": len(bad_content), "stored_not_acked": len(unacked)}
            result[name] = r
            for what, items in (("lost", lost), ("duplicated", list(duplicated.items())),
                                ("misplaced", misplaced), ("content mismatch", bad_content)):
                if items:
                    self.violation(f"{name}: {len(items)} {what} (first 5: {items[:5]})")
            if holes:
                self.violation(f"{name}: {holes} sequences without a message (nothing was deleted)")
        return result

    async def run(self) -> None:
        a = self.args
        await self.setup()
        self.check_arch_tags()
        await self.check_placement()

        config = {"name": STREAM, "subjects": [f"{SUBJECT_PREFIX}.>"], "num_replicas": 3,
                  "storage": "file", "retention": "limits", "allow_direct": True,
                  "duplicate_window": 300_000_000_000}
        created = await api_retry(self.control, f"$JS.API.STREAM.CREATE.{STREAM}", config,
                                  time.monotonic() + 60, "create the R3 stream")
        log(f"R3 stream {STREAM} created, leader {created.get('cluster', {}).get('leader')}, "
            f"replicas {[r.get('name') for r in created.get('cluster', {}).get('replicas', [])]}")

        pubs = Publishers(self.nodes, a.concurrency, a.ack_timeout, a.retry_seconds)
        publish_started = now()
        await pubs.start(time.monotonic() + 30)
        await asyncio.sleep(a.warmup_seconds)
        if not pubs.acks:
            raise Violation(f"nothing acknowledged after {a.warmup_seconds} s of publishing")
        log(f"publishing: {len(pubs.acks)} acks after {a.warmup_seconds} s")

        rounds = []
        for r in range(1, a.kills + 1):
            rounds.append(await self.kill_round(pubs, r))
            await asyncio.sleep(a.after_seconds)
        await pubs.finish(a.ack_timeout * 2 + 10)
        publish_stopped = now()
        self.summary["rounds"] = rounds
        per_port = {}
        for seq, t, sent, via, dup in pubs.acks.values():
            per_port[via] = per_port.get(via, 0) + 1
        by_node = {n.name: per_port.get(n.client_port, 0) for n in self.nodes}
        duration = publish_stopped - publish_started
        self.summary["publishing"] = {
            "seconds": round(duration, 1), "attempted": pubs.attempted, "acked": len(pubs.acks),
            "acks_per_s": round(len(pubs.acks) / max(duration, 0.001), 1),
            "acked_through": by_node, "retried_attempts": pubs.retries, "errors": pubs.errors,
            "acks_flagged_duplicate": pubs.dup_flags, "gave_up": len(pubs.gave_up),
        }
        log(f"publishing stopped: {len(pubs.acks)} acked of {pubs.attempted} in {duration:.1f} s, "
            f"through {by_node}, {pubs.retries} retried attempts {pubs.errors}, "
            f"{len(pubs.gave_up)} given up")
        if pubs.gave_up:
            log(f"gave up (outcome unknown, may be stored): {pubs.gave_up[:10]}")

        agree_started = now()
        agreement = await self.wait_replicas_agree()
        self.summary["replica_states"] = agreement
        self.summary["replicas_agree_after_s"] = round(now() - agree_started, 2)
        last_seq = agreement["leader_state"]["last_seq"]
        log(f"replica states (/jsz): {agreement['replicas']}")

        copies = {}
        read_started = now()
        for n in self.nodes:
            t = now()
            copies[n.name] = await self.read_replica(n, last_seq)
            log(f"read {n.name}'s copy ({len(copies[n.name])} sequences) in {now() - t:.1f} s "
                f"while it led the stream")
        self.summary["read_copies_s"] = round(now() - read_started, 1)
        self.summary["verification"] = self.compare(copies, last_seq, pubs)

    async def stop(self) -> None:
        if self.control is not None:
            try:
                await asyncio.wait_for(self.control.close(), 5)
            except Exception:
                pass
        for n in self.nodes:
            n.kill()


def print_summary(test: HeteroTest, result_path: str) -> None:
    s = test.summary
    print("\n==== heterogeneous cluster test summary ====")
    for name, v in s.get("nodes", {}).items():
        print(f"node {name}: tags {v['tags']}")
    if "cluster_ready_s" in s:
        print(f"cluster ready (every /healthz ok): {s['cluster_ready_s']} s after start")
    for tag, p in s.get("placement", {}).items():
        err = p.get("r3_refusal") or {}
        print(f"placement {tag}: R1 leader {p.get('r1_leader')}, held by {p.get('held_by')}, "
              f"round trip {'ok' if p.get('roundtrip') else 'FAILED'}; R3 refused: "
              f"{err.get('code')} {err.get('err_code')} {err.get('description')!r}")
    pub = s.get("publishing")
    if pub:
        print(f"published: {pub['attempted']} attempted, {pub['acked']} acked in {pub['seconds']} s "
              f"({pub['acks_per_s']}/s), acked through {pub['acked_through']}; "
              f"{pub['retried_attempts']} retried attempts {pub['errors']}, "
              f"{pub['acks_flagged_duplicate']} acks flagged duplicate, {pub['gave_up']} given up")
    for i, r in enumerate(s.get("rounds", []), 1):
        print(f"leader kill {i}: killed {r['killed']} -> new leader {r['new_leader']} after "
              f"{r['new_leader_after_s']} s; a publish sent after the kill acked after "
              f"{r['publishing_resumed_after_s']} s; restarted node caught up to seq "
              f"{r['caught_up_to_seq']} in {r['catch_up_s']} s (/healthz ok after "
              f"{r['healthy_after_restart_s']} s)")
    if "replica_states" in s:
        print(f"replica states equal to the leader's {s['replica_states']['leader_state']}: "
              f"{s['replicas_agree_after_s']} s after publishing stopped")
    v = s.get("verification")
    if v:
        print(f"copies read through each node as leader in {s.get('read_copies_s')} s: "
              f"{v['differing_sequences']} sequences differ between replicas")
        for name in (n.name for n in test.nodes):
            if name in v:
                r = v[name]
                print(f"  {name}: {r['messages']} messages, lost {r['lost']}, duplicates "
                      f"{r['duplicates']}, misplaced {r['misplaced']}, content mismatch "
                      f"{r['content_mismatch']}, holes {r['holes']}, stored but not acked "
                      f"{r['stored_not_acked']}")
    print(f"violations: {len(test.violations)}")
    for text in test.violations:
        print(f"  - {text}")
    print("RESULT: " + ("PASS" if not test.violations else "FAIL"))
    if result_path:
        with open(result_path, "w") as f:
            json.dump({**s, "violations": test.violations}, f, indent=1, default=str)


async def amain(args) -> int:
    test = HeteroTest(args)
    try:
        await asyncio.wait_for(test.run(), args.deadline)
    except Violation as e:
        test.violation(str(e))
    except asyncio.TimeoutError:
        test.violation(f"the whole test exceeded its {args.deadline} s deadline")
    finally:
        if test.violations:
            for n in test.nodes:
                print(f"---- last lines of {n.name}'s log ({n.log}) ----\n{n.tail(25)}")
        await test.stop()
    print_summary(test, args.result)
    return 1 if test.violations else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="configs, stores and logs go here")
    p.add_argument("--bin-x86-64", required=True)
    p.add_argument("--bin-aarch64", required=True)
    p.add_argument("--bin-armv7", required=True)
    p.add_argument("--result", default="", help="write the summary as JSON here")
    p.add_argument("--port-first", type=int, default=17400)
    p.add_argument("--port-last", type=int, default=17999)
    p.add_argument("--concurrency", type=int, default=4, help="publishes in flight per node")
    p.add_argument("--ack-timeout", type=float, default=5.0)
    p.add_argument("--retry-seconds", type=float, default=60.0, help="per message: give up after")
    p.add_argument("--warmup-seconds", type=float, default=10.0)
    p.add_argument("--after-seconds", type=float, default=10.0,
                   help="publishing after each catch-up")
    p.add_argument("--down-seconds", type=float, default=5.0, help="a killed node stays down")
    p.add_argument("--kills", type=int, default=1, help="leader kill rounds")
    p.add_argument("--start-timeout", type=float, default=180.0)
    p.add_argument("--placement-timeout", type=float, default=60.0, help="per placement step")
    p.add_argument("--max-election", type=float, default=60.0, help="give up waiting after")
    p.add_argument("--max-election-ok", type=float, default=15.0,
                   help="a new leader later than this is a violation")
    p.add_argument("--max-resume", type=float, default=60.0)
    p.add_argument("--max-catchup", type=float, default=300.0)
    p.add_argument("--max-stepdowns", type=int, default=15)
    p.add_argument("--read-window", type=int, default=32)
    p.add_argument("--read-timeout", type=float, default=600.0, help="per replica")
    p.add_argument("--deadline", type=float, default=2400.0, help="the whole test")
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
