"""What the supervisor and the workers tell each other about replication.

Imports: the standard library and numpy only.

Down (supervisor -> each worker): a ``ReplicaRole`` as one JSON line on the worker's control
pipe, whole each time it changes and again to a restarted worker. The supervisor alone talks to
ZooKeeper; this line is everything a worker needs of it:

* ``role``: ``master`` (takes puts, serves ``replicate`` fetches) or ``follower`` (refuses puts,
  copies ``leader``); ``epoch``: the master epoch of this broker id (0: replication never set
  up); ``replica``: this broker's own name (``m`` or ``s<slaveId>``);
* a master's ``isr`` (the replicas that count for acknowledgements, itself included) and
  ``min_isr`` (``minInSyncReplicas``); a follower's ``leader`` URL; ``hold``: a master that
  takes no puts for now (its ZooKeeper connection is suspended or it is stopping, and another
  replica may be taking over).

Up (each worker -> the supervisor): ``ReplicaProgress``, a shared block of int64 the supervisor
polls: the version of the last role each worker applied (the supervisor waits for it before a
step that needs the workers there first), and replication figures. A master's worker writes, per follower replica, when that follower was last caught up on
all of the worker's partitions (Kafka's lastCaughtUpTime), its lag in bytes and when it last
fetched; a follower's worker writes its own lag and when its last fetch was answered. Times are
``time.monotonic()`` in milliseconds (one clock for all processes of the machine).
"""

from __future__ import annotations

import json
import mmap
import time
from dataclasses import asdict, dataclass, field

import numpy as np

REPLICAS_MAX = 64  # "m" and s0..s62: a replica's column in the progress block
CAUGHT_UP_MS, LAG_BYTES, FETCH_MS = 0, 1, 2  # fields of a master worker's row per replica
FIELDS = 3


def replica_index(replica: str) -> int:
    """The progress block's column of ``m`` (0) or ``s<n>`` (n + 1)."""
    index = 0 if replica == "m" else int(replica[1:]) + 1
    if not 0 <= index < REPLICAS_MAX:
        raise ValueError(f"replica {replica!r} out of range (slaveId 0..{REPLICAS_MAX - 2})")
    return index


def replica_of_index(index: int) -> str:
    return "m" if index == 0 else f"s{index - 1}"


def now_ms() -> int:
    return int(time.monotonic() * 1000)


@dataclass(frozen=True)
class ReplicaRole:
    role: str = "master"  # master | follower
    epoch: int = 0
    replica: str = "m"
    leader: str | None = None  # a follower's master URL
    isr: tuple[str, ...] = field(default_factory=tuple)
    min_isr: int = 1
    hold: bool = False  # a master that must not take puts now (ZooKeeper suspended, stopping)
    version: int = 0  # the supervisor's count of roles sent; workers report the one applied

    def to_line(self) -> bytes:
        return (json.dumps(asdict(self), separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_line(cls, line: bytes | str) -> "ReplicaRole":
        values = json.loads(line)
        values["isr"] = tuple(values.get("isr") or ())
        return cls(**values)

    @property
    def is_master(self) -> bool:
        return self.role == "master"


class ReplicaProgress:
    """The shared block (module docstring): ``workers`` rows of ``REPLICAS_MAX`` replicas of
    ``FIELDS`` int64 each, plus a follower row per worker. Created by the supervisor before it
    forks; a worker writes only its own rows."""

    def __init__(self, workers: int):
        self.workers = workers
        self._master_cells = workers * REPLICAS_MAX * FIELDS
        follower_end = self._master_cells + workers * FIELDS
        self._map = mmap.mmap(-1, 8 * (follower_end + workers))
        block = np.frombuffer(self._map, dtype=np.int64)
        self.master = block[:self._master_cells].reshape(workers, REPLICAS_MAX, FIELDS)
        self.follower = block[self._master_cells:follower_end].reshape(workers, FIELDS)
        self.applied = block[follower_end:]  # per worker: the role version it applied

    # ---- a master's worker ------------------------------------------------------------------

    def record_follower(self, slot: int, replica: str, caught_up_ms: int, lag_bytes: int) -> None:
        row = self.master[slot, replica_index(replica)]
        row[CAUGHT_UP_MS] = caught_up_ms
        row[LAG_BYTES] = lag_bytes
        row[FETCH_MS] = now_ms()

    def forget_followers(self, slot: int) -> None:
        self.master[slot] = 0

    # ---- a follower's worker ----------------------------------------------------------------

    def record_own(self, slot: int, lag_bytes: int, fetched: bool) -> None:
        self.follower[slot, LAG_BYTES] = lag_bytes
        if fetched:
            self.follower[slot, FETCH_MS] = now_ms()

    # ---- the supervisor ---------------------------------------------------------------------

    def all_applied(self, version: int) -> bool:
        return bool((self.applied >= version).all())

    def follower_lag(self, replica: str) -> tuple[int, int, int]:
        """(ms since the follower was caught up on every worker, its lag in bytes, ms since its
        last fetch on the worker it fetched from least recently). A worker it never fetched
        from counts as never caught up."""
        rows = self.master[:, replica_index(replica)]
        now = now_ms()
        caught = int(rows[:, CAUGHT_UP_MS].min())
        fetched = int(rows[:, FETCH_MS].min())
        return (now - caught if caught else -1, int(rows[:, LAG_BYTES].sum()),
                now - fetched if fetched else -1)

    def followers_seen(self) -> list[str]:
        """Replicas that fetched from any worker."""
        seen = np.flatnonzero(self.master[:, :, FETCH_MS].max(axis=0))
        return [replica_of_index(int(i)) for i in seen]

    def own_lag(self) -> tuple[int, int]:
        """A follower: (its lag in bytes, ms since the least recent answered fetch; -1 never)."""
        fetched = int(self.follower[:, FETCH_MS].min())
        return int(self.follower[:, LAG_BYTES].sum()), (now_ms() - fetched if fetched else -1)


def status_lines(role: ReplicaRole, progress: ReplicaProgress | None,
                 partitions: dict) -> list[str]:
    """``stats replication``: this broker's role and, per follower (a master) or per partition
    (a follower), how far behind it is: bytes the master had at its last answer
    (``last_fetch_ms_ago``) that it still lacks, and ms since it last held all the master had
    (0 while it does). ``partitions``: the shared counters' snapshot,
    ``{(topic, partition): (values, base)}`` with the columns of counters.NAMES."""
    from .counters import INDEX

    lines = [f"role {role.role}", f"replica {role.replica}", f"epoch {role.epoch}",
             f"min_in_sync_replicas {role.min_isr}"]
    now = now_ms()
    if role.is_master:
        lines += [f"in_sync_replicas {','.join(role.isr)}",
                  f"holding_puts {'true' if role.hold else 'false'}"]
        if progress is not None:
            for replica in progress.followers_seen():
                caught, lag, fetched = progress.follower_lag(replica)
                lines.append(f"follower_{replica} caught_up_ms_ago={caught} lag_bytes={lag} "
                             f"last_fetch_ms_ago={fetched}")
        return lines
    lines.append(f"leader {role.leader or '-'}")
    total = 0
    for (topic, partition), (values, _base) in sorted(partitions.items()):
        copied = int(values[INDEX["replicated_messages"]])
        caught = int(values[INDEX["replica_caught_up_ms"]])
        if not copied and not caught:
            continue
        lag = int(values[INDEX["replica_lag_bytes"]])
        total += lag
        behind_ms = 0 if lag == 0 and caught else (now - caught if caught else -1)
        lines.append(f"partition_{topic}-{partition} lag_bytes={lag} lag_ms={behind_ms} "
                     f"replicated_messages={copied}")
    lines.insert(5, f"lag_bytes {total}")
    if progress is not None:
        lines.insert(6, f"last_fetch_ms_ago {progress.own_lag()[1]}")
    return lines
