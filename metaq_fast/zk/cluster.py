"""The client side's live view of a MetaQ cluster in ZooKeeper: brokers and topic partitions.

Imports: the standard library, kazoo, ``metaq_fast.errors``, ``metaq_fast.names`` and
``metaq_fast.zk.paths`` (every path and node format, and the ``Partition`` value type). Nothing
from ``client``: the client imports this module, never the reverse.
Reference: ``metaq-protocol.md`` §6.3 (what clients derive from ZooKeeper) and §7.2 / §8.2 (the
watches MetaQ's producer and consumer keep).

Strategy
--------
Everything is driven by ZooKeeper watches through kazoo's recipes; nothing polls.

* Brokers: a children watch on ``brokers/ids``; for every ``<id>`` child a ``DataWatch`` on
  ``ids/<id>/master``. A ``DataWatch`` follows a node that does not exist yet, so an ``<id>``
  node without a ``master`` child (a crashed broker's persistent node, a slave-only id) is simply
  absent from ``brokers()`` until its master appears. A children watch on ``ids/<id>`` keeps its
  ``slave<n>`` nodes: ``read_url`` gives a consumer the master, or a slave when the master is
  gone (MetaQ's cluster view reads from a slave of the same id then; we take the lowest slave
  id rather than a random one, so that a group's consumers agree).
* Topics, on first use (``publish_partitions``, ``subscribe_partitions``, ``watch_topic``):
  ``topics-pub/<t>`` and ``topics-sub/<t>`` are created if missing (as MetaQ's ``publish`` and
  consumer registration do) and a children watch is kept on each. On every children event the
  whole tree of that topic is re-read (children, then each child's JSON): a broker re-registering
  a topic deletes and re-creates its node, so names alone can hide a changed ``numParts``.
* kazoo's ``ChildrenWatch`` stops for good when its path is deleted; ``_FollowedChildren`` keeps a
  ``DataWatch`` (which survives deletion) on the watched path and starts a fresh ``ChildrenWatch``
  whenever the path (re)appears, so an admin deleting ``topics-pub/<t>`` loses nothing.
* Session loss: kazoo re-arms its recipes after a reconnect, but only calls back if the children
  list or the node version changed. A state listener therefore re-reads everything on every
  ``CONNECTED`` transition (on a kazoo-spawned thread), so data changed while disconnected or
  while the session was expired is picked up too. While disconnected the view keeps the last
  state it saw (a producer goes on sending to the brokers it knew, as MetaQ's does).

Consistency: each tree (``brokers/ids``, one topic's pub tree, one topic's sub tree) is re-read
under its own lock, and reads of one session are ordered, so a slower older re-read can never
overwrite a newer one. Results are stored under one short state lock; readers copy under it.

Threads: watch callbacks and the re-reads run on kazoo's threads (its event thread, or threads it
spawns). Callbacks registered with ``watch_topic`` / ``on_brokers_change`` run there too, after
the view has been updated: keep them cheap (set a flag, put on a queue), never block in them on
ZooKeeper or the network. Calls for different changes may come from different threads and
interleave; a callback must read the view (``publish_partitions``...) for the newest state
instead of assuming an order. They are called only when what they watch actually changed.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from functools import partial

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.protocol.states import KazooState
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

from metaq_fast import names
from metaq_fast.errors import InvalidArgumentError, ZooKeeperError
from metaq_fast.zk import paths
from metaq_fast.zk.paths import Partition

log = logging.getLogger(__name__)

TopicCallback = Callable[[str], object]
BrokersCallback = Callable[[], object]

_PUB = "pub"
_SUB = "sub"


def _stop_watch(watch: DataWatch | ChildrenWatch | None) -> None:
    """Stop a kazoo watch recipe now rather than at its next event.

    kazoo has no public stop: a recipe stops when its function returns False, which ours do once
    their view or generation is gone. Setting ``_stopped`` and removing the session listener
    (kazoo internals, stable since 2.0) only spares the wait; failures are ignored.
    """
    if watch is None:
        return
    try:
        watch._stopped = True
        watch._client.remove_listener(watch._session_watcher)
    except Exception:  # noqa: BLE001 - best effort, the False return still stops it
        pass


class _FollowedChildren:
    """Calls ``on_change()`` whenever the children of ``path`` may have changed.

    Survives session loss and the deletion and re-creation of ``path`` itself (see the module
    docstring). ``on_change`` re-reads the children itself; it runs on kazoo's threads.
    """

    def __init__(self, client: KazooClient, path: str, on_change: Callable[[], None]) -> None:
        self._client = client
        self._path = path
        self._on_change = on_change
        self._lock = threading.Lock()
        self._closed = False
        self._generation = 0
        self._czxid: int | None = None
        self._children_watch: ChildrenWatch | None = None
        self._node_watch = DataWatch(client, path, self._on_node)

    def _on_node(self, data, stat, event=None) -> bool | None:
        with self._lock:
            if self._closed:
                return False
            if stat is not None and stat.czxid == self._czxid:
                return None  # data set on the same node: its children are unaffected
            self._generation += 1
            generation = self._generation
            self._czxid = stat.czxid if stat is not None else None
            old, self._children_watch = self._children_watch, None
        _stop_watch(old)
        if stat is None:
            self._on_change()  # the path is gone, and with it every child
            return None
        # A ChildrenWatch reads (and calls back) once in its constructor; if the path vanished
        # in between it stops silently and this DataWatch reports the deletion next.
        watch = ChildrenWatch(self._client, self._path, partial(self._on_children, generation))
        with self._lock:
            if self._closed or self._generation != generation:
                stale = True
            else:
                stale = False
                self._children_watch = watch
        if stale:
            _stop_watch(watch)
        return None

    def _on_children(self, generation: int, children: list[str]) -> bool | None:
        if self._closed or generation != self._generation:
            return False
        self._on_change()
        return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._generation += 1
            watches = (self._node_watch, self._children_watch)
            self._children_watch = None
        for watch in watches:
            _stop_watch(watch)


class _Topic:
    """Per-topic state; the mutable fields are guarded by ``ClusterView._state_lock``."""

    def __init__(self, name: str) -> None:
        self.name = name
        # child node name -> (broker id, numParts); pub holds master children only
        self.entries: dict[str, dict[str, tuple[int, int]]] = {_PUB: {}, _SUB: {}}
        self.publish: tuple[Partition, ...] = ()
        self.subscribe: tuple[str, ...] = ()
        self.callbacks: list[TopicCallback] = []
        self.read_locks = {_PUB: threading.Lock(), _SUB: threading.Lock()}
        self.followers: dict[str, _FollowedChildren] = {}
        self.ready = False
        self.closed = False

    def close(self) -> None:
        self.closed = True
        for follower in self.followers.values():
            follower.close()


class ClusterView:
    """Live, watch-driven view of brokers and topic partitions under ``root`` (default ``/meta``).

    ``client`` must be a started ``KazooClient`` (inside whatever chroot the cluster uses); the
    view never starts or stops it. Reads are thread-safe and return copies.

    Raises (constructor):
        ZooKeeperError: ``brokers/ids`` could not be created or read.
        InvalidNameError: a bad ``root``.
    """

    def __init__(self, client: KazooClient, root: str = paths.DEFAULT_ROOT) -> None:
        self._client = client
        self._root = paths.normalize_root(root)
        self._ids_path = paths.broker_ids_path(self._root)
        self._state_lock = threading.Lock()  # guards the fields below; never held during I/O
        self._setup_lock = threading.RLock()  # serialises topic set-up and close
        self._ids_read_lock = threading.Lock()  # serialises re-reads of brokers/ids
        self._closed = False
        self._masters: dict[int, str] = {}
        self._slaves: dict[int, dict[int, str]] = {}  # broker id -> {slave id: url}
        self._slave_followers: dict[int, _FollowedChildren] = {}
        self._slaves_read_lock = threading.Lock()
        # broker id -> (generation, DataWatch on ids/<id>/master or None while it starts)
        self._master_watches: dict[int, tuple[int, DataWatch | None]] = {}
        self._generations = itertools.count(1)
        self._topics: dict[str, _Topic] = {}
        self._broker_callbacks: list[BrokersCallback] = []
        self._ids_follower: _FollowedChildren | None = None
        client.add_listener(self._on_state)
        try:
            self._ensure_path(self._ids_path)
            self._ids_follower = _FollowedChildren(client, self._ids_path, self._read_broker_ids)
        except BaseException:
            self.close()
            raise

    # ---- public reads ------------------------------------------------------------------------

    @property
    def root(self) -> str:
        return self._root

    def brokers(self) -> dict[int, str]:
        """``{broker id: master url}`` of every broker with a live ``ids/<id>/master`` node.

        The url is the node's text, ``meta://host:port``; ids whose master node is missing or
        not a valid broker url are left out.
        """
        with self._state_lock:
            return dict(self._masters)

    def broker_url(self, broker_id: int) -> str | None:
        """Master url of ``broker_id``, or ``None`` if it has no live master."""
        with self._state_lock:
            return self._masters.get(broker_id)

    def read_url(self, broker_id: int) -> str | None:
        """Where a consumer reads ``broker_id``'s partitions: its master, else its lowest slave."""
        with self._state_lock:
            url = self._masters.get(broker_id)
            slaves = self._slaves.get(broker_id)
            if url is None and slaves:
                url = slaves[min(slaves)]
            return url

    def slaves(self, broker_id: int) -> dict[int, str]:
        """``{slave id: url}`` of the slaves registered for ``broker_id``."""
        with self._state_lock:
            return dict(self._slaves.get(broker_id, {}))

    def publish_partitions(self, topic: str) -> list[Partition]:
        """Partitions a producer may send ``topic`` to, sorted numerically (MetaQ §6.3).

        From the ``<id>-m`` children of ``topics-pub/<topic>``: partitions ``0..numParts-1`` of
        each broker that currently has a master url. Starts watching the topic on first use
        (creating ``topics-pub/<topic>`` and ``topics-sub/<topic>`` if missing).

        Raises:
            InvalidNameError: a bad topic name.
            ZooKeeperError: first use while ZooKeeper is unreachable, or the view is closed.
        """
        t = self._topic(topic)
        with self._state_lock:
            return list(t.publish)

    def subscribe_partitions(self, topic: str) -> list[str]:
        """Partition strings a consumer group balances for ``topic``, sorted as strings (§6.3).

        From every ``<id>-m`` / ``<id>-s<n>`` child of ``topics-sub/<topic>`` (masters and
        slaves, whether or not the broker is up): ``"<id>-0" .. "<id>-<numParts-1>"``,
        de-duplicated, in string order (``"0-10"`` before ``"0-2"``, ``"10-0"`` before
        ``"2-0"``). Starts watching the topic on first use, as ``publish_partitions``.

        Raises:
            InvalidNameError, ZooKeeperError: as ``publish_partitions``.
        """
        t = self._topic(topic)
        with self._state_lock:
            return list(t.subscribe)

    def topics(self) -> list[str]:
        """Topics this view watches, sorted."""
        with self._state_lock:
            return sorted(name for name, t in self._topics.items() if t.ready)

    # ---- callbacks ---------------------------------------------------------------------------

    def watch_topic(self, topic: str, callback: TopicCallback) -> Callable[[], None]:
        """Call ``callback(topic)`` after any change of the topic's publish or subscribe
        partitions, and after any change of ``brokers()``.

        Not called for the current state: read it right after registering. Runs on a kazoo
        thread (see the module docstring: keep it cheap). Exceptions are logged and ignored.

        Returns:
            A function that removes this callback (idempotent).

        Raises:
            InvalidNameError, ZooKeeperError: as ``publish_partitions`` (also: the view is
                closed).
        """
        if not callable(callback):
            raise InvalidArgumentError(f"callback is not callable: {callback!r}")
        t = self._topic(topic)
        with self._state_lock:
            if self._closed:
                raise ZooKeeperError("ClusterView is closed")
            t.callbacks.append(callback)
        return partial(self._remove_callback, t.callbacks, callback)

    def on_brokers_change(self, callback: BrokersCallback) -> Callable[[], None]:
        """Call ``callback()`` after any change of ``brokers()`` (a master added, removed or
        moved). Same threading rules as ``watch_topic``; returns the remover."""
        if not callable(callback):
            raise InvalidArgumentError(f"callback is not callable: {callback!r}")
        with self._state_lock:
            if self._closed:
                raise ZooKeeperError("ClusterView is closed")
            self._broker_callbacks.append(callback)
        return partial(self._remove_callback, self._broker_callbacks, callback)

    def _remove_callback(self, callbacks: list, callback: Callable) -> None:
        with self._state_lock:
            for i, registered in enumerate(callbacks):
                if registered is callback:
                    del callbacks[i]
                    return

    # ---- legacy tree -------------------------------------------------------------------------

    def legacy_partitions(self, topic: str) -> list[Partition]:
        """One read (no watch) of the legacy ``brokers/topics/<topic>`` tree, as MetaQ's
        python and ruby producers use it: partitions ``0..count-1`` of every ``<id>-m`` child
        (data = decimal count), sorted numerically; ``[]`` if the topic node is missing.
        Children with bad data are skipped (logged). Whether the broker has a master url is not
        checked; combine with ``brokers()`` for that.

        Raises:
            InvalidNameError: a bad topic name.
            ZooKeeperError: ZooKeeper unreachable or refused the read.
        """
        path = paths.topic_path(self._root, topic)
        try:
            children = self._client.get_children(path)
        except NoNodeError:
            return []
        except KazooException as e:
            raise ZooKeeperError(f"cannot read {path}: {e!r}") from e
        masters: list[tuple[int, str]] = []
        for name in children:
            try:
                broker_id, is_master, _ = paths.parse_broker_child_name(name)
            except ValueError:
                continue
            if is_master:
                masters.append((broker_id, paths.topic_broker_path(self._root, topic, broker_id)))
        result: list[Partition] = []
        for broker_id, child_path in masters:
            try:
                data, _ = self._client.get(child_path)
            except NoNodeError:
                continue
            except KazooException as e:
                raise ZooKeeperError(f"cannot read {child_path}: {e!r}") from e
            try:
                count = paths.parse_num_parts(data)
            except ValueError as e:
                log.warning("skipping %s: %s", child_path, e)
                continue
            result.extend(Partition(broker_id, p) for p in range(count))
        result.sort()
        return result

    # ---- life cycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every watch and callback. Idempotent; the kazoo client stays as it was.

        Reads of topics already watched return the last state seen; a new topic raises
        ``ZooKeeperError``.
        """
        with self._setup_lock:
            with self._state_lock:
                if self._closed:
                    return
                self._closed = True
                topics = list(self._topics.values())
                master_watches = [w for _, w in self._master_watches.values()]
                self._master_watches.clear()
                slave_followers = list(self._slave_followers.values())
                self._slave_followers.clear()
                self._broker_callbacks.clear()
                for t in topics:
                    t.callbacks.clear()
            self._client.remove_listener(self._on_state)
            if self._ids_follower is not None:
                self._ids_follower.close()
            for t in topics:
                t.close()
            for watch in master_watches:
                _stop_watch(watch)
            for follower in slave_followers:
                follower.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "ClusterView":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---- brokers -----------------------------------------------------------------------------

    def _read_broker_ids(self) -> None:
        """Re-read ``brokers/ids``; start/stop the master DataWatch of ids that came/went."""
        with self._ids_read_lock:
            if self._closed:
                return
            try:
                children = self._client.get_children(self._ids_path)
            except NoNodeError:
                children = []
            except KazooException as e:
                log.info("reading %s failed (%r); re-read on reconnect", self._ids_path, e)
                return
            ids: set[int] = set()
            for name in children:
                if name.isascii() and name.isdigit():
                    try:
                        paths.broker_id_path(self._root, int(name))  # validates the range
                        ids.add(int(name))
                        continue
                    except InvalidArgumentError:
                        pass
                log.warning("skipping %s/%s: not a broker id", self._ids_path, name)
            with self._state_lock:
                if self._closed:
                    return
                gone = [i for i in self._master_watches if i not in ids]
                stopped = [self._master_watches.pop(i)[1] for i in gone]
                changed = any(self._masters.pop(i, None) is not None for i in gone)
                changed = any([self._slaves.pop(i, None) for i in gone]) or changed
                slave_followers = [self._slave_followers.pop(i) for i in gone
                                   if i in self._slave_followers]
                started = {}
                for broker_id in sorted(ids - self._master_watches.keys()):
                    started[broker_id] = next(self._generations)
                    self._master_watches[broker_id] = (started[broker_id], None)
                if changed:
                    self._recompute_publish_locked()
            for watch in stopped:
                _stop_watch(watch)
            for follower in slave_followers:
                follower.close()
            if changed:
                self._notify_brokers()
            for broker_id, generation in started.items():
                self._start_master_watch(broker_id, generation)
                follower = _FollowedChildren(self._client, paths.broker_id_path(
                    self._root, broker_id), partial(self._read_slaves, broker_id))
                with self._state_lock:
                    if not self._closed and broker_id in self._master_watches:
                        self._slave_followers[broker_id], follower = follower, None
                if follower is not None:
                    follower.close()

    def _read_slaves(self, broker_id: int) -> None:
        """Re-read the ``slave<n>`` children of ``ids/<id>`` and their urls."""
        with self._slaves_read_lock:
            path = paths.broker_id_path(self._root, broker_id)
            try:
                children = self._client.get_children(path)
                found = {}
                for name in children:
                    try:
                        slave_id = paths.parse_slave_node_name(name)
                        data, _ = self._client.get(f"{path}/{name}")
                        paths.parse_broker_url(data)
                        found[slave_id] = paths.decode_text(data)
                    except (ValueError, NoNodeError):
                        continue
            except NoNodeError:
                found = {}
            except KazooException as e:
                log.info("reading the slaves of broker %d failed (%r)", broker_id, e)
                return
            with self._state_lock:
                if self._closed or broker_id not in self._master_watches:
                    return
                changed = self._slaves.get(broker_id, {}) != found
                if found:
                    self._slaves[broker_id] = found
                else:
                    self._slaves.pop(broker_id, None)
        if changed:
            self._notify_brokers()

    def _start_master_watch(self, broker_id: int, generation: int) -> None:
        path = paths.broker_master_path(self._root, broker_id)
        try:
            watch = DataWatch(self._client, path, partial(self._on_master, broker_id, generation))
        except Exception as e:  # noqa: BLE001 - retried by the next re-read of brokers/ids
            log.warning("cannot watch %s (%r); retried on the next change", path, e)
            with self._state_lock:
                if self._master_watches.get(broker_id, (None,))[0] == generation:
                    del self._master_watches[broker_id]
            return
        with self._state_lock:
            current = self._master_watches.get(broker_id, (None,))[0] == generation
            if current:
                self._master_watches[broker_id] = (generation, watch)
        if not current:
            _stop_watch(watch)

    def _on_master(
        self, broker_id: int, generation: int, data, stat, event=None
    ) -> bool | None:
        url: str | None = None
        if stat is not None and data:
            try:
                text = paths.decode_text(data)
                paths.parse_broker_url(text)
                url = text
            except ValueError as e:
                log.warning("ignoring master of broker %d: %s", broker_id, e)
        with self._state_lock:
            if self._closed or self._master_watches.get(broker_id, (None,))[0] != generation:
                return False
            old = self._masters.get(broker_id)
            if url is None:
                self._masters.pop(broker_id, None)
            else:
                self._masters[broker_id] = url
            changed = old != url
            if changed:
                self._recompute_publish_locked()
        if changed:
            self._notify_brokers()
        return None

    # ---- topics ------------------------------------------------------------------------------

    def _topic(self, topic: str) -> _Topic:
        t = self._topics.get(topic)
        if t is not None and t.ready:
            return t
        names.validate_topic_name(topic)
        with self._setup_lock:
            if self._closed:
                raise ZooKeeperError("ClusterView is closed")
            t = self._topics.get(topic)
            if t is not None and t.ready:
                return t
            t = _Topic(topic)
            with self._state_lock:
                self._topics[topic] = t
            try:
                for kind, path in (
                    (_PUB, paths.topics_pub_path(self._root, topic)),
                    (_SUB, paths.topics_sub_path(self._root, topic)),
                ):
                    self._ensure_path(path)
                    t.followers[kind] = _FollowedChildren(
                        self._client, path, partial(self._read_topic, t, kind)
                    )
            except BaseException:
                with self._state_lock:
                    self._topics.pop(topic, None)
                t.close()
                raise
            t.ready = True
            return t

    def _read_topic(self, t: _Topic, kind: str) -> None:
        """Re-read one topic tree (children and their JSON) and store what it yields."""
        if kind == _PUB:
            tree_path, child_path = paths.topics_pub_path, paths.topics_pub_broker_path
        else:
            tree_path, child_path = paths.topics_sub_path, paths.topics_sub_broker_path
        path = tree_path(self._root, t.name)
        with t.read_locks[kind]:
            if self._closed or t.closed:
                return
            try:
                children = self._client.get_children(path)
            except NoNodeError:
                children = []
            except KazooException as e:
                log.info("reading %s failed (%r); re-read on reconnect", path, e)
                return
            pending = []
            for name in sorted(children):
                try:
                    broker_id, is_master, slave_id = paths.parse_broker_child_name(name)
                except ValueError:
                    log.warning("skipping %s/%s: not <id>-m or <id>-s<n>", path, name)
                    continue
                if kind == _PUB and not is_master:
                    continue  # producers send to masters only
                node = child_path(self._root, t.name, broker_id, slave_id)
                pending.append((name, broker_id, node, self._client.get_async(node)))
            entries: dict[str, tuple[int, int]] = {}
            for name, broker_id, node, result in pending:
                try:
                    data, _ = result.get()
                except NoNodeError:
                    continue  # its deletion fires the children watch again
                except KazooException as e:
                    log.info("reading %s failed (%r); re-read on reconnect", node, e)
                    return
                try:
                    num_parts, _broker = paths.parse_topic_broker_json(data)
                except ValueError as e:
                    log.warning("skipping %s: %s", node, e)
                    continue
                entries[name] = (broker_id, num_parts)
            with self._state_lock:
                if self._closed or t.closed:
                    return
                t.entries[kind] = entries
                changed = self._recompute_topic_locked(t)
        if changed and t.ready:
            self._notify_topic(t)

    def _recompute_topic_locked(self, t: _Topic) -> bool:
        publish = tuple(
            sorted(
                Partition(broker_id, p)
                for broker_id, num_parts in t.entries[_PUB].values()
                if broker_id in self._masters
                for p in range(num_parts)
            )
        )
        subscribe = tuple(
            sorted(
                {
                    paths.partition_string(broker_id, p)
                    for broker_id, num_parts in t.entries[_SUB].values()
                    for p in range(num_parts)
                }
            )
        )
        changed = publish != t.publish or subscribe != t.subscribe
        t.publish, t.subscribe = publish, subscribe
        return changed

    def _recompute_publish_locked(self) -> None:
        for t in self._topics.values():
            self._recompute_topic_locked(t)

    # ---- notification and session ------------------------------------------------------------

    def _notify_topic(self, t: _Topic) -> None:
        with self._state_lock:
            if self._closed:
                return
            callbacks = list(t.callbacks)
        for callback in callbacks:
            self._call(callback, t.name)

    def _notify_brokers(self) -> None:
        with self._state_lock:
            if self._closed:
                return
            broker_callbacks = list(self._broker_callbacks)
            topic_callbacks = [
                (t.name, cb) for t in self._topics.values() if t.ready for cb in t.callbacks
            ]
        for callback in broker_callbacks:
            self._call(callback)
        for name, callback in topic_callbacks:
            self._call(callback, name)

    @staticmethod
    def _call(callback: Callable, *args) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("cluster view callback %r failed", callback)

    def _on_state(self, state: KazooState) -> None:
        # Called on kazoo's connection thread: never block here.
        if state == KazooState.CONNECTED and not self._closed:
            self._client.handler.spawn(self._reread_all)

    def _reread_all(self) -> None:
        """After a (re)connect: re-read every tree, in case it changed while we could not see."""
        try:
            self._read_broker_ids()
            with self._state_lock:
                topics = [t for t in self._topics.values() if t.ready]
            for t in topics:
                self._read_topic(t, _PUB)
                self._read_topic(t, _SUB)
        except Exception:
            log.exception("re-reading the cluster after a reconnect failed")

    def _ensure_path(self, path: str) -> None:
        try:
            self._client.ensure_path(path)
        except KazooException as e:
            raise ZooKeeperError(f"cannot create {path}: {e!r}") from e
