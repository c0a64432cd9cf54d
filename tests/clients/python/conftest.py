"""Starts natrix or the reference nats-server for each test, so every test runs against both.

The binaries come from NATRIX_BIN (default target/debug/natrix-server) and NATS_SERVER_BIN
(default target/test-deps/usr/sbin/nats-server). A missing binary fails the test: a suite that
silently skips the reference proves nothing.
"""

import asyncio
import os
import random
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import nats.aio.client
import nats.aio.transport
import pytest

ROOT = Path(__file__).resolve().parents[3]
SERVERS = {
    "natrix": ("NATRIX_BIN", ROOT / "target/debug/natrix-server"),
    "nats-server": ("NATS_SERVER_BIN", ROOT / "target/test-deps/usr/sbin/nats-server"),
}
PORT_RANGE = (20000, 20999)
_used_ports: set = set()


def free_port() -> int:
    """A port in the range this project's tests use that nothing listens on right now."""
    for _ in range(200):
        port = random.randint(*PORT_RANGE)
        if port in _used_ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port in 20000-20999")


def server_binary(kind: str) -> str:
    var, default = SERVERS[kind]
    path = os.environ.get(var) or str(default)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{kind} binary not found at {path} (set {var})")
    return path


class Server:
    """One server process on 127.0.0.1; restartable on the same ports."""

    def __init__(self, kind: str, args: list, monitor: bool = False):
        self.kind = kind
        self.binary = server_binary(kind)
        self.args = list(args)
        self.port = free_port()
        self.monitor_port = free_port() if monitor else None
        self.proc = None
        self.log = tempfile.NamedTemporaryFile(prefix=f"{kind}-", suffix=".log", delete=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> "Server":
        cmd = [self.binary, "-a", "127.0.0.1", "-p", str(self.port)]
        if self.monitor_port:
            cmd += ["-m", str(self.monitor_port)]
        cmd += self.args
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(5) == b"INFO ":
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{self.kind} did not accept connections on {self.port}: {self.output()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def output(self, limit: int = 2000) -> str:
        """The last `limit` characters the server printed."""
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-limit:]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def failed(request) -> bool:
    """Whether the test using this fixture failed (read in the fixture's teardown)."""
    report = getattr(request.node, "report_call", None)
    return report is None or report.failed


@pytest.fixture(params=list(SERVERS))
def kind(request) -> str:
    return request.param


@pytest.fixture
def start_server(kind):
    """Starts a server of this test's kind with extra arguments; stopped after the test."""
    started = []

    def start(*args, monitor: bool = False) -> Server:
        server = Server(kind, list(args), monitor=monitor).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        os.unlink(server.log.name)


@pytest.fixture
def server(start_server) -> Server:
    return start_server()


def run(coro, timeout: float = 15):
    """Runs one test coroutine on a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def js_server(start_server, tmp_path) -> Server:
    """A server of this test's kind with JetStream enabled, storing in a fresh directory.

    With NATRIX_PY_JS_CLUSTER=1, three clustered servers of this test's kind instead, and the
    test talks to the first: its streams are placed on any of the three, so requests, publishes
    and deliveries cross nodes (`scripts/test.sh` runs test_jetstream.py both ways)."""
    if os.environ.get("NATRIX_PY_JS_CLUSTER") != "1":
        return start_server("-js", "-sd", str(tmp_path / "jetstream"))
    cluster_ports = [free_port() for _ in range(3)]
    routes = ",".join(f"nats://127.0.0.1:{p}" for p in cluster_ports)
    nodes = []
    for i, port in enumerate(cluster_ports):
        nodes.append(start_server(
            "-js", "-sd", str(tmp_path / f"n{i + 1}"),
            "--server_name", f"n{i + 1}",
            "--cluster_name", "pyjs",
            "--cluster", f"nats://127.0.0.1:{port}",
            "--routes", routes,
        ))
    _wait_for_jetstream(nodes[0])
    return nodes[0]


def _wait_for_jetstream(server: Server, timeout: float = 20) -> None:
    """Waits until the server answers $JS.API.INFO (a cluster has elected its meta leader)."""
    import json

    async def ask():
        nc = await nats.connect(server.url, allow_reconnect=False)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                try:
                    msg = await nc.request("$JS.API.INFO", b"", timeout=1)
                    if "error" not in json.loads(msg.data):
                        return
                except Exception:  # noqa: BLE001 - not ready yet
                    pass
                if loop.time() >= deadline:
                    raise RuntimeError(f"{server.kind}: no JetStream after {timeout} s")
                await asyncio.sleep(0.2)
        finally:
            await nc.close()

    asyncio.run(ask())


# nats-py reads one line after its CONNECT+PING and, if that line is not the PONG (an INFO, say),
# returns from `connect` still "connecting": it then never sends what is published and every
# request times out, which shows up seconds later as a puzzling timeout. Here such a connection
# fails at once and names the lines the server sent (the handshake is the only reader of lines).
_handshake_lines: list = []
_readline = nats.aio.transport.TcpTransport.readline
_connect_init = nats.aio.client.Client._process_connect_init


async def _recording_readline(self):
    line = await _readline(self)
    _handshake_lines.append(line)
    return line


async def _checked_connect_init(self):
    _handshake_lines.clear()
    await _connect_init(self)
    if not self.is_connected:
        raise RuntimeError(f"no PONG after CONNECT+PING; the server sent {_handshake_lines!r}")


nats.aio.transport.TcpTransport.readline = _recording_readline
nats.aio.client.Client._process_connect_init = _checked_connect_init

