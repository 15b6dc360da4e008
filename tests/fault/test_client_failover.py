"""Client failover under kill -9: a consumer process of a group, then a broker under a producer.

* A consumer killed while messages flow: its owner nodes vanish with its ZooKeeper session
  (4 s), the survivors take its partitions over with MetaQ's DEFAULT split within the session
  timeout + 2 s, and the union of what every consumer received holds every message sent
  (at-least-once: redelivery allowed, loss not).
* A broker killed while a producer sends: the producer moves to the remaining broker; the share
  of sends that failed after retries is measured and printed; every failure is a ``MetaqError``
  subclass; every acknowledged message is at its partition/offset afterwards, on the survivor
  and, after a restart, on the killed broker's disk.

Real ZooKeeper, real broker processes (``brokers`` fixture), consumer processes from
``tests/clientproc.py`` stopped by PID in ``finally``. No fixed sleeps; every loop is bounded.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque

import pytest

from metaq_fast.client.balance import assign_all
from metaq_fast.client.producer import Producer, SendResult
from metaq_fast.errors import BrokerConnectionError, MetaqError
from metaq_fast.zk.paths import Partition
from tests.clientproc import ConsumerProc, Sender, owners, read_partition, stop_all
from tests.clientproc import start_brokers as shared_start_brokers
from tests.helpers import wait_until

pytestmark = [pytest.mark.zk, pytest.mark.slow, pytest.mark.timeout(120)]

TOPIC = "orders"
PARTS_PER_BROKER = 2
SESSION_TIMEOUT_S = 4.0  # brokers (tests.brokers.server_ini) and consumer processes alike


def start_brokers(brokers, zk_connect: str, ids=(0, 1)) -> dict:
    return shared_start_brokers(brokers, zk_connect, TOPIC, PARTS_PER_BROKER, ids)


def expected_owners(consumer_ids, partitions) -> dict[str, str]:
    return {part: cid for cid, parts in assign_all(consumer_ids, partitions).items()
            for part in parts}


def producer_state(producer: Producer) -> str:
    """The producer's internals, for a failure message (best effort: private fields)."""
    try:
        return _producer_state(producer)
    except Exception as exc:  # noqa: BLE001 - only a diagnostic
        return f"(producer state unavailable: {exc!r})"


def _producer_state(producer: Producer) -> str:
    return (f"unfinished {producer._unfinished}, queued {producer._queued}, in flight "
            f"{producer._in_flight}, filling {len(producer._filling)}, failed attempts "
            f"{producer.failed_attempts}, dead until {producer._dead_until}, partitions "
            f"{producer.partitions_for(TOPIC)}, sender thread alive {producer._sender.is_alive()}"
            f", now {time.monotonic():.2f}\n{thread_stacks()}")


def thread_stacks() -> str:
    import sys
    import traceback
    names = {t.ident: t.name for t in threading.enumerate()}
    return "\n".join(f"--- {names.get(ident, ident)}\n" + "".join(traceback.format_stack(frame))
                     for ident, frame in sys._current_frames().items())


def PacedSender(producer: Producer, prefix: bytes, chunk: int = 10, pace_s: float = 0.01,
                max_messages: int = 20_000, max_s: float = 40.0) -> Sender:
    """A ``Sender`` of ``TOPIC`` that waits ``pace_s`` between chunks."""
    return Sender(producer, TOPIC, prefix, chunk=chunk, pace_s=pace_s, max_messages=max_messages,
                  max_s=max_s)


# ---- 2. a consumer killed with kill -9 ---------------------------------------------------------


def test_killed_consumer_partitions_are_taken_over_and_nothing_is_skipped(
        brokers, zk_connect, zk_client, tmp_path):
    start_brokers(brokers, zk_connect)
    partitions = [f"{b}-{p}" for b in (0, 1) for p in range(PARTS_PER_BROKER)]
    group = "kill"
    procs = [ConsumerProc(tmp_path / "clients", zk=zk_connect, group=group, topic=TOPIC,
                          consumer_id=cid, commit_interval_ms=1000) for cid in ("c0", "c1", "c2")]
    producer = Producer(zk_connect)
    sender = PacedSender(producer, b"flow")
    try:
        for proc in procs:
            proc.start()
        everyone = [p.full_id for p in procs]
        wait_until(lambda: owners(zk_client, group, TOPIC) == expected_owners(everyone, partitions)
                   and all(p.assignment(TOPIC) == assign_all(everyone, partitions)[p.full_id]
                           for p in procs),
                   timeout_s=20, message=lambda: f"not balanced: {owners(zk_client, group, TOPIC)}")
        sender.start()
        wait_until(lambda: all(len(p.records()) >= 50 for p in procs), timeout_s=20,
                   message=lambda: f"records per consumer: {[len(p.records()) for p in procs]}")

        victim = procs[0]  # group_c0 sorts first: it owns two partitions
        assert victim.assignment(TOPIC) == ["0-0", "0-1"]
        survivors = procs[1:]
        owned_before = {p.full_id: set(p.assignment(TOPIC)) for p in survivors}
        victim.kill()
        killed = time.monotonic()
        sent_at_kill = len(sender.ok)
        want = expected_owners([p.full_id for p in survivors], partitions)
        wait_until(lambda: owners(zk_client, group, TOPIC) == want,
                   timeout_s=SESSION_TIMEOUT_S + 2.0, interval_s=0.05,
                   message=lambda: f"{time.monotonic() - killed:.1f} s after kill -9: owners "
                                   f"{owners(zk_client, group, TOPIC)}, want {want}")
        took = time.monotonic() - killed
        print(f"\nowner nodes point at the survivors {took:.2f} s after kill -9 "
              f"(session timeout {SESSION_TIMEOUT_S:g} s)")
        assert sorted(zk_client.get_children(f"/meta/consumers/{group}/ids")) == sorted(
            p.full_id for p in survivors)
        wait_until(lambda: all(p.assignment(TOPIC) == [k for k, v in sorted(want.items())
                                                       if v == p.full_id] for p in survivors),
                   timeout_s=5, message="survivors do not report the new assignment")
        # Messages keep flowing after the takeover, then stop.
        wait_until(lambda: len(sender.ok) >= sent_at_kill + 2000, timeout_s=30,
                   message="sends stalled after the consumer was killed")
        sender.finish()
        assert sender.failed == []
        sent = {payload for payload, _ in sender.ok}

        def missing() -> set:
            return sent - {p for proc in procs for p in proc.payloads()}

        wait_until(lambda: not missing(), timeout_s=30,
                   message=lambda: f"{len(missing())} of {len(sent)} messages never received, "
                                   f"e.g. {sorted(missing())[:5]}")
        received = [p for proc in procs for p in proc.payloads()]
        print(f"{len(sent)} messages sent, {len(received)} received "
              f"({len(received) - len(set(received))} redelivered after the kill)")
        assert set(received) == sent
        # Survivors only got partitions they own now or owned before the kill.
        for proc in survivors:
            allowed = owned_before[proc.full_id] | {k for k, v in want.items() if v == proc.full_id}
            assert {part for part, _, _ in proc.records()} <= allowed, (proc.full_id, allowed)
    finally:
        if sender.is_alive():
            sender.stop_event.set()
            sender.join(90)
        producer.close()
        stop_all(procs)


# ---- 4. a broker killed with kill -9 under a sending producer ----------------------------------


@pytest.mark.parametrize("retries", [3, 0], ids=["retries-3", "no-retry"])
def test_killed_broker_producer_fails_over_and_acknowledged_messages_survive(
        retries, brokers, zk_connect, zk_client):
    """``retries=3`` is the producer's default; ``retries=0`` is MetaQ's one attempt, where the
    sends caught by the kill fail instead of being sent again elsewhere."""
    bs = start_brokers(brokers, zk_connect)
    victim, survivor = bs[0], bs[1]
    producer = Producer(zk_connect, request_timeout_s=5.0, retries=retries)
    pinned: list = []
    stop = threading.Event()
    ok: list[tuple[bytes, SendResult, float]] = []
    failed: list[tuple[bytes, BaseException, float]] = []
    unexpected: list[BaseException] = []
    window = 400
    rate = 4000.0

    def settle(entry) -> None:
        payload, future = entry
        try:
            ok.append((payload, future.result(60), time.monotonic()))
        except MetaqError as exc:
            failed.append((payload, exc, time.monotonic()))

    def send_loop() -> None:
        # At most 30 s or 120,000 messages, about `rate` per second (load shaping), `window`
        # sends in flight at most.
        pending: deque = deque()
        began = time.monotonic()
        deadline = began + 30.0
        try:
            for i in range(120_000):
                if stop.is_set() or time.monotonic() > deadline:
                    break
                if i % 100 == 0:
                    stop.wait(max(0.0, began + i / rate - time.monotonic()))
                if len(pending) >= window:
                    settle(pending.popleft())
                payload = b"fo-%08d" % i
                pending.append((payload, producer.send(TOPIC, payload)))
            while pending:
                settle(pending.popleft())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            unexpected.append(exc)

    thread = threading.Thread(target=send_loop, daemon=True, name="failover-sender")
    try:
        thread.start()
        wait_until(lambda: len(ok) >= 3000, timeout_s=20, message="sends did not start")
        assert {r.partition.broker_id for _, r, _ in ok} == {0, 1}
        killed = time.monotonic()
        victim.kill()  # kill -9 of the supervisor; its worker follows
        if not retries:  # a send pinned to the dead broker's partition fails, typed
            pinned.append(producer.send(TOPIC, b"pinned", partition="0-0"))
        wait_until(lambda: all(p.broker_id == 1 for p in producer.partitions_for(TOPIC)),
                   timeout_s=SESSION_TIMEOUT_S + 5, message="broker 0 still in the producer's view")
        gone = time.monotonic()
        at_gone = len(ok)
        wait_until(lambda: len(ok) >= at_gone + 3000 and ok[-1][2] > gone + 2.0, timeout_s=20,
                   message=lambda: f"sends stalled after the failover: {len(ok) - at_gone} ok, "
                                   f"{len(failed)} failed; {producer_state(producer)}; sender "
                                   f"alive {thread.is_alive()}, {unexpected}")
    finally:
        stop.set()
        thread.join(90)
        producer.close()
    assert not thread.is_alive() and unexpected == [], unexpected
    total = len(ok) + len(failed)
    share = len(failed) / total
    after_kill = [entry for entry in ok + failed if entry[2] >= killed]
    failed_after_kill = [entry for entry in failed if entry[2] >= killed]
    print(f"\nbroker kill -9 under load, retries={retries}: {total} sends, {len(failed)} failed "
          f"after retries ({100 * share:.3f} %); since the kill {len(after_kill)} sends, "
          f"{len(failed_after_kill)} failed; broker left the producer's view "
          f"{gone - killed:.2f} s after the kill")
    print(f"failed-send errors: {sorted({type(e).__name__ for _, e, _ in failed})}"
          + (f", e.g. {failed[0][1]}" if failed else ""))
    # Failures are loud and typed, never silent; and they only happen around the kill.
    assert all(isinstance(e, MetaqError) for _, e, _ in failed)
    assert all(t >= killed for _, _, t in failed)
    assert share < 0.05, f"{100 * share:.2f} % of sends failed"
    if not retries:
        with pytest.raises(BrokerConnectionError, match="broker|127.0.0.1"):
            pinned[0].result(30)
    # Once broker 0 left ZooKeeper, everything went to broker 1 and succeeded.
    late = [r for _, r, t in ok if t > gone + 1.0]
    assert late and all(r.partition.broker_id == 1 for r in late)
    assert not [e for e in failed if e[2] > gone + 1.0]

    # Every acknowledged message is at its partition/offset: on the survivor now, and on the
    # killed broker's disk after restarting it (its acks were fsynced: group commit).
    on_survivor = {p: read_partition(survivor.port, TOPIC, p) for p in range(PARTS_PER_BROKER)}
    victim.start()
    on_victim = {p: read_partition(victim.port, TOPIC, p) for p in range(PARTS_PER_BROKER)}
    stored = {0: on_victim, 1: on_survivor}
    lost = [(payload, str(r.partition), r.offset) for payload, r, _ in ok
            if stored[r.partition.broker_id][r.partition.partition].get(r.offset)
            != (r.msg_id, payload)]
    assert not lost, f"{len(lost)} acknowledged messages not found: {lost[:5]}"
    acked_on_victim = sum(1 for _, r, _ in ok if r.partition.broker_id == 0)
    print(f"verified all {len(ok)} acknowledged messages ({acked_on_victim} on the killed broker, "
          f"after its restart)")
    assert Partition(0, 0) in {r.partition for _, r, _ in ok}


# ---- a broker that stops answering (SIGSTOP) ---------------------------------------------------


def test_unanswering_broker_times_out_and_the_producer_moves_on(brokers, zk_connect):
    """A broker that keeps its connections open but answers nothing (SIGSTOP: a hung host):
    each put to it fails after ``request_timeout_s`` with ``RequestTimeoutError`` and is retried
    on the other broker; no future is left unresolved."""
    bs = start_brokers(brokers, zk_connect)
    victim = bs[0]
    frozen = [victim.pid, *victim.worker_pids()]
    producer = Producer(zk_connect, request_timeout_s=2.0)
    sender = PacedSender(producer, b"hung", chunk=20, pace_s=0.005)
    try:
        sender.start()
        wait_until(lambda: len(sender.ok) >= 500, timeout_s=15, message="no sends answered")
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        at_stop = len(sender.ok)
        wait_until(lambda: len(sender.ok) >= at_stop + 2000, timeout_s=30,
                   message=lambda: f"sends stalled while broker 0 was stopped: "
                                   f"{len(sender.ok) - at_stop} ok, {len(sender.failed)} failed; "
                                   f"{producer_state(producer)}")
        resumed_after = time.monotonic() - stopped
        sender.finish()
    finally:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if sender.is_alive():
            sender.stop_event.set()
            sender.join(90)
        producer.close()
    after = [r for _, r in sender.ok[at_stop:]]
    print(f"\nbroker 0 stopped: {len(after)} sends answered after it "
          f"(first 2000 within {resumed_after:.2f} s), {len(sender.failed)} failed, "
          f"{producer.failed_attempts} attempts timed out or failed and were retried")
    assert all(isinstance(e, MetaqError) for _, e in sender.failed)
    assert len(sender.failed) <= 0.05 * (len(sender.ok) + len(sender.failed))
    assert producer.failed_attempts > 0  # puts to the stopped broker did time out
    assert sum(1 for r in after if r.partition.broker_id == 1) >= 2000 - 100
