"""One master broker's nodes in ZooKeeper, and the writes that register and unregister them.

Imports: the standard library, kazoo, ``metaq_fast.errors`` and ``metaq_fast.zk.paths`` / ``ops``
(the deadline-bound operations) / ``desired`` (``TopicRegistration``, ``Work``).

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
    """The nodes of master broker ``broker_id`` under ``root`` (normalised), with URL ``url``."""

    def __init__(self, root: str, broker_id: int, url: str, ops: DeadlineOps):
        self._root = root
        self._broker_id = broker_id
        self._master_path = paths.broker_master_path(root, broker_id)
        self._id_path = paths.broker_id_path(root, broker_id)
        self._checksum_path = paths.master_config_checksum_path(root, broker_id)
        self._url_data = paths.encode_text(url)
        self._ops = ops

    def topic_nodes(
        self, topic: str, spec: TopicRegistration | None
    ) -> list[tuple[str, bytes | None]]:
        """The three nodes of ``topic`` for this broker and their data (None: must not exist)."""
        if spec is None:
            return paths.topic_nodes(self._root, topic, self._broker_id, None)
        return paths.topic_nodes(self._root, topic, self._broker_id, spec.num_partitions,
                                 spec.accept_publish, spec.accept_subscribe)

    # ---- registration -------------------------------------------------------------------------

    def reconcile_all(
        self, client: KazooClient, work: Work, started: bool, check_stop: Callable[[], None]
    ) -> None:
        """A pass: make every node of this broker match the desired state.

        ``started``: whether the registry's start succeeded (only changes the message of a
        ``DuplicateBrokerError``); ``check_stop`` raises to abandon the pass. Each topic made
        to match is recorded in ``work.done``.
        """
        self._ensure_master(client, started)
        check_stop()
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

    def _ensure_master(self, client: KazooClient, started: bool) -> None:
        for _ in range(3):
            got = self._ops.get(client, self._master_path)
            if got is None:
                if self._ops.create(client, self._master_path, self._url_data, ephemeral=True):
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
                raise DuplicateBrokerError(
                    f"broker id {self._broker_id} is already registered by {holder} (another "
                    f"live broker); {what} ({self._master_path} is held by {owner})"
                )
            if data != self._url_data:
                self._ops.set(client, self._master_path, self._url_data)
            return
        raise ZooKeeperError(f"{self._master_path} keeps appearing and vanishing")

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
            topic_paths = [path for t in topics for path, _ in self.topic_nodes(t, None)]
            current = self._ops.get_many(
                client, [self._master_path, self._checksum_path, *topic_paths], deadline
            )
            master = current[self._master_path]
            master_ours = master is not None and self._ops.is_ours(client, master[1])
            if master_ours:
                self._ops.delete(client, self._master_path, deadline, master[1].version)
            elif master is not None:
                log.warning(
                    "%s belongs to another session at stop; leaving the broker nodes alone",
                    self._master_path,
                )
            checksum = current[self._checksum_path]
            if checksum is not None and self._ops.is_ours(client, checksum[1]):
                self._ops.delete(client, self._checksum_path, deadline, checksum[1].version)
            if master_ours:
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
