"""The official C client (nats.c 3.4.1, Debian's libnats-dev) against natrix and nats-server.

The client code is one C program, tests/clients/c (nats-c-scenarios): each named scenario uses
the library against the server at a URL and exits 0 when every check passed, or prints the check
that failed (expected vs got, nats.c's status and last error) and exits 1. It is compiled once
per session with gcc; every scenario then runs against a fresh server of each kind, with
JetStream enabled. scripts/install-c-deps.sh installs libnats-dev, gcc and pkg-config.
"""

import shutil
import subprocess

import pytest

from conftest import ROOT, free_port

C_DIR = ROOT / "tests/clients/c"

# Every scenario of the program, in its --list order (test_scenario_list_matches_program keeps
# the two in step).
SCENARIOS = [
    # Core NATS.
    "connect_info",
    "pubsub_sync",
    "pubsub_async",
    "wildcards",
    "queue_group",
    "request_reply",
    "headers",
    "auto_unsubscribe",
    "max_payload",
    "drain",
    "flush_rtt_stats",
    "cluster_discovery",
    # JetStream streams and publishing.
    "js_publish_acks",
    "js_publish_async",
    "js_stream_ops",
    "js_stream_admin",
    "js_limits",
    "js_stream_features",
    # JetStream consumers.
    "pull_consumer",
    "pull_nak_term",
    "ack_wait_in_progress",
    "fetch_request",
    "push_deliver_policies",
    "push_callback_manual_ack",
    "ordered_consumer",
    "flow_control_heartbeat",
    "consumer_limits",
    "consumer_variants",
    # Key/Value.
    "kv_put_get",
    "kv_delete_purge_history",
    "kv_watch",
    "kv_status_delete",
]

# Scenarios that get three clustered servers (the URL given is the first one's).
CLUSTER_SCENARIOS = {"cluster_discovery"}

# Bound of one scenario run; each takes a few seconds at most.
RUN_TIMEOUT = 30


def _libnats_flags() -> list:
    """Compiler and linker flags for libnats: from its pkg-config file when there is one."""
    pkg_config = shutil.which("pkg-config")
    if pkg_config:
        found = subprocess.run([pkg_config, "--cflags", "--libs", "libnats"],
                               capture_output=True, text=True)
        if found.returncode == 0:
            return found.stdout.split()
    return ["-lnats"]


@pytest.fixture(scope="session")
def c_program(tmp_path_factory) -> str:
    """The scenario program, compiled once into a temporary directory."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc not found: run scripts/install-c-deps.sh")
    binary = tmp_path_factory.mktemp("nats-c") / "nats-c-scenarios"
    sources = sorted(str(p) for p in C_DIR.glob("*.c"))
    cmd = [gcc, "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-o", str(binary),
           *sources, *_libnats_flags(), "-lpthread"]
    built = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if built.returncode != 0:
        pytest.fail(f"compiling the nats.c scenarios failed (is libnats-dev installed? "
                    f"scripts/install-c-deps.sh):\n$ {' '.join(cmd)}\n{built.stdout}{built.stderr}")
    return str(binary)


def test_scenario_list_matches_program(c_program):
    listed = subprocess.run([c_program, "--list"], capture_output=True, text=True, timeout=10)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == SCENARIOS


def _start_servers(scenario, start_server, tmp_path) -> list:
    """The servers a scenario runs against: one, or three clustered. Started here rather than
    through js_server so the scenarios' view (a single server unless clustered) does not change
    with NATRIX_PY_JS_CLUSTER."""
    if scenario not in CLUSTER_SCENARIOS:
        return [start_server("-js", "-sd", str(tmp_path / "jetstream"))]
    cluster_ports = [free_port() for _ in range(3)]
    routes = ",".join(f"nats://127.0.0.1:{p}" for p in cluster_ports)
    return [
        start_server(
            "--server_name", f"c{i + 1}",
            "--cluster_name", "cclient",
            "--cluster", f"nats://127.0.0.1:{port}",
            "--routes", routes,
        )
        for i, port in enumerate(cluster_ports)
    ]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_c_scenario(scenario, kind, c_program, start_server, tmp_path):
    servers = _start_servers(scenario, start_server, tmp_path)
    cmd = [c_program, scenario, servers[0].url]
    try:
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, timeout=RUN_TIMEOUT)
        output, failure = result.stdout, None
        if result.returncode != 0:
            failure = f"exited with {result.returncode}"
    except subprocess.TimeoutExpired as timeout:
        output = timeout.stdout or ""
        if isinstance(output, bytes):
            output = output.decode(errors="replace")
        failure = f"did not finish within {RUN_TIMEOUT} s (killed)"
    if failure is not None:
        logs = "\n".join(
            f"--- {server.kind} on port {server.port}, last lines ---\n{server.output(4000)}"
            for server in servers
        )
        pytest.fail(f"nats.c scenario {scenario} against {kind} {failure}\n"
                    f"$ {' '.join(cmd)}\n{output}\n{logs}", pytrace=False)
