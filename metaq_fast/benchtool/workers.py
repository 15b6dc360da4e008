"""The load-generating processes of ``metaq-bench``: producers, MetaQ-put senders, consumers.

Imports: stdlib, numpy, metaq_fast.client (Producer, Consumer, balance), zk (session, paths,
cluster view), protocol, benchtool.payload.

Each function below is the body of one child process (started by ``runner`` with the ``spawn``
method, so no kazoo thread of the parent is forked). A child:

1. ignores SIGINT (Ctrl-C belongs to the parent, which stops everything) and gets SIGTERM when
   the parent dies (``PR_SET_PDEATHSIG``);
2. connects, then sets ``ready[i]`` and waits for the ``go`` event; ``t0`` (CLOCK_MONOTONIC ns)
   is the common start of the phase;
3. runs until its share is done, the ``duration`` has passed, or ``stop`` is set, publishing its
   progress in ``progress[i]`` (acknowledged messages for senders, distinct valid messages for
   consumers);
4. puts ``(kind, i, result dict)`` on the result queue, or ``("error", i, traceback)``.

A consumer reports ready only once the group has settled: every expected member is registered
and it owns exactly the partitions MetaQ's balancing gives it, so no consumer reads early and
none of the timed phase is spent rebalancing.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
import traceback
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..pdeath import die_with_parent
from .payload import LatencyHistogram, PayloadFactory, Samples, Verifier

SAMPLE_INTERVAL_S = 0.01  # throughput samples: messages per 10 ms (JSON, plot)
PUT_OPAQUE_FIRST = 1000  # opaques cycle through 1000..9999: every put line has the same width
PUT_OPAQUES = 9000


@dataclass(frozen=True)
class Spec:
    """Everything a child needs (pickled into it)."""

    zk: str
    zk_root: str
    topic: str
    size: int
    run_id: int
    group: str
    producers: int
    consumers: int
    partitions_total: int
    counts: tuple | None  # messages per producer, or None with a duration
    duration_s: float | None
    batch_size: int
    linger_ms: float
    in_flight: int
    api: str  # "batch" (send_batch) or "send" (one send per message; the producer batches)
    random_payload: bool
    fetch_bytes: int
    max_fetch_delay_ms: float
    rate: float | None  # messages/s of all producers together, or None: as fast as possible
    put_window: int
    put_chunk: int
    log_level: str = "WARNING"
    fault: str | None = None  # test only: "drop:N", "dup:N" or "corrupt:N" (see _inject)


class Shared:
    """The parent's synchronisation objects for one group of children (pickled at spawn)."""

    def __init__(self, ctx, n: int):
        self.go = ctx.Event()
        self.stop = ctx.Event()
        self.t0 = ctx.Value("q", 0, lock=False)
        self.ready = ctx.Array("b", n, lock=False)
        self.progress = ctx.Array("q", n, lock=False)
        self.results = ctx.Queue()


def _child_setup(spec: Spec) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    logging.basicConfig(level=getattr(logging, spec.log_level, logging.WARNING),
                        format=f"%(asctime)s {os.getpid()} %(name)s %(levelname)s %(message)s")
    if spec.log_level != "DEBUG":
        # closing a consumer with fetches in flight is normal here, not worth a warning
        logging.getLogger("metaq_fast.client.connection").setLevel(logging.ERROR)


def _run_child(kind: str, body, spec: Spec, index: int, shared: Shared) -> None:
    _child_setup(spec)
    try:
        shared.results.put((kind, index, body(spec, index, shared)))
    except BaseException:  # noqa: BLE001 - reported to the parent, which fails the run
        shared.results.put(("error", index, f"{kind} {index} (pid {os.getpid()}):\n"
                                            f"{traceback.format_exc()}"))
    finally:
        shared.results.close()
        shared.results.join_thread()


def producer_process(spec: Spec, index: int, shared: Shared) -> None:
    _run_child("producer", _produce, spec, index, shared)


def put_process(spec: Spec, index: int, shared: Shared) -> None:
    _run_child("producer", _metaq_put, spec, index, shared)


def consumer_process(spec: Spec, index: int, shared: Shared) -> None:
    _run_child("consumer", _consume, spec, index, shared)


class _SendLoop:
    """Bookkeeping shared by both sender kinds: numbering, acks, failures, samples."""

    def __init__(self, spec: Spec, index: int, shared: Shared):
        self.spec = spec
        self.index = index
        self.shared = shared
        self.factory = PayloadFactory(spec.size, spec.run_id, index, spec.random_payload,
                                      seed=spec.run_id * 1000 + index)
        self.total = spec.counts[index] if spec.counts is not None else None
        self.seq = 0
        self.acked = 0
        self.failed_ranges: list[tuple[int, int]] = []
        self.errors: list[str] = []
        self.latency = LatencyHistogram()
        self.samples: Samples | None = None
        self.deadline_ns = None
        # pacing: this producer's share of --rate, in ns per message
        self.pace_ns = spec.producers * 1e9 / spec.rate if spec.rate else 0.0
        self.t0 = 0
        self.end_ns = 0

    def start(self) -> None:
        self.shared.ready[self.index] = 1
        while not self.shared.go.wait(0.2):
            if self.shared.stop.is_set():
                break
        self.t0 = self.shared.t0.value
        self.samples = Samples(self.t0, SAMPLE_INTERVAL_S)
        if self.spec.duration_s is not None:
            self.deadline_ns = self.t0 + int(self.spec.duration_s * 1e9)

    def next_count(self, batch: int, idle=None) -> int:
        """How many messages the next batch holds (0 = done). With ``--rate``, waits until the
        batch is due, calling ``idle()`` first (to take in acks that arrived meanwhile)."""
        if self.shared.stop.is_set():
            return 0
        if self.pace_ns:
            due = self.t0 + int(self.seq * self.pace_ns)
            if idle is not None and due > time.monotonic_ns():
                idle()
            while (wait := due - time.monotonic_ns()) > 0:
                if self.shared.stop.wait(min(wait / 1e9, 0.5)):
                    return 0
        if self.total is not None:
            return max(0, min(batch, self.total - self.seq))
        return batch if time.monotonic_ns() < self.deadline_ns else 0

    def settled(self, first: int, count: int, sent_ns: int, error: BaseException | None,
                acked_ns: int = 0) -> None:
        now = acked_ns or time.monotonic_ns()
        if error is not None:
            self.failed_ranges.append((first, count))
            if len(self.errors) < 5:
                self.errors.append(f"{type(error).__name__}: {error}")
            return
        self.acked += count
        self.shared.progress[self.index] = self.acked
        self.samples.add(now, count)
        self.latency.add_one_ns(now - sent_ns, weight=count)
        self.end_ns = now

    def result(self) -> dict:
        failed = None
        if self.failed_ranges:
            failed = np.zeros(self.seq, dtype=bool)
            for first, count in self.failed_ranges:
                failed[first : first + count] = True
        return {"sent": self.seq, "acked": self.acked, "failed": failed, "errors": self.errors,
                "latency": self.latency, "samples": self.samples.trimmed(),
                "end_ns": self.end_ns or time.monotonic_ns(), "t0": self.t0}


def _produce(spec: Spec, index: int, shared: Shared) -> dict:
    from ..client.producer import Producer
    from ..limits import BATCH_BYTES_MAX_DEFAULT

    producer = Producer(spec.zk, zk_root=spec.zk_root, batch_size=spec.batch_size,
                        batch_bytes=BATCH_BYTES_MAX_DEFAULT, linger_ms=spec.linger_ms)
    try:
        deadline = time.monotonic() + 30
        while not producer.partitions_for(spec.topic):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no broker publishes topic {spec.topic!r}")
            time.sleep(0.05)
        loop = _SendLoop(spec, index, shared)
        batch_max = max(1, min(spec.batch_size, BATCH_BYTES_MAX_DEFAULT // (spec.size + 20)))
        pending: deque = deque()

        def settle(item) -> None:
            futures, first, count, sent_ns, acked = item
            error = None
            try:
                if spec.api == "batch":
                    futures.result(60)
                else:
                    for f in futures:
                        if f.exception(60) is not None:
                            error = f.exception()
                            break
            except Exception as exc:  # noqa: BLE001 - any failure counts against the run
                error = exc
            loop.settled(first, count, sent_ns, error, acked[0])

        def stamp(acked: list):
            """A done-callback noting when the ack came (the loop may look much later)."""
            return lambda _f: acked.__setitem__(0, time.monotonic_ns())

        def settle_done() -> None:
            while pending and pending[0][4][0]:
                settle(pending.popleft())

        loop.start()
        while True:
            count = loop.next_count(batch_max, settle_done)
            if not count:
                break
            sent_ns = time.monotonic_ns()
            views = loop.factory.payloads(loop.seq, count, sent_ns)
            acked = [0]
            if spec.api == "batch":
                futures = producer.send_batch(spec.topic, views)
                futures.add_done_callback(stamp(acked))
            else:
                send = producer.send
                futures = [send(spec.topic, v) for v in views]
                futures[-1].add_done_callback(stamp(acked))  # batches go out in order
            pending.append((futures, loop.seq, count, sent_ns, acked))
            loop.seq += count
            while len(pending) >= spec.in_flight:
                settle(pending.popleft())
        if spec.api != "batch":
            producer.flush(60)
        while pending:
            settle(pending.popleft())
        return loop.result()
    finally:
        producer.close()


class Replies:
    """Counts put reply frames on a socket and checks each is a success, at C speed: put reply
    bodies are digits and spaces, so ``b"result "`` can only start a frame (from
    bench/broker_load.py)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.surplus = 0  # replies already counted for later read() calls

    def read(self, count: int, expect: bytes = b"result 200 ") -> None:
        if self.surplus >= count:
            self.surplus -= count
            return
        got = self.surplus
        buf = self.buf
        while True:
            end = self._complete_end(buf)
            frames = buf.count(b"result ", 0, end)
            if frames:
                ok = buf.count(expect, 0, end)
                if ok != frames:
                    at = buf.find(b"result ", 0, end)
                    while buf.startswith(expect, at):
                        at = buf.find(b"result ", at + 1, end)
                    raise RuntimeError(f"broker refused a put: {buf[at:at + 160]!r}")
                got += frames
                buf = buf[end:]
            if got >= count:
                break
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("broker closed the connection")
            buf = buf + data if buf else data
        self.buf = buf
        self.surplus = got - count

    @staticmethod
    def _complete_end(buf: bytes) -> int:
        """End of the last complete frame in ``buf``."""
        last = buf.rfind(b"result ")
        if last < 0:
            return 0
        eol = buf.find(b"\r\n", last)
        if eol < 0:
            return last
        length = int(buf[last:eol].split(b" ")[2])
        return eol + 2 + length if eol + 2 + length <= len(buf) else last


def put_lines(topic: str, partition: int, size: int) -> np.ndarray:
    """MetaQ put command lines (flag 0, checksum -1), one row per opaque 1000..9999."""
    text = b"".join(b"put %s %d %d 0 -1 %d\r\n" % (topic.encode(), partition, size, PUT_OPAQUE_FIRST + i)
                    for i in range(PUT_OPAQUES))
    return np.frombuffer(text, dtype=np.uint8).reshape(PUT_OPAQUES, -1)


def _metaq_put(spec: Spec, index: int, shared: Shared) -> dict:
    """MetaQ's single-message put, pipelined on one connection to the main port of the broker
    of partition ``index`` (mod the partition count); ``put_window`` puts in flight, sent in
    chunks of ``put_chunk``. Ack latency is per chunk (send of the chunk -> its last reply)."""
    from ..zk.cluster import ClusterView
    from ..zk.paths import parse_broker_url
    from ..zk.session import open_client

    zk = open_client(spec.zk)
    try:
        with ClusterView(zk, spec.zk_root) as view:
            deadline = time.monotonic() + 30
            while not (parts := view.publish_partitions(spec.topic)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no broker publishes topic {spec.topic!r}")
                time.sleep(0.05)
            target = parts[index % len(parts)]
            host, port = parse_broker_url(view.broker_url(target.broker_id))
    finally:
        zk.stop()
        zk.close()
    sock = socket.create_connection((host, port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        lines = put_lines(spec.topic, target.partition, spec.size)
        width = lines.shape[1]
        replies = Replies(sock)
        loop = _SendLoop(spec, index, shared)
        chunk = max(1, spec.put_chunk)
        window_chunks = max(1, spec.put_window // chunk)
        pending: deque = deque()
        def settle_all() -> None:
            while pending:
                first, n, t = pending.popleft()
                replies.read(n)
                loop.settled(first, n, t, None)

        loop.start()
        while True:
            count = loop.next_count(chunk, settle_all)
            if not count:
                break
            sent_ns = time.monotonic_ns()
            payloads = loop.factory.make(loop.seq, count, sent_ns)
            request = np.empty((count, width + spec.size), dtype=np.uint8)
            request[:, :width] = lines[np.arange(loop.seq, loop.seq + count) % PUT_OPAQUES]
            request[:, width:] = payloads
            sock.sendall(memoryview(request.reshape(-1)))
            pending.append((loop.seq, count, sent_ns))
            loop.seq += count
            while len(pending) >= window_chunks:
                first, n, t = pending.popleft()
                replies.read(n)
                loop.settled(first, n, t, None)
        settle_all()
        return loop.result()
    finally:
        sock.close()


def _consume(spec: Spec, index: int, shared: Shared) -> dict:
    from kazoo.exceptions import NoNodeError

    from ..client import balance
    from ..client.consumer import Consumer
    from ..zk import paths

    consumer = Consumer(spec.zk, zk_root=spec.zk_root, group=spec.group, topics=[spec.topic],
                        consumer_id=f"bench-{spec.run_id:08x}-{index}", fetch_bytes=spec.fetch_bytes,
                        max_fetch_delay_ms=spec.max_fetch_delay_ms, queued_batches_max=2)
    try:
        verifier = Verifier(spec.size, spec.run_id, spec.producers, spec.counts,
                            interval_s=SAMPLE_INTERVAL_S)
        ids_path = paths.consumer_ids_path(paths.normalize_root(spec.zk_root), spec.group)
        zk = consumer.zk
        while not shared.go.is_set() and not shared.stop.is_set():
            try:
                members = zk.get_children(ids_path)
            except NoNodeError:
                members = []
            parts = consumer.cluster.subscribe_partitions(spec.topic)
            mine = consumer.assignment().get(spec.topic, [])
            want = balance.assign(consumer.consumer_id, members, parts) if members else []
            shared.ready[index] = int(len(members) == spec.consumers
                                      and len(parts) == spec.partitions_total
                                      and sorted(mine) == sorted(want))
            shared.go.wait(0.02)
        verifier.samples.t0_ns = t0 = shared.t0.value
        add = verifier.add
        fault = spec.fault if index == 0 else None
        while not shared.stop.is_set():
            batches = consumer.poll(timeout_s=0.05)
            if not batches:
                continue
            now = time.monotonic_ns()
            for batch in batches:
                messages = batch.messages
                if fault:
                    _inject(fault, verifier, messages, now)
                    fault = None
                    continue
                add(messages.buf, messages.positions, messages.lengths, now,
                    (batch.partition, messages.base_offset))
            shared.progress[index] = verifier.state.unique
        return {"state": verifier.state, "latency": verifier.latency,
                "samples": verifier.samples.trimmed(), "t0": t0}
    finally:
        consumer.close()


def _inject(fault: str, verifier: Verifier, messages, now: int) -> None:
    """Test hook (``--inject-fault``): hand the verifier one batch with the first N records
    dropped, repeated or damaged, to prove that a wrong delivery fails the run."""
    kind, _, count = fault.partition(":")
    n = min(int(count or 1), len(messages.positions))
    buf, positions, lengths = messages.buf, messages.positions, messages.lengths
    if kind == "drop":
        verifier.add(buf, positions[n:], lengths[n:], now)
    elif kind == "dup":
        verifier.add(buf, positions, lengths, now)
        verifier.add(buf, positions[:n], lengths[:n], now)
    elif kind == "corrupt":
        damaged = bytearray(buf)
        for position, length in zip(positions[:n].tolist(), lengths[:n].tolist()):
            damaged[position + 20 + length - 1] ^= 0x55  # the payload's last byte
        verifier.add(bytes(damaged), positions, lengths, now)
    else:
        raise ValueError(f"unknown fault {fault!r}")
