"""A broker id's replication state in ZooKeeper, and the fenced writes that change it.

Imports: the standard library, kazoo and metaq_fast.errors / zk.paths / zk.ops.

``/meta/replication/<brokerId>`` (persistent, JSON) says which replica of the broker id is the
master, in which epoch, and which replicas are in sync with it::

    {"epoch": 3, "leader": "s0", "isr": ["s0", "m"]}

Replicas are named ``m`` (the broker started without slave settings) and ``s<slaveId>``. Every
write is conditional on the node version read before it, and a claim of the master role is one
ZooKeeper transaction that also creates the ephemeral ``ids/<id>/master`` node in the claimer's
session: two replicas that race for it cannot both win, and a replica can only become master
while no live session holds that node (Kafka's controller epoch and leader epoch, in one node).

Who may claim (``may_claim``): the replica the state names as leader (it restarts, or its
session was lost while nobody replaced it), any in-sync replica when the master node is gone,
any replica with ``uncleanTakeover`` (it may lose what the old master acknowledged). A claim
bumps the epoch; the old leader leaves the in-sync set (it is gone) unless it claims itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, KazooException, NoNodeError, NodeExistsError

from metaq_fast.errors import ZooKeeperError
from metaq_fast.zk import paths
from metaq_fast.zk.ops import DeadlineOps


class FencedError(ZooKeeperError):
    """The replication state changed under us (another replica claimed, or wrote the ISR)."""


@dataclass(frozen=True)
class ReplicaState:
    epoch: int
    leader: str
    isr: tuple[str, ...]

    def to_bytes(self) -> bytes:
        return json.dumps({"epoch": self.epoch, "leader": self.leader, "isr": list(self.isr)},
                          separators=(",", ":")).encode()

    @classmethod
    def parse(cls, data: bytes) -> "ReplicaState":
        try:
            raw = json.loads(data)
            state = cls(int(raw["epoch"]), str(raw["leader"]), tuple(str(r) for r in raw["isr"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a replication state: {data[:100]!r} ({exc})") from None
        if state.epoch < 1 or state.leader not in state.isr:
            raise ValueError(f"replication state out of range: {data[:100]!r}")
        return state


def may_claim(state: ReplicaState | None, me: str, master_held: bool, unclean: bool) -> bool:
    """May replica ``me`` become master now (module docstring)?"""
    if master_held:
        return False
    if state is None:
        return me == "m"  # the first master of a broker id is the one configured as master
    return state.leader == me or me in state.isr or unclean


def claimed_state(state: ReplicaState | None, me: str) -> ReplicaState:
    """The state ``me`` writes when it claims."""
    if state is None:
        return ReplicaState(1, me, (me,))
    if state.leader == me:
        return ReplicaState(state.epoch + 1, me, state.isr)
    kept = tuple(r for r in state.isr if r != state.leader and r != me)
    return ReplicaState(state.epoch + 1, me, (me, *kept))


class ReplicaStateStore:
    """Reads and fenced writes of one broker id's state (deadline-bound, kazoo errors as
    ``ZooKeeperError``)."""

    def __init__(self, root: str, broker_id: int, ops: DeadlineOps):
        self.path = paths.replication_state_path(root, broker_id)
        self.master_path = paths.broker_master_path(root, broker_id)
        self.id_path = paths.broker_id_path(root, broker_id)
        self._ops = ops

    def read(self, client: KazooClient) -> tuple[ReplicaState | None, int]:
        """(state or None, its version; -1 when absent). A garbled node raises ValueError."""
        got = self._ops.get(client, self.path)
        if got is None:
            return None, -1
        return ReplicaState.parse(got[0]), got[1].version

    def claim(self, client: KazooClient, new: ReplicaState, version: int, url: str) -> None:
        """Write ``new`` (if the state is still at ``version``; -1: absent) and create the
        master node with ``url`` in our session, atomically. Raises ``FencedError`` when
        another replica got there first."""
        self._ops.create(client, self.id_path, b"", ephemeral=False)  # the master node's parent
        parent = self.path.rsplit("/", 1)[0]
        if self._ops.get(client, parent) is None:
            self._ops.create(client, parent, b"", ephemeral=False)
        tx = client.transaction()
        if version < 0:
            tx.create(self.path, new.to_bytes())
        else:
            tx.set_data(self.path, new.to_bytes(), version=version)
        tx.create(self.master_path, paths.encode_text(url), ephemeral=True)
        self._commit(tx, f"claim epoch {new.epoch} as {new.leader}")

    def write(self, client: KazooClient, new: ReplicaState, version: int) -> int:
        """Write ``new`` if the state is still at ``version`` (the master changing its ISR);
        the new version. ``FencedError`` otherwise."""
        try:
            stat = self._ops.result(client.set_async(self.path, new.to_bytes(), version),
                                    "set", self.path)
        except (BadVersionError, NoNodeError) as exc:
            raise FencedError(f"{self.path} changed meanwhile ({type(exc).__name__})") from None
        except KazooException as exc:
            raise ZooKeeperError(f"set {self.path}: {type(exc).__name__}: {exc}") from exc
        return stat.version

    def _commit(self, tx, what: str) -> None:
        try:
            results = self._ops.result(tx.commit_async(), "transaction", self.path)
        except KazooException as exc:
            raise ZooKeeperError(f"{what}: {type(exc).__name__}: {exc}") from exc
        failed = [r for r in results if isinstance(r, Exception)]
        if any(isinstance(r, (BadVersionError, NodeExistsError, NoNodeError)) for r in failed):
            raise FencedError(f"{what}: another replica changed {self.path} or holds "
                              f"{self.master_path}")
        if failed:
            raise ZooKeeperError(f"{what}: {failed[0]!r}")
