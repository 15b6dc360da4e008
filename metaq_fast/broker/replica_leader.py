"""A master's worker as the source of its slaves: answers ``replicate`` fetches, keeps what each
follower holds, and holds the replies of puts that must be replicated first.

Imports: asyncio, metaq_fast.protocol / errors / layout and broker.replica_control. No
ZooKeeper: the supervisor says who is in sync (``ReplicaRole``) and reads what followers hold
from the shared ``ReplicaProgress`` block.

Fetches (protocol/replication.py): each listed partition this worker owns gets what the slave
lacks (whole records of one segment and one epoch, up to the request's byte budget), a
``diverged`` entry when the slave's last epoch ends earlier here (KIP-320), ``reset`` when its
offset was deleted, ``missing`` without a store; owned partitions the request did not list but
that fall to the asking slave worker are announced with ``reset`` at their first offset. A
request with no news waits (long poll) until an append or a new partition, or ``maxWaitMs``:
the follower's next fetch starts as soon as there is something, which is what makes synchronous
replication cost one round trip.

Followers' positions: the offsets a fetch lists are what that follower holds (in its mapping;
flushed in group commit), and count once the answer finds them ours (not diverged, not to be
reset); positions of an earlier term are forgotten when the role or epoch changes. A follower counts as caught up on this worker when its fetch reached
the log ends this worker had at its previous answer (Kafka's lastCaughtUpTime), or the ends of
now. That time and the lag are published for the supervisor, which keeps the in-sync set (ISR).

Acknowledgements (``minInSyncReplicas`` > 1, the synchronous mode): a put's reply waits until
every follower of the ISR holds its records; it fails (503) when the ISR shrinks below
``minInSyncReplicas``, and after ``2 x replicaLagMaxMs`` if the ISR could not be shrunk
(a master cut from ZooKeeper must not wait forever: it is being replaced). While the ISR is too
small, puts are refused at once (``put_refusal``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from ..errors import SERVICE_UNAVAILABLE, SUCCESS, MetaqError, OffsetOutOfRangeError
from ..layout import owner_of
from ..protocol import ReplicaEntry, ReplicateCommand, encode_replica_entries, encode_result
from ..storage import NotRecordBoundaryError
from .connection import Pending
from .replica_control import ReplicaProgress, ReplicaRole, now_ms, replica_index

log = logging.getLogger(__name__)

EXPIRY_CHECK_S = 0.1
# Entries that answer a parked fetch at once; "missing" and "failed" wait for the next news or
# the end of the wait (answered at once, the follower would ask again at once, in a loop).
NEWS = frozenset({"data", "diverged", "reset"})


class NotEnoughReplicasError(MetaqError):
    """Fewer copies than ``minInSyncReplicas`` can hold a put (Kafka's NOT_ENOUGH_REPLICAS)."""

    code = SERVICE_UNAVAILABLE
    retriable = True
    replication = True


class _SlotState:
    """What one follower worker (a slot of the slave broker) fetched from this worker."""

    __slots__ = ("prev_ends", "prev_answer_ms", "caught_up_ms", "lag_bytes")

    def __init__(self):
        self.prev_ends: dict[tuple[str, int], int] = {}
        self.prev_answer_ms = 0
        self.caught_up_ms = 0
        self.lag_bytes = 0


class _Follower:
    __slots__ = ("slots", "positions", "by_slot")

    def __init__(self):
        self.slots = 1
        self.positions: dict[tuple[str, int], int] = {}
        self.by_slot: dict[int, _SlotState] = {}


class _Parked:
    __slots__ = ("conn", "cmd", "pending", "deadline_s")

    def __init__(self, conn, cmd, pending, deadline_s):
        self.conn, self.cmd, self.pending, self.deadline_s = conn, cmd, pending, deadline_s


class ReplicaLeader:
    def __init__(self, loop: asyncio.AbstractEventLoop, table, slot: int, workers: int,
                 progress: ReplicaProgress | None, broker_url: str, ack_timeout_s: float):
        self.loop = loop
        self.table = table
        self.slot = slot
        self.workers = workers
        self.progress = progress
        self.broker_url = broker_url
        self.ack_timeout_s = ack_timeout_s
        self.role = ReplicaRole()
        self.put_refusal: str | None = None
        self._followers: dict[str, _Follower] = {}
        self._parked: list[_Parked] = []
        self._wake_scheduled = False
        self._waits: dict[tuple[str, int], deque] = {}  # (end, future, since_s), ends rising
        self._timer: asyncio.TimerHandle | None = None

    # ---- role (from the supervisor) ---------------------------------------------------------

    def set_role(self, role: ReplicaRole) -> None:
        if (role.is_master, role.epoch) != (self.role.is_master, self.role.epoch):
            self._followers.clear()  # positions of another term prove nothing in this one
        self.role = role
        if not role.is_master:
            self.put_refusal = None
            self._fail_all_waits(f"broker is no longer the master (now follows {role.leader})")
            for parked in self._parked:
                self._answer_error(parked.conn, parked.pending, parked.cmd, "no longer the master")
            self._parked.clear()
            return
        if len(role.isr) < role.min_isr and role.min_isr > 1:
            self.put_refusal = (f"not enough in-sync replicas: {len(role.isr)} of "
                                f"minInSyncReplicas={role.min_isr} ({', '.join(role.isr)})")
            self._fail_all_waits(self.put_refusal)
        else:
            self.put_refusal = None
            for key in list(self._waits):
                self._release(key)

    # ---- fetches ----------------------------------------------------------------------------

    def fetch(self, out, cmd: ReplicateCommand) -> None:
        """Answer (or park) one ``replicate`` request of connection ``out``."""
        problem = self._refusal(cmd)
        if problem is not None:
            out.write(encode_result(SERVICE_UNAVAILABLE, problem.encode(), cmd.opaque))
            return
        try:
            positions = cmd.positions()
        except MetaqError as exc:
            out.write(encode_result(400, str(exc).encode(), cmd.opaque))
            return
        follower = self._followers.setdefault(cmd.replica, _Follower())
        follower.slots = cmd.slots
        entries = self._entries(cmd, positions)
        # What the follower holds counts only where it holds our records: not where it
        # diverged, must start again, or could not be served.
        unsure = {(e.topic, e.partition) for e in entries if e.kind != "data"}
        for p in positions:
            key = (p.topic, p.partition)
            if key not in unsure:
                follower.positions[key] = p.offset
                if key in self._waits:
                    self._release(key)
            else:
                follower.positions.pop(key, None)
        if any(e.kind in NEWS for e in entries) or cmd.max_wait_ms == 0:
            self._answered(cmd, positions, unsure)
            self._write_answer(out, cmd, entries)
            return
        pending = _park(out)
        self._parked.append(_Parked(out, cmd, pending, time.monotonic() + cmd.max_wait_ms / 1e3))
        if not unsure:
            self._answered_nothing(cmd, positions)
        self._ensure_timer()

    def _refusal(self, cmd: ReplicateCommand) -> str | None:
        role = self.role
        try:
            replica_index(cmd.replica)
        except ValueError as exc:
            return str(exc)
        if not role.is_master:
            return f"{self.broker_url} is not the master: it follows {role.leader}"
        if cmd.epoch > role.epoch:
            return (f"{self.broker_url} is master in epoch {role.epoch}, the slave follows "
                    f"epoch {cmd.epoch}: this master is stale")
        if cmd.replica == role.replica:
            return f"replica {cmd.replica} cannot follow itself"
        return None

    def appended(self) -> None:
        """Records were appended or a partition created: parked fetches may have news (checked
        once per loop iteration, however many appends it made)."""
        if self._parked and not self._wake_scheduled:
            self._wake_scheduled = True
            self.loop.call_soon(self._wake)

    def _wake(self) -> None:
        self._wake_scheduled = False
        parked, self._parked = self._parked, []
        now = time.monotonic()
        for p in parked:
            if p.conn.closed:
                continue
            positions = p.cmd.positions()
            entries = self._entries(p.cmd, positions)
            if any(e.kind in NEWS for e in entries) or now >= p.deadline_s:
                self._answered(p.cmd, positions, {(e.topic, e.partition) for e in entries
                                                  if e.kind != "data"})
                _resolve(p.conn, p.pending, self._answer_bytes(p.cmd, entries))
            else:
                self._parked.append(p)

    def _entries(self, cmd: ReplicateCommand, positions) -> list[ReplicaEntry]:
        entries, budget, listed = [], cmd.max_bytes, set()
        logs = self.table.logs
        for p in positions:
            key = (p.topic, p.partition)
            listed.add(key)
            if owner_of(p.topic, p.partition, self.workers) != self.slot:
                entries.append(ReplicaEntry("failed", p.topic, p.partition,
                                            reason=f"owned by another worker than {self.slot}"))
                continue
            log_ = logs.get(key)
            if log_ is None:
                if self.table.view(p.topic, p.partition) is None:
                    entries.append(ReplicaEntry("missing", p.topic, p.partition))
                continue
            entry = self._entry(log_, p, budget if budget > 0 else 0)
            if entry is not None:
                entries.append(entry)
                budget -= len(entry.data)
        for key, log_ in logs.items():
            if key not in listed and owner_of(key[0], key[1], cmd.slots) == cmd.slot:
                entries.append(self._reset(log_))
        return entries

    @staticmethod
    def _reset(log_) -> ReplicaEntry:
        """Start again, empty, where our log starts (with the epoch of its first record)."""
        first = log_.first_offset
        return ReplicaEntry("reset", log_.topic, log_.partition, offset=first,
                            epoch=log_.epochs.epoch_at(first))

    def _entry(self, log_, p, budget: int) -> ReplicaEntry | None:
        end, first = log_.visible_end, log_.first_offset
        epochs = log_.epochs
        if p.offset < first:
            return self._reset(log_)
        if p.offset > first:  # the follower holds records here: are they ours? (KIP-320)
            found, epoch_end = epochs.end_offset_for(p.last_epoch, end)
            if found != p.last_epoch or p.offset > epoch_end:
                if epoch_end < first:  # its last epoch ends before what we still have
                    return self._reset(log_)
                return ReplicaEntry("diverged", p.topic, p.partition, offset=epoch_end,
                                    epoch=found)
        segment_start = log_.segment_start_of(p.offset)
        if p.offset == end or budget <= 0:
            if p.offset == end and segment_start > p.segment_start:
                return ReplicaEntry("data", p.topic, p.partition, p.offset, segment_start,
                                    epochs.epoch_at(p.offset), end)  # the master began a segment
            return None
        following = epochs.next_start_after(p.offset)
        limit = budget if following is None else min(budget, following - p.offset)
        try:
            part = log_.read_records(p.offset, limit)
            if not len(part.lengths):  # one record larger than the budget goes alone
                part = log_.read_records(p.offset, part.first_record_bytes)
        except NotRecordBoundaryError as exc:
            return ReplicaEntry("diverged", p.topic, p.partition, offset=exc.record_offset,
                                epoch=epochs.epoch_at(exc.record_offset))
        except OffsetOutOfRangeError:
            return None
        except MetaqError as exc:
            return ReplicaEntry("failed", p.topic, p.partition, reason=str(exc))
        return ReplicaEntry("data", p.topic, p.partition, p.offset, segment_start,
                            epochs.epoch_at(p.offset), end, memoryview(part.view))

    def _answered(self, cmd: ReplicateCommand, positions, unsure=frozenset()) -> None:
        """Kafka's lastCaughtUpTime for the asking follower worker; published with its lag.
        ``unsure``: partitions whose position does not count (diverged, reset, failed)."""
        follower = self._followers[cmd.replica]
        state = follower.by_slot.setdefault(cmd.slot, _SlotState())
        now = now_ms()
        lag, now_caught, prev_caught = 0, not unsure, not unsure
        listed = set()
        for p in positions:
            key = (p.topic, p.partition)
            listed.add(key)
            log_ = self.table.logs.get(key)
            if log_ is None or key in unsure:
                continue
            end = log_.visible_end
            lag += max(0, end - p.offset)
            now_caught = now_caught and p.offset >= end
            prev_caught = prev_caught and p.offset >= state.prev_ends.get(key, end)
            state.prev_ends[key] = end
        for key, log_ in self.table.logs.items():
            if key not in listed and owner_of(key[0], key[1], cmd.slots) == cmd.slot:
                behind = log_.visible_end - log_.first_offset
                lag += behind
                now_caught = now_caught and not behind
                prev_caught = prev_caught and not behind
        if now_caught:
            state.caught_up_ms = now
        elif prev_caught and state.prev_answer_ms:
            state.caught_up_ms = max(state.caught_up_ms, state.prev_answer_ms)
        state.prev_answer_ms = now
        state.lag_bytes = lag
        self._publish(cmd.replica)

    def _publish(self, replica: str) -> None:
        """The follower's figures on this worker for the supervisor: caught up when every one
        of its workers is (a worker whose fetch is parked here has nothing to get: caught up
        now), and the bytes they lacked."""
        follower = self._followers.get(replica)
        if self.progress is None or follower is None:
            return
        now = now_ms()
        waiting = {p.cmd.slot for p in self._parked if p.cmd.replica == replica}
        slots = [follower.by_slot.get(s) for s in range(follower.slots)]
        caught = min((now if i in waiting else s.caught_up_ms if s else 0)
                     for i, s in enumerate(slots))
        self.progress.record_follower(self.slot, replica, caught,
                                      sum(s.lag_bytes for s in slots if s))

    def _answered_nothing(self, cmd: ReplicateCommand, positions) -> None:
        """A parked fetch: the follower worker has everything this worker has."""
        state = self._followers[cmd.replica].by_slot.setdefault(cmd.slot, _SlotState())
        state.caught_up_ms = now_ms()
        state.lag_bytes = 0
        self._publish(cmd.replica)

    def _write_answer(self, out, cmd, entries) -> None:
        buffers = encode_replica_entries(entries)
        size = sum(len(b) for b in buffers)
        out.write_many([b"result %d %d %d\r\n" % (SUCCESS, size, cmd.opaque), *buffers])

    def _answer_bytes(self, cmd, entries) -> bytes:
        body = b"".join(bytes(b) for b in encode_replica_entries(entries))
        return encode_result(SUCCESS, body, cmd.opaque)

    def _answer_error(self, conn, pending, cmd, why: str) -> None:
        _resolve(conn, pending, encode_result(SERVICE_UNAVAILABLE, why.encode(), cmd.opaque))

    # ---- acknowledgements ---------------------------------------------------------------------

    def ack_future(self, log_, end_offset: int) -> asyncio.Future | None:
        """A future done once the ISR's followers hold ``log_`` up to ``end_offset`` (None:
        nothing to wait for: asynchronous mode, or no follower in the ISR)."""
        role = self.role
        if role.min_isr <= 1 or not role.is_master:
            return None
        key = (log_.topic, log_.partition)
        if self._held_by_isr(key) >= end_offset:
            return None
        future = self.loop.create_future()
        self._waits.setdefault(key, deque()).append((end_offset, future, time.monotonic()))
        self._ensure_timer()
        return future

    def _held_by_isr(self, key) -> float:
        """The offset every ISR follower holds of ``key`` (infinite when there is none)."""
        held = float("inf")
        for replica in self.role.isr:
            if replica == self.role.replica:
                continue
            follower = self._followers.get(replica)
            held = min(held, follower.positions.get(key, -1) if follower else -1)
        return held

    def _release(self, key) -> None:
        waits = self._waits.get(key)
        if not waits:
            return
        held = self._held_by_isr(key)
        while waits and waits[0][0] <= held:
            _end, future, _since = waits.popleft()
            if not future.done():
                future.set_result(None)
        if not waits:
            del self._waits[key]

    def _fail_all_waits(self, why: str) -> None:
        waits, self._waits = self._waits, {}
        for queue in waits.values():
            for _end, future, _since in queue:
                if not future.done():
                    future.set_exception(NotEnoughReplicasError(why))

    # ---- timers -------------------------------------------------------------------------------

    def _ensure_timer(self) -> None:
        if self._timer is None:
            self._timer = self.loop.call_later(EXPIRY_CHECK_S, self._expire)

    def _expire(self) -> None:
        """Answer parked fetches whose wait is over; fail acks that waited too long."""
        self._timer = None
        now = time.monotonic()
        if any(now >= p.deadline_s or p.conn.closed for p in self._parked):
            self._wake()
        for replica in {p.cmd.replica for p in self._parked}:
            self._publish(replica)  # waiting followers stay caught up while they wait
        limit = now - self.ack_timeout_s
        for key in list(self._waits):
            queue = self._waits[key]
            while queue and queue[0][2] <= limit:
                _end, future, _since = queue.popleft()
                if not future.done():
                    late = [r for r in self.role.isr if r != self.role.replica and
                            self._followers.get(r, _Follower()).positions.get(key, -1) < _end]
                    future.set_exception(NotEnoughReplicasError(
                        f"not acknowledged by in-sync replica(s) {', '.join(late) or '?'} "
                        f"within {self.ack_timeout_s * 1000:.0f} ms"))
            if not queue:
                del self._waits[key]
        if self._parked or self._waits:
            self._ensure_timer()


def _park(conn):
    """A placeholder in ``conn``'s reply queue for an answer given later."""
    pending = Pending(conn._flush)
    conn.queue.append(pending)
    return pending


def _resolve(conn, pending, data: bytes) -> None:
    conn.queued_bytes += len(data)
    pending.resolve(data)
