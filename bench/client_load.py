"""Client-library throughput with nothing else in the process: what the API itself costs.

    .venv/bin/python bench/client_load.py [--messages 3000000] [--runs 3] [--workers 2]
                                          [--batch 1000] [--set unflushThreshold=1000 ...]

``metaq-bench`` builds self-checking payloads (sequence number, time stamp, check) and verifies
each one as it is consumed, which costs the producer and consumer processes time of their own.
This probe measures the library alone: one producer process sends pre-built 100-byte payloads
with ``Producer.send_batch`` (``--batch`` messages a batch, default 1000; 8 batches in flight), then one consumer process
(``Consumer.poll``, a fresh group) reads the topic back. Each phase runs in its own process, as
a user's producer and consumer would. Checked: every batch acknowledged, and the consumer gets
exactly as many messages as were sent, with the payload bytes of the sent messages (the client
checks each fetched message set's xxh3, or each record's CRC for MetaQ's plain get).

Starts a throw-away local cluster (real ZooKeeper and broker, as ``metaq-bench --local``) per
run; prints each run and the medians.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from metaq_fast.benchtool.cluster import LocalCluster, parse_settings  # noqa: E402

TOPIC = "bench"
IN_FLIGHT = 8


def produce(zk: str, messages: int, size: int, batch: int, out) -> None:
    from metaq_fast.client.producer import Producer

    payloads = [(b"%08d" % i).ljust(size, b"p") for i in range(batch)]
    producer = Producer(zk, batch_size=batch)
    try:
        while not producer.partitions_for(TOPIC):
            time.sleep(0.02)
        pending: deque = deque()
        sent = 0
        began = time.perf_counter()
        cpu_began = time.process_time()
        while sent < messages:
            count = min(batch, messages - sent)
            pending.append((count, producer.send_batch(TOPIC, payloads[:count])))
            sent += count
            while len(pending) >= IN_FLIGHT:
                expected, future = pending.popleft()
                assert len(future.result(60).offsets) == expected
        while pending:
            pending.popleft()[1].result(60)
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu_began
        out.put(("produce", sent, elapsed, cpu))
    finally:
        producer.close()


def consume(zk: str, messages: int, size: int, batch: int, out) -> None:
    from metaq_fast.client.consumer import Consumer

    consumer = Consumer(zk, group=f"probe-{time.monotonic_ns()}", topics=[TOPIC])
    expected = {(b"%08d" % i).ljust(size, b"p") for i in range(batch)}
    try:
        got = 0
        began = None
        deadline = time.monotonic() + 120
        checked = 0
        cpu_began = time.process_time()
        while got < messages and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_s=0.5):
                if began is None:
                    began = time.perf_counter()
                got += len(batch)
                if checked < 10:  # the payload bytes are what was sent (a sample per run)
                    assert set(batch.messages.payloads()) <= expected
                    checked += 1
        elapsed = time.perf_counter() - (began or time.perf_counter())
        out.put(("consume", got, elapsed, time.process_time() - cpu_began))
    finally:
        consumer.close()


def one_run(args) -> dict:
    cluster = LocalCluster(config=None, topic=TOPIC, partitions=2, workers=args.workers,
                           settings=parse_settings(args.set))
    ctx = multiprocessing.get_context("spawn")
    results = {}
    try:
        zk = cluster.start()
        for phase in (produce, consume):
            out = ctx.Queue()
            proc = ctx.Process(target=phase, args=(zk, args.messages, args.size, args.batch, out))
            proc.start()
            name, count, seconds, cpu_s = out.get(timeout=300)
            proc.join(60)
            if count != args.messages:
                raise SystemExit(f"{name}: {count} messages, expected {args.messages}")
            results[name] = count / seconds
            results[f"{name} process CPU share"] = cpu_s / seconds
    finally:
        cluster.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3_000_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1000, help="messages per send_batch")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="server.ini override, e.g. unflushThreshold=0")
    args = parser.parse_args()
    runs = []
    for i in range(args.runs):
        r = one_run(args)
        runs.append(r)
        print(f"run {i + 1}: " + ", ".join(_show(k, v) for k, v in r.items()), flush=True)
    print(f"median of {args.runs}: " + ", ".join(
        _show(k, statistics.median(r[k] for r in runs)) for k in runs[0]))


def _show(name: str, value: float) -> str:
    return f"{name} {value:.2f}" if name.endswith("share") else f"{name} {value:,.0f} msg/s"


if __name__ == "__main__":
    main()
