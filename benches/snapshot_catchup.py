"""Publish latency on an R3 stream's leader while a follower is down behind the leader's purged
log (it can only catch up from a snapshot of the whole stream), and while it comes back and
installs one. Run by benches/run-snapshot-catchup.sh against a 3-node cluster it started; prints
one JSON line per phase."""
import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import nats

URL, VICTIM_PID, VICTIM_CMD, FILL = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
MISSED = 30000  # more entries than a snapshot interval (10,000) plus the 1,000 kept after it
PHASE_SECONDS = 6


async def publish_many(js, count, subject, size):
    payload = b"x" * size
    sent = 0
    while sent < count:
        batch = min(256, count - sent)
        await asyncio.gather(*[js.publish(subject, payload) for _ in range(batch)])
        sent += batch


async def probe(js, label):
    """One publish at a time for PHASE_SECONDS; the ack latencies."""
    lat = []
    end = time.perf_counter() + PHASE_SECONDS
    while time.perf_counter() < end:
        t = time.perf_counter()
        await js.publish("big.probe", b"p" * 128, timeout=30)
        lat.append(time.perf_counter() - t)
    lat.sort()
    n = len(lat)
    print(json.dumps({
        "phase": label, "acked": n, "p50_ms": round(lat[n // 2] * 1e3, 3),
        "p99_ms": round(lat[n * 99 // 100] * 1e3, 3), "max_ms": round(lat[-1] * 1e3, 1),
        "over_50ms": sum(1 for x in lat if x > 0.05),
    }), flush=True)


async def main():
    nc = await nats.connect(URL)
    js = nc.jetstream(timeout=30)
    for _ in range(150):
        try:
            await js.add_stream(name="BIG", subjects=["big.>"], num_replicas=3)
            break
        except Exception:  # the cluster is still forming
            await asyncio.sleep(0.2)
    # The leader on the node the client is on (n1); the victim is another node (n3).
    for _ in range(20):
        if (await js.stream_info("BIG")).cluster.leader == "n1":
            break
        await nc.request("$JS.API.STREAM.LEADER.STEPDOWN.BIG", b"", timeout=10)
        await asyncio.sleep(1)
    if (await js.stream_info("BIG")).cluster.leader != "n1":
        sys.exit("snapshot_catchup.py: could not move the stream's leader to n1")
    await publish_many(js, FILL, "big.fill", 512)
    await probe(js, "all up")
    os.kill(VICTIM_PID, signal.SIGKILL)
    await publish_many(js, MISSED, "big.missed", 512)
    await probe(js, "follower down behind the purged log")
    log = open(os.environ.get("VICTIM_LOG", os.devnull), "a")
    victim = subprocess.Popen(VICTIM_CMD.split(), stdout=log, stderr=subprocess.STDOUT)
    print(json.dumps({"restarted_pid": victim.pid}), flush=True)
    await probe(js, "follower back, catching up")
    start = time.perf_counter()
    current = False
    while time.perf_counter() - start < 120 and not current:
        replicas = (await js.stream_info("BIG")).cluster.replicas or []
        current = any(r.name == "n3" and r.current and not r.lag for r in replicas)
        await asyncio.sleep(0.5)
    print(json.dumps({"follower_current": current,
                      "after_probe_s": round(time.perf_counter() - start, 1)}), flush=True)
    await nc.close()


asyncio.run(main())
