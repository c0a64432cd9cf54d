#!/usr/bin/env python3
"""Publisher and checker of the power-cut test.

`publish` waits for the guest's server, creates the stream if it is missing, publishes with acks
from several concurrent tasks and appends every acknowledged (id, seq) to the ack log as it
arrives; after the seeded cut time it kills qemu with SIGKILL (the power cut) while publishes are
in flight. `check` reads every acknowledged sequence back with $JS.API.STREAM.MSG.GET and compares
the content; it prints the totals per round and exits 1 on any loss. Every wait has a deadline.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import signal
import sys
import time

import nats
from nats.errors import NoServersError, TimeoutError as NatsTimeout

STREAM = "POWERCUT"
SUBJECT = "powercut.msg"


def payload_for(round_no: int, msg_id: int, size: int) -> bytes:
    """The content of message `msg_id` of round `round_no`: its id, then a filler derived from it."""
    head = f"{round_no}:{msg_id}:".encode()
    filler = hashlib.sha256(head).hexdigest().encode()
    body = (filler * (size // len(filler) + 1))[: max(0, size - len(head))]
    return head + body


async def quiet(_err) -> None:
    """nats-py logs every refused connect while the guest boots; the deadline reports failure."""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


async def connect(url: str, deadline: float, qemu_pid: int):
    """Connects once the server answers INFO; slirp accepts TCP before the guest listens."""
    last = None
    while time.monotonic() < deadline:
        if not alive(qemu_pid):
            raise SystemExit("powercut: qemu exited before the server was ready (see the boot log)")
        try:
            return await nats.connect(
                url,
                error_cb=quiet,
                allow_reconnect=False,
                connect_timeout=2,
                max_reconnect_attempts=0,
            )
        except (NoServersError, OSError, asyncio.TimeoutError, NatsTimeout) as e:
            last = e
        except Exception as e:  # nats-py raises assorted errors while the guest still boots
            last = e
        await asyncio.sleep(0.5)
    raise SystemExit(f"powercut: server at {url} not ready before the deadline ({last!r})")


async def js_request(nc, subject: str, body: dict, timeout: float) -> dict:
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=timeout)
    return json.loads(msg.data)


async def wait_jetstream(nc, deadline: float) -> dict:
    """Waits until the JetStream API answers (after a power cut the store recovers first)."""
    last = None
    while time.monotonic() < deadline:
        try:
            return await js_request(nc, "$JS.API.INFO", {}, 2)
        except Exception as e:
            last = e
            await asyncio.sleep(0.5)
    raise SystemExit(f"powercut: JetStream API did not answer before the deadline ({last!r})")


async def ensure_stream(nc) -> None:
    info = await js_request(nc, f"$JS.API.STREAM.INFO.{STREAM}", {}, 10)
    if "error" not in info:
        return
    config = {
        "name": STREAM,
        "subjects": [SUBJECT],
        "storage": "file",
        "retention": "limits",
        "num_replicas": 1,
    }
    created = await js_request(nc, f"$JS.API.STREAM.CREATE.{STREAM}", config, 10)
    if "error" in created:
        raise SystemExit(f"powercut: stream create failed: {created['error']}")


async def publish(args) -> int:
    begun = time.monotonic()
    deadline = time.monotonic() + args.ready_timeout
    nc = await connect(args.url, deadline, args.qemu_pid)
    info = await wait_jetstream(nc, deadline)
    if "error" in info:
        raise SystemExit(f"powercut: JetStream not enabled: {info['error']}")
    await ensure_stream(nc)
    print(f"powercut: round {args.round}: server ready {time.monotonic() - begun:.1f} s after the publisher started")

    next_id = args.first_id
    acked = 0
    errors = 0
    stop = asyncio.Event()
    log = open(args.ack_log, "a", buffering=1)

    async def worker() -> None:
        nonlocal next_id, acked, errors
        while not stop.is_set():
            msg_id = next_id
            next_id += 1
            data = payload_for(args.round, msg_id, args.size)
            try:
                msg = await nc.request(SUBJECT, data, timeout=args.ack_timeout)
            except Exception:
                errors += 1
                if stop.is_set() or nc.is_closed:
                    return
                continue
            ack = json.loads(msg.data)
            if "error" in ack or "seq" not in ack:
                errors += 1
                continue
            # Recorded the moment it arrives: this message has been acknowledged.
            log.write(f"{args.round} {msg_id} {ack['seq']}\n")
            acked += 1

    started = time.monotonic()
    tasks = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
    await asyncio.sleep(args.cut_after)
    # The power cut: qemu dies with the guest's page cache; only what reached the disk file stays.
    os.kill(args.qemu_pid, signal.SIGKILL)
    cut_at = time.monotonic() - started
    await asyncio.sleep(0.5)
    stop.set()
    try:
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), args.ack_timeout + 5)
    except asyncio.TimeoutError:
        for t in tasks:
            t.cancel()
    try:
        await asyncio.wait_for(nc.close(), 5)
    except Exception:
        pass
    log.close()
    print(
        f"powercut: round {args.round}: {acked} acknowledged in {cut_at:.1f} s "
        f"({acked / max(cut_at, 0.001):.0f}/s, concurrency {args.concurrency}), "
        f"power cut at {cut_at:.1f} s, {errors} unacknowledged or failed"
    )
    with open(args.next_id_file, "w") as f:
        f.write(str(next_id))
    return 0 if acked > 0 else 2


async def check(args) -> int:
    acks = []
    if os.path.exists(args.ack_log):
        with open(args.ack_log) as f:
            for line in f:
                r, i, s = line.split()
                acks.append((int(r), int(i), int(s)))
    deadline = time.monotonic() + args.ready_timeout
    nc = await connect(args.url, deadline, args.qemu_pid)
    await wait_jetstream(nc, deadline)
    info = await js_request(nc, f"$JS.API.STREAM.INFO.{STREAM}", {}, 10)
    state = info.get("state", {}) if "error" not in info else {}
    per_round: dict[int, list[int]] = {}
    lost_examples = []
    async def is_present(r: int, i: int, s: int) -> bool:
        resp = await js_request(nc, f"$JS.API.STREAM.MSG.GET.{STREAM}", {"seq": s}, 10)
        msg = resp.get("message")
        if msg is None:
            return False
        data = base64.b64decode(msg.get("data", ""))
        return data == payload_for(r, i, args.size) and msg.get("subject") == SUBJECT

    batch = 64  # requests in flight at once: bounded, and far faster than one by one
    for start in range(0, len(acks), batch):
        chunk = acks[start : start + batch]
        if "error" in info:
            found = [False] * len(chunk)
        else:
            found = await asyncio.gather(*(is_present(r, i, s) for r, i, s in chunk))
        for (r, i, s), ok in zip(chunk, found):
            counts = per_round.setdefault(r, [0, 0])
            counts[0] += 1
            if ok:
                counts[1] += 1
            elif len(lost_examples) < 5:
                lost_examples.append(f"round {r} id {i} seq {s}")
    await nc.close()

    total = sum(c[0] for c in per_round.values())
    present = sum(c[1] for c in per_round.values())
    stream_state = (
        f"stream holds {state.get('messages', 0)} messages, seq {state.get('first_seq', 0)}..{state.get('last_seq', 0)}"
        if "error" not in info
        else f"stream missing ({info['error'].get('description', info['error'])})"
    )
    print(f"powercut: check after boot {args.boot}: {stream_state}")
    for r in sorted(per_round):
        a, p = per_round[r]
        print(f"powercut:   round {r}: acked {a}, present {p}, lost {a - p}")
    print(f"powercut: total: acked {total}, present {present}, lost {total - present}")
    if lost_examples:
        print(f"powercut: first lost: {', '.join(lost_examples)}")
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump({"acked": total, "present": present, "lost": total - present,
                       "rounds": {str(r): {"acked": a, "present": p} for r, (a, p) in per_round.items()}}, f)
    return 1 if present < total else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("publish", "check"):
        s = sub.add_parser(name)
        s.add_argument("--url", required=True)
        s.add_argument("--ack-log", required=True)
        s.add_argument("--size", type=int, default=256)
        s.add_argument("--ready-timeout", type=float, default=180)
        s.add_argument("--qemu-pid", type=int, required=True)
    pub = sub.choices["publish"]
    pub.add_argument("--round", type=int, required=True)
    pub.add_argument("--first-id", type=int, required=True)
    pub.add_argument("--next-id-file", required=True)
    pub.add_argument("--cut-after", type=float, required=True)
    pub.add_argument("--concurrency", type=int, default=16)
    pub.add_argument("--ack-timeout", type=float, default=10)
    chk = sub.choices["check"]
    chk.add_argument("--boot", type=int, default=0)
    chk.add_argument("--summary")
    args = p.parse_args()
    if args.cmd == "publish":
        return asyncio.run(publish(args))
    return asyncio.run(check(args))


if __name__ == "__main__":
    sys.exit(main())
