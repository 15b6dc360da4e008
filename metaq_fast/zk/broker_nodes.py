"""One broker's nodes in ZooKeeper (a master's, or a slave's), and the writes that register and
unregister them.

Imports: the standard library, kazoo, ``metaq_fast.errors`` and ``metaq_fast.zk.paths`` / ``ops``
(the deadline-bound operations) / ``desired`` (``TopicRegistration``, ``Work``).

A master keeps ``ids/<id>/master``, the URL in ``ids/<id>``, ``master_config_checksum`` and its
topics as ``<id>-m``; a slave (MetaQ 11.1) keeps ``ids/<id>/slave<n>`` and its topics as
``<id>-s<n>``, never the master's nodes. ``set_slave_id`` switches between the two (a slave that
took over, a master that follows): the next pass deletes what the old role kept.

``BrokerNodes`` knows the broker's paths (``metaq-protocol.md`` 6.2) and applies one unit of the
registry's ``Work``: a full pass (read every node, fix what differs) or MetaQ's delete-then-create
of the changed topics; and at stop deletes the nodes of our session. It keeps no state between
calls: ``zk/registry.py`` decides when to call it (its maintainer thread or ``stop``, under the
registry's ops lock) and what to retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError, NotEmptyError

from metaq_fast.errors import DuplicateBrokerError, ZooKeeperError
from metaq_fast.zk import paths
from metaq_fast.zk.desired import TopicRegistration, Work
from metaq_fast.zk.ops import DeadlineOps

log = logging.getLogger("metaq_fast.zk.registry")  # its warnings are the registry's


class BrokerNodes:
    """The nodes of broker ``broker_id`` (slave ``slave_id``, None for the master) under
    ``root`` (normalised), with URL ``url``."""

    def __init__(self, root: str, broker_id: int, url: str, ops: DeadlineOps,
                 slave_id: int | None = None):
        self._root = root
        self._broker_id = broker_id
        self._master_path = paths.broker_master_path(root, broker_id)
        self._id_path = paths.broker_id_path(root, broker_id)
        self._checksum_path = paths.master_config_checksum_path(root, broker_id)
        self._url_data = paths.encode_text(url)
        self._ops = ops
        self.slave_id = slave_id
        self._left: list[int | None] = []  # roles given up whose nodes may still exist
        # Replication (broker/replication.py): called at the start of every full pass, it may
        # claim the master role in ZooKeeper and returns the slave id to register as (None:
        # master). Without it the role is fixed.
        self.role_hook: Callable[[KazooClient], int | None] | None = None

    def set_slave_id(self, slave_id: int | None) -> None:
        """Switch role (None: master); the next full pass removes the old role's nodes."""
        if slave_id != self.slave_id:
            self._left.append(self.slave_id)
            self.slave_id = slave_id

    @property
    def own_path(self) -> str:
        """``ids/<id>/master``, or ``ids/<id>/slave<n>`` for a slave."""
        if self.slave_id is None:
            return self._master_path
        return paths.broker_slave_path(self._root, self._broker_id, self.slave_id)

    def topic_nodes(
        self, topic: str, spec: TopicRegistration | None
    ) -> list[tuple[str, bytes | None]]:
        """The three nodes of ``topic`` for this broker and their data (None: must not exist)."""
        return self._topic_nodes_of(self.slave_id, topic, spec)

    def _topic_nodes_of(self, slave_id, topic, spec) -> list[tuple[str, bytes | None]]:
        if spec is None:
            return paths.topic_nodes(self._root, topic, self._broker_id, None, slave_id=slave_id)
        return paths.topic_nodes(self._root, topic, self._broker_id, spec.num_partitions,
                                 spec.accept_publish, spec.accept_subscribe, slave_id)

    # ---- registration -------------------------------------------------------------------------

    def reconcile_all(
        self, client: KazooClient, work: Work, started: bool, check_stop: Callable[[], None]
    ) -> None:
        """A pass: make every node of this broker match the desired state.

        ``started``: whether the registry's start succeeded (only changes the message of a
        ``DuplicateBrokerError``); ``check_stop`` raises to abandon the pass. Each topic made
        to match is recorded in ``work.done``.
        """
        if self.role_hook is not None:
            self.set_slave_id(self.role_hook(client))
        self._leave_old_roles(client, sorted(work.topics.keys() | work.dirty))
        self._ensure_own(client, started)
        check_stop()
        if self.slave_id is None:
            got = self._ops.get(client, self._id_path)
            if got is None:
                self._ops.create(client, self._id_path, self._url_data, ephemeral=False)
            elif got[0] != self._url_data:
                self._ops.set(client, self._id_path, self._url_data)
            checksum_data = (
                None if work.checksum is None else paths.encode_config_checksum(work.checksum)
            )
            self._ops.reconcile_ephemeral(client, [(self._checksum_path, checksum_data)])
        # Topics: the desired ones, and the removed ones still to delete.
        for topic in sorted(work.topics.keys() | work.dirty):
            check_stop()
            spec = work.topics.get(topic)
            self._ops.reconcile_ephemeral(client, self.topic_nodes(topic, spec))
            work.done[topic] = spec

    def _leave_old_roles(self, client: KazooClient, topics: list[str]) -> None:
        """Delete the nodes of roles given up (ours only: another session's stay)."""
        while self._left:
            old = self._left[0]
            if old != self.slave_id:
                own = (self._master_path if old is None
                       else paths.broker_slave_path(self._root, self._broker_id, old))
                nodes = [own] + [p for t in topics for p, _ in self._topic_nodes_of(old, t, None)]
                if old is None:
                    nodes.append(self._checksum_path)
                for path in nodes:
                    got = self._ops.get(client, path)
                    if got is not None and self._ops.is_ours(client, got[1]):
                        self._ops.delete(client, path, version=got[1].version)
            self._left.pop(0)

    def _ensure_own(self, client: KazooClient, started: bool) -> None:
        own = self.own_path
        for _ in range(3):
            got = self._ops.get(client, own)
            if got is None:
                if self._ops.create(client, own, self._url_data, ephemeral=True):
                    return
                continue  # created meanwhile by someone: look at it again
            data, stat = got
            if not self._ops.is_ours(client, stat):
                try:
                    holder = paths.decode_text(data)
                except ValueError:
                    holder = repr(data[:64])
                owner = (
                    f"session 0x{stat.ephemeralOwner:x}" if stat.ephemeralOwner else "no session"
                )
                what = "refusing to start" if not started else "not taking it over"
                role = "" if self.slave_id is None else f" slave {self.slave_id}"
                raise DuplicateBrokerError(
                    f"broker id {self._broker_id}{role} is already registered by {holder} "
                    f"(another live broker); {what} ({own} is held by {owner})"
                )
            if data != self._url_data:
                self._ops.set(client, own, self._url_data)
            return
        raise ZooKeeperError(f"{own} keeps appearing and vanishing")

    def apply_topics(
        self, client: KazooClient, work: Work, check_stop: Callable[[], None]
    ) -> None:
        """MetaQ's registerTopicInZk for each changed topic: delete the three nodes, create."""
        for topic in sorted(work.dirty):
            check_stop()
            spec = work.topics.get(topic)
            nodes = self.topic_nodes(topic, spec)
            for path, _ in nodes:
                self._ops.delete(client, path)
            for path, data in nodes:
                if data is not None and not self._ops.create(client, path, data, ephemeral=True):
                    raise ZooKeeperError(f"{path} was created by someone else meanwhile")
            work.done[topic] = spec

    # ---- unregistration -----------------------------------------------------------------------

    def unregister_all(self, client: KazooClient, topics: list[str], deadline: float) -> bool:
        """Delete this session's nodes (MetaQ 6.2 step 5); False (logged) on any failure."""
        try:
            own_path = self.own_path
            topic_paths = [path for t in topics for path, _ in self.topic_nodes(t, None)]
            current = self._ops.get_many(
                client, [own_path, self._checksum_path, *topic_paths], deadline
            )
            own = current[own_path]
            own_ours = own is not None and self._ops.is_ours(client, own[1])
            if own_ours:
                self._ops.delete(client, own_path, deadline, own[1].version)
            elif own is not None:
                log.warning(
                    "%s belongs to another session at stop; leaving the broker nodes alone",
                    own_path,
                )
            checksum = current[self._checksum_path]
            if checksum is not None and self._ops.is_ours(client, checksum[1]):
                self._ops.delete(client, self._checksum_path, deadline, checksum[1].version)
            if own_ours and self.slave_id is None:
                self._delete_or_blank_id_node(client, deadline)
            for path in topic_paths:
                got = current[path]
                if got is not None and self._ops.is_ours(client, got[1]):
                    self._ops.delete(client, path, deadline, got[1].version)
        except (ZooKeeperError, KazooException) as e:
            log.warning(
                "broker %d: unregistering from ZooKeeper failed: %s; its ephemeral nodes go "
                "with the session", self._broker_id, e,
            )
            return False
        return True

    def _delete_or_blank_id_node(self, client: KazooClient, deadline: float) -> None:
        path = self._id_path
        try:
            self._ops.result(client.delete_async(path), "delete", path, deadline)
        except NoNodeError:
            pass
        except NotEmptyError:
            # Slaves still registered below: keep the node, drop the master URL (MetaQ).
            self._ops.set(client, path, b"", deadline)
        except KazooException as e:
            raise ZooKeeperError(f"delete {path}: {type(e).__name__}: {e}") from e
