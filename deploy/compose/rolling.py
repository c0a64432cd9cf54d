#!/usr/bin/env python3
"""Publisher and checker of the Compose rolling-restart test (rolling-restart.sh drives both).

`publish` creates the replicated stream, then publishes with acks from several concurrent tasks
until a stop file appears (or its own bounds end it). Each message carries a unique id as its
payload and as `Nats-Msg-Id`; a publish whose outcome is unknown (timeout, lost connection, an
error reply) is retried with the same id, for at most --retry-seconds, so the stream's duplicate
window must absorb the retries. Every acknowledgement is appended to the ack log as it arrives:
`id seq monotonic-time attempts duplicate-flag`.

`check` reads the whole stream back ($JS.API.STREAM.MSG.GET, every sequence) and compares it with
the ack log: lost (acknowledged, not in the stream), duplicated (one id stored more than once),
misplaced (stored, but not at the acknowledged sequence), and the write stall: the longest time
without an acknowledgement between the first ack and the end of publishing. It also waits
(bounded) until every node's own copy (/jsz) holds as many messages as the leader reports.
Exits 1 on any loss, duplicate or misplacement, replicas that differ, or a stall above
--max-stall. Every wait has a deadline. `leader` prints the stream leader's server name.
"""

import argparse
import asyncio
import base64
import json
import os
import sys
import time
import urllib.request

import nats

SUBJECT_PREFIX = "rolling"


async def quiet(_err) -> None:
    """nats-py reports every refused reconnect while a node restarts; the counters tell the story."""


async def connect(servers: list, deadline: float):
    last = None
    while time.monotonic() < deadline:
        try:
            return await nats.connect(
                servers=servers,
                error_cb=quiet,
                connect_timeout=2,
                reconnect_time_wait=0.2,
                max_reconnect_attempts=600,  # bounded: 600 rounds over the servers
                ping_interval=5,
                max_outstanding_pings=2,
            )
        except Exception as e:  # nats-py raises assorted errors while nodes start
            last = e
            await asyncio.sleep(0.5)
    raise SystemExit(f"rolling: cannot connect to {servers} ({last!r})")


async def js_request(nc, subject: str, body: dict, timeout: float) -> dict:
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=timeout)
    return json.loads(msg.data)


async def retry_api(nc, subject: str, body: dict, deadline: float, what: str) -> dict:
    """A JetStream API call retried until it answers without error (leaders may be moving)."""
    last = None
    while time.monotonic() < deadline:
        try:
            reply = await js_request(nc, subject, body, 5)
            if "error" not in reply:
                return reply
            last = reply["error"]
        except Exception as e:
            last = e
        await asyncio.sleep(0.5)
    raise SystemExit(f"rolling: {what} failed before the deadline ({last!r})")


async def publish(args) -> int:
    nc = await connect(args.servers.split(","), time.monotonic() + args.ready_timeout)
    config = {
        "name": args.stream,
        "subjects": [f"{SUBJECT_PREFIX}.>"],
        "storage": "file",
        "retention": "limits",
        "num_replicas": args.replicas,
        "duplicate_window": 120_000_000_000,
    }
    created = await retry_api(
        nc, f"$JS.API.STREAM.CREATE.{args.stream}", config,
        time.monotonic() + args.ready_timeout, "stream create",
    )
    print(f"rolling: stream {args.stream} R{args.replicas} created, leader "
          f"{created.get('cluster', {}).get('leader')}", flush=True)

    next_id = 1
    acked = 0
    retries = 0
    gave_up = 0
    deduplicated = 0
    errors: dict = {}
    started = time.monotonic()
    log = open(args.ack_log, "w", buffering=1)

    def stopping() -> bool:
        return (
            os.path.exists(args.stop_file)
            or time.monotonic() - started > args.max_seconds
            or next_id > args.max_messages
        )

    async def publish_one(msg_id: int) -> None:
        nonlocal acked, retries, gave_up, deduplicated
        data = str(msg_id).encode()
        headers = {"Nats-Msg-Id": str(msg_id)}
        give_up_at = time.monotonic() + args.retry_seconds
        attempt = 0
        while attempt < args.max_attempts and time.monotonic() < give_up_at:
            attempt += 1
            try:
                msg = await nc.request(
                    f"{SUBJECT_PREFIX}.{msg_id % 16}", data,
                    timeout=args.ack_timeout, headers=headers,
                )
                ack = json.loads(msg.data)
                if "error" in ack or "seq" not in ack:
                    raise RuntimeError(f"api error {ack.get('error', {}).get('err_code')}")
            except Exception as e:
                name = type(e).__name__ if not isinstance(e, RuntimeError) else str(e)
                errors[name] = errors.get(name, 0) + 1
                retries += 1
                # Fast refusals (no leader yet) are retried after a growing pause, up to 0.5 s.
                await asyncio.sleep(min(0.5, 0.05 * attempt))
                continue
            dup = 1 if ack.get("duplicate") else 0
            deduplicated += dup
            # Written the moment it arrives: from here on this message is acknowledged.
            log.write(f"{msg_id} {ack['seq']} {time.monotonic():.6f} {attempt} {dup}\n")
            acked += 1
            return
        gave_up += 1

    async def worker() -> None:
        nonlocal next_id
        while not stopping():
            msg_id = next_id
            next_id += 1
            await publish_one(msg_id)

    open(args.ready_file, "w").close()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    stopped = time.monotonic()
    log.close()
    summary = {
        "started": started,
        "stopped": stopped,
        "acked": acked,
        "attempted": next_id - 1,
        "retries": retries,
        "gave_up": gave_up,
        "deduplicated_retries": deduplicated,
        "errors": errors,
    }
    with open(args.summary, "w") as f:
        json.dump(summary, f)
    print(f"rolling: published {acked} acknowledged of {next_id - 1} in {stopped - started:.1f} s "
          f"({acked / max(stopped - started, 0.001):.0f}/s, {args.concurrency} in flight), "
          f"{retries} retried attempts ({errors}), {deduplicated} acks flagged duplicate, "
          f"{gave_up} given up", flush=True)
    try:
        await asyncio.wait_for(nc.close(), 5)
    except Exception:
        pass
    return 0


async def leader(args) -> int:
    """Prints the stream's leader (server name), or "none" if no replica answers in time."""
    nc = await connect(args.servers.split(","), time.monotonic() + 10)
    try:
        info = await retry_api(nc, f"$JS.API.STREAM.INFO.{args.stream}", {}, time.monotonic() + 10, "stream info")
        print(info.get("cluster", {}).get("leader") or "none")
    except SystemExit:
        print("none")
    await nc.close()
    return 0


def replica_states(monitor_urls: list, stream: str) -> dict:
    """Each node's own copy of the stream, (messages, last_seq), from its /jsz."""
    states = {}
    for url in monitor_urls:
        try:
            with urllib.request.urlopen(f"{url}/jsz?streams=true", timeout=2) as r:
                jsz = json.load(r)
        except Exception as e:
            states[url] = repr(e)
            continue
        found = [
            (s["state"]["messages"], s["state"]["last_seq"])
            for account in jsz.get("account_details", [])
            for s in account.get("stream_detail", [])
            if s["name"] == stream
        ]
        states[url] = found[0] if found else "no replica"
    return states


async def replicas_agree(monitor_urls: list, stream: str, expected: tuple, deadline: float) -> dict:
    """Waits (bounded) until every node's copy holds what the leader reports; returns the last view."""
    while True:
        states = replica_states(monitor_urls, stream)
        if all(v == expected for v in states.values()) or time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.5)


def read_acks(path: str) -> list:
    acks = []
    with open(path) as f:
        for line in f:
            msg_id, seq, at, attempts, dup = line.split()
            acks.append((int(msg_id), int(seq), float(at), int(attempts), int(dup)))
    return acks


async def read_stream(nc, stream: str, last_seq: int, deadline: float) -> dict:
    """seq -> id of every stored message, read one sequence at a time, 64 in flight."""
    stored: dict = {}

    async def get(seq: int) -> None:
        while time.monotonic() < deadline:
            try:
                reply = await js_request(nc, f"$JS.API.STREAM.MSG.GET.{stream}", {"seq": seq}, 5)
            except Exception:
                await asyncio.sleep(0.2)
                continue
            if "message" in reply:
                stored[seq] = int(base64.b64decode(reply["message"]["data"]))
                return
            if reply.get("error", {}).get("err_code") == 10037:  # no message found: a hole
                return
            await asyncio.sleep(0.2)  # not the leader right now, or leader moving: ask again
        raise SystemExit(f"rolling: could not read sequence {seq} before the deadline")

    batch = 64
    for start in range(1, last_seq + 1, batch):
        await asyncio.gather(*(get(s) for s in range(start, min(start + batch, last_seq + 1))))
    return stored


async def check(args) -> int:
    acks = read_acks(args.ack_log)
    with open(args.summary) as f:
        summary = json.load(f)
    deadline = time.monotonic() + args.ready_timeout
    nc = await connect(args.servers.split(","), deadline)
    info = await retry_api(nc, f"$JS.API.STREAM.INFO.{args.stream}", {}, deadline, "stream info")
    state = info["state"]
    stored = await read_stream(nc, args.stream, state["last_seq"], deadline)
    await nc.close()
    expected = (state["messages"], state["last_seq"])
    replicas = await replicas_agree(
        [u for u in args.monitor_urls.split(",") if u], args.stream, expected,
        time.monotonic() + 30,
    )
    disagreeing = {u: v for u, v in replicas.items() if v != expected}

    positions: dict = {}
    for seq, msg_id in stored.items():
        positions.setdefault(msg_id, []).append(seq)
    acked_ids = {a[0] for a in acks}
    lost = [(i, s) for i, s, *_ in acks if i not in positions]
    misplaced = [(i, s, positions[i]) for i, s, *_ in acks if i in positions and s not in positions[i]]
    duplicated = {i: seqs for i, seqs in positions.items() if len(seqs) > 1}
    unacked_stored = len(set(positions) - acked_ids)

    times = sorted(a[2] for a in acks)
    stall, stall_at = 0.0, 0.0
    if times:
        edges = times + [summary["stopped"]]
        for before, after in zip(edges, edges[1:]):
            if after - before > stall:
                stall, stall_at = after - before, before - summary["started"]
    retried_acks = sum(1 for a in acks if a[3] > 1)

    result = {
        "acked": len(acks),
        "lost": len(lost),
        "duplicates": len(duplicated),
        "misplaced": len(misplaced),
        "max_stall_s": round(stall, 3),
        "stall_at_s": round(stall_at, 1),
        "stream_messages": state["messages"],
        "stream_last_seq": state["last_seq"],
        "stored_not_acked": unacked_stored,
        "acks_after_retry": retried_acks,
        "stream_leader": info.get("cluster", {}).get("leader"),
        "replicas_agree": not disagreeing,
    }
    print("rolling: result " + json.dumps(result), flush=True)
    for what, items in (("lost", lost), ("misplaced", misplaced), ("duplicated", list(duplicated.items()))):
        if items:
            print(f"rolling: {what} (first 10): {items[:10]}", file=sys.stderr)
    violations = []
    if lost:
        violations.append(f"{len(lost)} acknowledged messages lost")
    if duplicated:
        violations.append(f"{len(duplicated)} ids stored more than once")
    if misplaced:
        violations.append(f"{len(misplaced)} stored at another sequence than acknowledged")
    if not acks:
        violations.append("nothing was acknowledged")
    if disagreeing:
        violations.append(f"replicas differ from the leader's {expected} (messages, last_seq): {disagreeing}")
    if stall > args.max_stall:
        violations.append(f"writes stalled {stall:.1f} s (> {args.max_stall} s) at {stall_at:.1f} s")
    if args.result:
        with open(args.result, "w") as f:
            json.dump({**result, "violations": violations}, f)
    for v in violations:
        print(f"rolling: VIOLATION: {v}", file=sys.stderr)
    return 1 if violations else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["publish", "check", "leader"])
    p.add_argument("--servers", required=True, help="comma-separated nats:// URLs")
    p.add_argument("--stream", default="ROLLING")
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--ack-log", default="")
    p.add_argument("--summary", default="", help="publish writes, check reads its timings")
    p.add_argument("--monitor-urls", default="", help="check: comma-separated http:// monitoring URLs")
    p.add_argument("--stop-file", default="", help="publish stops once this file exists")
    p.add_argument("--ready-file", default="", help="publish creates it once publishing starts")
    p.add_argument("--result", default="", help="check writes its result as JSON here")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--ack-timeout", type=float, default=2.0)
    p.add_argument("--max-attempts", type=int, default=200, help="per message")
    p.add_argument("--retry-seconds", type=float, default=30, help="per message: give up after")
    p.add_argument("--max-seconds", type=float, default=600)
    p.add_argument("--max-messages", type=int, default=1_000_000)
    p.add_argument("--max-stall", type=float, default=10.0)
    p.add_argument("--ready-timeout", type=float, default=120)
    args = p.parse_args()
    if args.command == "publish":
        return asyncio.run(publish(args))
    if args.command == "leader":
        return asyncio.run(leader(args))
    return asyncio.run(check(args))


if __name__ == "__main__":
    sys.exit(main())
