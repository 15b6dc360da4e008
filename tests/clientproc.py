"""Client processes for tests: a consumer or a producer of ``metaq_fast.client`` in a process of
its own, plus the test-side handle that starts, reads and stops it by PID.

Run as a script (``cwd`` = the repository root)::

    python -m tests.clientproc consume --zk HOSTS/CHROOT --group G --topic T --consumer-id c0 \
        --out records.txt --state state.json [--max-records N] [--fetch-bytes B]
    python -m tests.clientproc produce --zk HOSTS/CHROOT --topic T --count N --prefix p \
        --out sent.txt

``consume`` appends one line per received record to ``--out``, ``<partition> <offset> <payload
hex>``, and flushes after every poll, *before* the next ``poll`` marks those records consumed:
so whatever the consumer committed is in the file, and a ``kill -9`` can only cause
redelivery, never a gap. Each time its assignment changes it rewrites ``--state`` (JSON, via a
temporary file and ``os.replace``): ``{"consumer_id", "pid", "assignment": {topic: [partition
strings]}, "records", "closed"}`` and logs the change on stdout. SIGTERM (or ``--max-records``
reached) closes the consumer cleanly (commit, leave the group) and writes ``"closed": true``.
Its ZooKeeper session uses ``--session-timeout-s`` (default 4, as the brokers of the tests):
``Consumer`` takes a started kazoo client for that.

``produce`` sends ``--count`` messages ``<prefix>-<i:08d>`` round robin and appends ``ok
<partition> <offset> <payload>`` or ``err <ExceptionType> <payload>`` per message.

Test side: ``ConsumerProc`` / ``ProducerProc`` start the script with ``start_new_session=True``
and the brokers' parent-death signal (``tests.brokers.die_with_parent``), read its files, and
stop it by PID only (``terminate``: SIGTERM then SIGKILL; ``kill``: SIGKILL).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


# =================================================================================================
# The test side
# =================================================================================================


def _complete_lines(path: Path) -> list[str]:
    """Lines of ``path`` that are complete (a writer may be in the middle of the last one)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    return lines[:-1]  # the piece after the last newline is unfinished (or empty)


class _Proc:
    """A script process started by a test; stopped by its PID only."""

    def __init__(self, directory: Path, name: str, argv: list[str], host=None,
                 module: str = "tests.clientproc"):
        self.host = host  # a tests.cluster.netns.Host to run in (None: this namespace)
        self.module = module
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.argv = argv
        self.log_path = self.directory / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "_Proc":
        from tests.brokers import die_with_parent

        with open(self.log_path, "ab") as log:
            argv = [sys.executable, "-m", self.module, *self.argv]
            if self.host is not None:
                argv = self.host.command(argv)
            self.proc = subprocess.Popen(
                argv, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True,
                preexec_fn=die_with_parent)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout_s: float) -> int:
        return self.proc.wait(timeout_s)

    def terminate(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (a clean close), then SIGKILL if it does not exit in ``timeout_s``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9, by PID."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class ConsumerProc(_Proc):
    def __init__(self, directory: Path, *, zk: str, group: str, topic: str, consumer_id: str,
                 name: str | None = None, max_records: int = 0, fetch_bytes: int = 1 << 20,
                 commit_interval_ms: float = 1000.0, session_timeout_s: float = 4.0,
                 max_batches: int = 64, host=None):
        name = name or f"consumer-{group}-{consumer_id}"
        self.out_path = Path(directory) / f"{name}.records"
        self.state_path = Path(directory) / f"{name}.state.json"
        self.group = group
        self.full_id = f"{group}_{consumer_id}"
        super().__init__(directory, name, [
            "consume", "--zk", zk, "--group", group, "--topic", topic, "--consumer-id",
            consumer_id, "--out", str(self.out_path), "--state", str(self.state_path),
            "--max-records", str(max_records), "--fetch-bytes", str(fetch_bytes),
            "--commit-interval-ms", str(commit_interval_ms), "--session-timeout-s",
            str(session_timeout_s), "--max-batches", str(max_batches)], host=host)

    def records(self) -> list[tuple[str, int, bytes]]:
        """Every record written so far: (partition string, offset, payload), in arrival order."""
        out = []
        for line in _complete_lines(self.out_path):
            partition, offset, payload = line.split(" ")
            out.append((partition, int(offset), bytes.fromhex(payload)))
        return out

    def payloads(self) -> list[bytes]:
        return [payload for _, _, payload in self.records()]

    def state(self) -> dict | None:
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None

    def assignment(self, topic: str) -> list[str] | None:
        """Partitions it reported owning last (None before its first report)."""
        state = self.state()
        return None if state is None else state["assignment"].get(topic, [])


class ProducerProc(_Proc):
    def __init__(self, directory: Path, *, zk: str, topic: str, count: int, prefix: str,
                 name: str | None = None):
        name = name or f"producer-{prefix}"
        self.out_path = Path(directory) / f"{name}.sent"
        super().__init__(directory, name, [
            "produce", "--zk", zk, "--topic", topic, "--count", str(count), "--prefix", prefix,
            "--out", str(self.out_path)])

    def results(self) -> list[tuple[str, str, str]]:
        """(``ok``/``err``, partition or error type, payload) per message written so far."""
        out = []
        for line in _complete_lines(self.out_path):
            fields = line.split(" ")
            out.append((fields[0], fields[1], fields[-1]))
        return out


def stop_all(procs) -> None:
    """Stop every process of ``procs`` that still runs (SIGTERM, then SIGKILL), by PID."""
    for proc in procs:
        if proc.alive():
            proc.proc.send_signal(signal.SIGTERM)
    for proc in procs:
        if proc.proc is not None:
            try:
                proc.proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


# ---- ZooKeeper and broker reads for the tests ----------------------------------------------------


def _children_data(zk, path: str) -> dict[str, str]:
    """``{child: its data as text}`` under ``path``; {} if it is missing, and children deleted
    meanwhile are left out."""
    from kazoo.exceptions import NoNodeError

    try:
        children = zk.get_children(path)
    except NoNodeError:
        return {}
    found = {}
    for child in children:
        try:
            data, _ = zk.get(f"{path}/{child}")
        except NoNodeError:
            continue
        found[child] = data.decode("utf-8")
    return found


def owners(zk, group: str, topic: str, root: str = "/meta") -> dict[str, str]:
    """``{partition string: owning consumer id}`` from ``consumers/<group>/owners/<topic>``."""
    return _children_data(zk, f"{root}/consumers/{group}/owners/{topic}")


def committed_offsets(zk, group: str, topic: str,
                      root: str = "/meta") -> dict[str, tuple[int, int]]:
    """``{partition string: (msg id, offset)}`` from ``consumers/<group>/offsets/<topic>``."""
    found = {}
    for child, text in _children_data(zk, f"{root}/consumers/{group}/offsets/{topic}").items():
        msg_id, _, offset = text.rpartition("-")
        found[child] = (int(msg_id), int(offset))
    return found


# ---- brokers and a producer thread shared by the client tests ------------------------------------


def start_brokers(brokers, zk_connect: str, topic: str, partitions: int, ids=(0, 1)) -> dict:
    """One single-worker broker per id (``brokers`` fixture), each with ``partitions`` of
    ``topic``."""
    return {i: brokers(f"b{i}", zk_connect=zk_connect, broker_id=i, workers=1,
                       topics={topic: {"numPartitions": partitions}}) for i in ids}


class Sender(threading.Thread):
    """Sends unique payloads ``<prefix>-<n>`` to ``topic`` in chunks of ``chunk``, waiting for
    each chunk's results (then ``pace_s``, load shaping), until stopped; bounded by
    ``max_messages`` and ``max_s``."""

    def __init__(self, producer, topic: str, prefix: bytes, chunk: int = 20, pace_s: float = 0.0,
                 max_messages: int = 20_000, max_s: float = 30.0):
        super().__init__(daemon=True, name=f"sender-{prefix.decode(errors='replace')}")
        self.producer, self.topic, self.prefix = producer, topic, prefix
        self.chunk, self.pace_s = chunk, pace_s
        self.max_messages, self.max_s = max_messages, max_s
        self.stop_event = threading.Event()
        self.ok: list[tuple[bytes, object]] = []  # (payload, SendResult)
        self.failed: list[tuple[bytes, BaseException]] = []
        self.unexpected: list[BaseException] = []

    def run(self) -> None:
        from metaq_fast.errors import MetaqError

        deadline = time.monotonic() + self.max_s
        i = 0
        try:
            while (not self.stop_event.is_set() and time.monotonic() < deadline
                   and i < self.max_messages):
                futures = []
                for _ in range(self.chunk):
                    payload = b"%s-%08d" % (self.prefix, i)
                    i += 1
                    futures.append((payload, self.producer.send(self.topic, payload)))
                for payload, future in futures:
                    try:
                        self.ok.append((payload, future.result(60)))
                    except MetaqError as exc:
                        self.failed.append((payload, exc))
                if self.pace_s:
                    self.stop_event.wait(self.pace_s)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.unexpected.append(exc)

    def finish(self) -> None:
        self.stop_event.set()
        self.join(90)
        assert not self.is_alive(), "sender hung"
        assert self.unexpected == [], self.unexpected


def read_partition(port: int, topic: str, partition: int) -> dict[int, tuple[int, bytes]]:
    """Every record of one partition of a broker, ``{offset: (msg id, payload)}``, read with
    plain MetaQ ``get`` requests (CRCs checked)."""
    from metaq_fast.message import MessageSet
    from metaq_fast.protocol import ResultReply
    from tests.brokers import WireClient

    client = WireClient(port)
    out: dict[int, tuple[int, bytes]] = {}
    offset = 0
    try:
        for opaque in range(1, 1_000_000):
            reply = client.request(b"get %s g %d %d 1048576 %d\r\n" % (
                topic.encode(), partition, offset, opaque))
            if isinstance(reply, ResultReply):
                if reply.code == 301 and int(bytes(reply.body)) > offset:
                    offset = int(bytes(reply.body))
                    continue
                assert reply.code == 404, (reply.code, bytes(reply.body))
                break
            decoded = MessageSet.decode(bytes(reply.data), offset)
            for msg in decoded:
                out[msg.offset] = (msg.msg_id, msg.payload)
            offset = decoded.next_offset
    finally:
        client.close()
    return out


# =================================================================================================
# The script side
# =================================================================================================


def _write_state(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def _consume(args) -> int:
    from kazoo.client import KazooClient

    from metaq_fast.client.consumer import Consumer

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    zk = KazooClient(hosts=args.zk, timeout=args.session_timeout_s)
    zk.start(timeout=15)
    consumer = Consumer(zk_client=zk, group=args.group, topics=[args.topic],
                        consumer_id=args.consumer_id, fetch_bytes=args.fetch_bytes,
                        commit_interval_ms=args.commit_interval_ms)
    state = {"consumer_id": consumer.consumer_id, "pid": os.getpid(), "assignment": None,
             "records": 0, "closed": False}
    out_path = Path(args.out)
    state_path = Path(args.state)
    received = 0
    with open(out_path, "a") as out:
        while not stop.is_set():
            batches = consumer.poll(timeout_s=0.2, max_batches=args.max_batches)
            lines = []
            for batch in batches:
                for offset, payload in zip(batch.offsets.tolist(), batch.payloads()):
                    lines.append(f"{batch.partition} {offset} {payload.hex()}\n")
            if lines:
                out.write("".join(lines))
                out.flush()  # before the next poll marks these records consumed
                received += len(lines)
            assignment = consumer.assignment()
            if assignment != state["assignment"]:
                state["assignment"] = assignment
                state["records"] = received
                _write_state(state_path, state)
                print(f"{time.time():.3f} {consumer.consumer_id} owns {assignment}", flush=True)
            if args.max_records and received >= args.max_records:
                break
    consumer.close()
    state.update(assignment={}, records=received, closed=True)
    _write_state(state_path, state)
    print(f"{time.time():.3f} {consumer.consumer_id} closed after {received} records", flush=True)
    zk.stop()
    zk.close()
    return 0


def _produce(args) -> int:
    from metaq_fast.client.producer import Producer

    producer = Producer(args.zk)
    payloads = [f"{args.prefix}-{i:08d}" for i in range(args.count)]
    futures = [producer.send(args.topic, p.encode()) for p in payloads]
    producer.flush(60)
    with open(args.out, "a") as out:
        for payload, future in zip(payloads, futures):
            error = future.exception()
            if error is None:
                result = future.result()
                out.write(f"ok {result.partition} {result.offset} {payload}\n")
            else:
                out.write(f"err {type(error).__name__} {payload}\n")
    producer.close()
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.clientproc")
    sub = parser.add_subparsers(dest="command", required=True)
    consume = sub.add_parser("consume")
    consume.add_argument("--zk", required=True)
    consume.add_argument("--group", required=True)
    consume.add_argument("--topic", required=True)
    consume.add_argument("--consumer-id", required=True)
    consume.add_argument("--out", required=True)
    consume.add_argument("--state", required=True)
    consume.add_argument("--max-records", type=int, default=0)
    consume.add_argument("--fetch-bytes", type=int, default=1 << 20)
    consume.add_argument("--commit-interval-ms", type=float, default=1000.0)
    consume.add_argument("--session-timeout-s", type=float, default=4.0)
    consume.add_argument("--max-batches", type=int, default=64)
    produce = sub.add_parser("produce")
    produce.add_argument("--zk", required=True)
    produce.add_argument("--topic", required=True)
    produce.add_argument("--count", type=int, required=True)
    produce.add_argument("--prefix", required=True)
    produce.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    import logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return _consume(args) if args.command == "consume" else _produce(args)


if __name__ == "__main__":
    sys.exit(main())
