"""The cluster scenarios' workload and its auditor.

Producers run as processes on their own hosts (``python -m tests.cluster.workload produce``):
each sends payloads ``<producer id>:<sequence, 10 digits>:`` padded to ``--size`` bytes, in
chunks of ``--chunk`` at about ``--rate`` messages a second, for ``--seconds`` (and at most
``--max-messages``), through ``metaq_fast.client.Producer`` with its retries, round robin or
pinned to one partition (``--partition``, the way a key-ordered user sends). After each chunk
it appends one line per message to ``--out``: ``ok <seq> <partition> <offset> <time>`` or ``err
<seq> <error type> <time>`` (a send refused at once, e.g. no broker, is an ``err`` too), so a
kill leaves complete lines only. SIGTERM ends it after the chunk in hand.

Consumers are ``tests.clientproc`` consumer processes (records written before they count as
consumed). ``audit`` reads both sides and reports, per run: sent, acknowledged, failed sends
(%), and per group consumed (unique), lost (acknowledged but never consumed: must be 0),
duplicates (deliveries beyond the first), rewinds (a consumer delivering a partition's offsets
out of order within its stream: at-least-once redelivery after an ownership change, else a
defect), out of order (a producer's messages stored in a partition in another order than it sent
them: a retried batch landing behind a later one), and the longest gap between
acknowledgements (how long the producers saw no progress).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.clientproc import ConsumerProc, _complete_lines, _Proc


# =================================================================================================
# The test side
# =================================================================================================


class ProducerLoad(_Proc):
    def __init__(self, directory: Path, *, host, zk: str, topic: str, producer_id: str,
                 rate: int = 500, seconds: float = 30.0, chunk: int = 20, size: int = 64,
                 max_messages: int = 200_000, session_timeout_s: float = 4.0,
                 partition: str | None = None, max_in_flight: int = 8, batch_size: int = 1000):
        self.producer_id = producer_id
        self.partition = partition
        self.out_path = Path(directory) / f"producer-{producer_id}.sent"
        super().__init__(directory, f"producer-{producer_id}", [
            "produce", "--zk", zk, "--topic", topic, "--producer-id", producer_id,
            "--rate", str(rate), "--seconds", str(seconds), "--chunk", str(chunk),
            "--size", str(size), "--max-messages", str(max_messages), "--out",
            str(self.out_path), "--session-timeout-s", str(session_timeout_s),
            "--max-in-flight", str(max_in_flight), "--batch-size", str(batch_size)] + (["--partition", partition] if partition else []),
            host=host, module="tests.cluster.workload")

    def results(self) -> list[tuple]:
        """(``ok``, seq, partition, offset, time) or (``err``, seq, error type, None, time)."""
        out = []
        for line in _complete_lines(self.out_path):
            f = line.split(" ")
            if f[0] == "ok":
                out.append(("ok", int(f[1]), f[2], int(f[3]), float(f[4])))
            else:
                out.append(("err", int(f[1]), f[2], None, float(f[3])))
        return out

    def acked(self) -> int:
        return sum(1 for r in self.results() if r[0] == "ok")


@dataclass
class GroupAudit:
    consumed: int = 0
    lost: int = 0
    duplicates: int = 0
    rewinds: int = 0
    lost_examples: list = field(default_factory=list)


@dataclass
class Audit:
    sent: int
    acked: int
    failed: int
    max_ack_gap_s: float
    out_of_order: dict[str, int]  # per producer id
    groups: dict[str, GroupAudit]

    @property
    def failed_pct(self) -> float:
        return 100.0 * self.failed / self.sent if self.sent else 0.0

    def summary(self) -> str:
        groups = "; ".join(f"{g}: consumed {a.consumed} lost {a.lost} duplicates {a.duplicates} "
                           f"rewinds {a.rewinds}" for g, a in sorted(self.groups.items()))
        return (f"sent {self.sent} acked {self.acked} failed {self.failed} "
                f"({self.failed_pct:.2f}%) out of order {sum(self.out_of_order.values())} "
                f"max ack gap {self.max_ack_gap_s:.2f} s; {groups}")


def parse_payload(payload: bytes) -> tuple[str, int] | None:
    parts = payload.split(b":", 2)
    if len(parts) < 3 or not parts[1].isdigit():
        return None
    return parts[0].decode(), int(parts[1])


def audit(producers: list[ProducerLoad], groups: dict[str, list[ConsumerProc]]) -> Audit:
    acked: set[tuple[str, int]] = set()
    sent = failed = 0
    ack_times: list[float] = []
    for producer in producers:
        for kind, seq, _where, _offset, at in producer.results():
            sent += 1
            if kind == "ok":
                acked.add((producer.producer_id, seq))
                ack_times.append(at)
            else:
                failed += 1
    ack_times.sort()
    gap = max((b - a for a, b in zip(ack_times, ack_times[1:])), default=0.0)
    out_of_order = {p.producer_id: stored_out_of_order(p.results()) for p in producers}
    report = {}
    for group, consumers in groups.items():
        seen: dict[tuple[str, int], int] = {}
        rewinds = 0
        for consumer in consumers:
            last: dict[str, int] = {}
            for partition, offset, payload in consumer.records():
                key = parse_payload(payload)
                if key is not None:
                    seen[key] = seen.get(key, 0) + 1
                if partition in last and offset <= last[partition]:
                    rewinds += 1
                last[partition] = offset
        lost = sorted(acked - seen.keys())
        report[group] = GroupAudit(consumed=len(seen.keys() & acked) if acked else len(seen),
                                   lost=len(lost), duplicates=sum(seen.values()) - len(seen),
                                   rewinds=rewinds, lost_examples=lost[:10])
    return Audit(sent=sent, acked=len(acked), failed=failed, max_ack_gap_s=gap,
                 out_of_order=out_of_order, groups=report)


def stored_out_of_order(results: list[tuple]) -> int:
    """How many of one producer's acknowledged messages sit in their partition's log behind a
    message it sent later: per partition, the sequence numbers in offset order, counted where
    one is lower than the highest before it."""
    by_partition: dict[str, list[tuple[int, int]]] = {}
    for kind, seq, partition, offset, _at in results:
        if kind == "ok":
            by_partition.setdefault(partition, []).append((offset, seq))
    count = 0
    for stored in by_partition.values():
        stored.sort()
        highest = -1
        for _offset, seq in stored:
            if seq < highest:
                count += 1
            highest = max(highest, seq)
    return count


# =================================================================================================
# The script side
# =================================================================================================


def _produce(args) -> int:
    from metaq_fast.client.producer import Producer
    from metaq_fast.errors import MetaqError

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    producer = Producer(args.zk, zk_session_timeout_s=args.session_timeout_s, retries=5,
                        retry_backoff_ms=100.0, request_timeout_s=5.0, linger_ms=2.0,
                        max_in_flight=args.max_in_flight, batch_size=args.batch_size)
    pad = max(0, args.size)
    started = time.monotonic()
    seq = 0
    with open(args.out, "a") as out:
        while (not stop and seq < args.max_messages
               and time.monotonic() - started < args.seconds):
            chunk_start = time.monotonic()
            pending = []
            for _ in range(min(args.chunk, args.max_messages - seq)):
                payload = f"{args.producer_id}:{seq:010d}:".encode().ljust(pad, b".")
                try:
                    pending.append((seq, producer.send(args.topic, payload,
                                                       partition=args.partition), None))
                except MetaqError as exc:
                    pending.append((seq, None, exc))
                seq += 1
            lines = []
            for n, future, error in pending:
                if future is not None:
                    try:
                        result = future.result(timeout=60)
                    except Exception as exc:  # noqa: BLE001 - recorded as a failed send
                        error = exc
                    else:
                        lines.append(f"ok {n} {result.partition} {result.offset} {time.time():.4f}\n")
                        continue
                lines.append(f"err {n} {type(error).__name__} {time.time():.4f}\n")
            out.write("".join(lines))
            out.flush()
            if any(line.startswith("err") for line in lines):
                time.sleep(0.1)  # nothing took them: do not spin on a cluster in a gap
            budget = args.chunk / max(1, args.rate) - (time.monotonic() - chunk_start)
            if budget > 0:
                time.sleep(budget)
    producer.close(timeout_s=30)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.workload")
    sub = parser.add_subparsers(dest="command", required=True)
    produce = sub.add_parser("produce")
    produce.add_argument("--zk", required=True)
    produce.add_argument("--topic", required=True)
    produce.add_argument("--producer-id", required=True)
    produce.add_argument("--rate", type=int, default=500)
    produce.add_argument("--seconds", type=float, default=30.0)
    produce.add_argument("--chunk", type=int, default=20)
    produce.add_argument("--size", type=int, default=64)
    produce.add_argument("--max-messages", type=int, default=200_000)
    produce.add_argument("--out", required=True)
    produce.add_argument("--session-timeout-s", type=float, default=4.0)
    produce.add_argument("--partition", help="pin every message to this <brokerId>-<partition>")
    produce.add_argument("--max-in-flight", type=int, default=8)
    produce.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return _produce(args)


if __name__ == "__main__":
    sys.exit(main())
