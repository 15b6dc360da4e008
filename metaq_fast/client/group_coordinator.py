"""The consumer's group coordinator: MetaQ's ZooKeeper group protocol and the offset commits.

Imports: stdlib, kazoo, metaq_fast.backoff / errors, zk.paths, client (balance, offsets,
records). No broker connections: a claimed partition is handed to the fetcher through
``on_claimed``; a released one is deactivated here (the fetcher drops it) and the consumer is
told through ``on_released`` so it forgets what of it was polled.

Group protocol (reference sections 8.1-8.5, so our consumers and MetaQ's can share a group):

* the consumer registers ``consumers/<group>/ids/<group>_<id>`` (ephemeral, data: its topics);
* on every change of the group's ids, of a topic's ``topics-sub`` brokers, or of the ZooKeeper
  session, the coordinator thread rebalances: consumer ids and ``<brokerId>-<partition>`` strings
  sorted as strings, MetaQ's DEFAULT split (``balance.assign``);
* while the connection is SUSPENDED (lost, session maybe expiring) nothing is fetched or
  delivered once the session could have expired on the server (``suspension_grace_s`` after
  the suspension); on LOST (expired) everything owned is dropped at once, before fetching
  resumes;
* partitions it no longer gets are released: fetching stops, offsets are committed, then its
  ``owners`` node is deleted; partitions it gets are claimed with an ephemeral ``owners`` node.
  A node still held by another consumer (it has not released yet) is watched, as kazoo's Lock
  watches the node before it: its deletion wakes the coordinator, which claims at once (with a
  re-check every ``OWNER_RECHECK_S`` as a safety net). A partition never has two owners;
* a claimed partition starts at its committed ``offsets`` node (``<msgId>-<offset>``), else (no
  node, or one that does not hold an offset: logged once, client/offsets.py) at the earliest (or
  latest) offset.

States (kazoo partitioner style): JOINING -> BALANCED <-> REBALANCING; on SUSPENDED it claims
nothing new and fetches nothing; on LOST (session expired) it stops fetching everything at once
(another consumer may own those partitions now) and rejoins when the session is back. ZooKeeper errors during a
rebalance are retried with a jittered back-off from ``rebalance_backoff_s`` up to
``REBALANCE_BACKOFF_MAX_S``.

Commits: every ``commit_interval_s`` the coordinator thread writes the consumed position of the
partitions that moved, so a slow ZooKeeper write delays rebalancing, never fetching. Commits of
one partition are serialised with its release (``_commit_lock``): once a release has written
its final offset no older commit of that partition can land after it and rewind the next owner.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.protocol.states import KazooState
from kazoo.recipe.watchers import ChildrenWatch

from ..backoff import Backoff, Retry
from ..errors import MetaqError, ZooKeeperError
from ..zk import paths
from .records import PartitionState

log = logging.getLogger(__name__)

OWNER_RECHECK_S = 5.0  # a held owner node is watched; this re-check is only a safety net
REBALANCE_BACKOFF_MAX_S = 5.0
CLAIM_ATTEMPTS = 3  # create / find gone / create again: a node that flickers is left to a watch


class _Outcome:
    DONE = "done"  # every assigned partition is ours
    WAITING = "waiting"  # some are still held by their previous owner (watched)


class GroupCoordinator:
    def __init__(self, zk, cluster, *, root: str, group: str, consumer_id: str, strategy,
                 offsets, fetch_bytes: int, commit_interval_s: float, rebalance_backoff_s: float,
                 on_claimed, on_released, on_suspended=None, on_resumed=None):
        self.zk = zk
        self.cluster = cluster
        self.root = root
        self.group = group
        self.consumer_id = consumer_id
        self.assign_strategy = strategy
        self._offsets = offsets
        self.fetch_bytes = fetch_bytes
        self.commit_interval_s = commit_interval_s
        self._retry = Retry(Backoff(rebalance_backoff_s, max(rebalance_backoff_s,
                                                             REBALANCE_BACKOFF_MAX_S),
                                    factor=2.0, jitter=0.2))
        self._on_claimed = on_claimed
        self._on_released = on_released
        self._on_suspended = on_suspended or (lambda grace_s: None)
        self._on_resumed = on_resumed or (lambda: None)
        self.topics: list[str] = []
        self.lock = threading.RLock()  # owned partitions and their positions (shared w/ poll)
        self.owned: dict[tuple[str, str], PartitionState] = {}
        self._drops = 0  # bumped by every _drop_all: a claim begun before one is void
        self._commit_lock = threading.Lock()
        self._events: queue.Queue = queue.Queue()
        self._me = paths.encode_text(consumer_id)
        self._unwatch = []
        self._registered = False
        self.rebalances = 0
        self.zk.add_listener(self._on_zk_state)
        self._thread = threading.Thread(target=self._run, name="metaq-consumer-group", daemon=True)
        self._thread.start()

    # ---- the consumer's side ------------------------------------------------------------

    def subscribe(self, topics: list[str]) -> None:
        with self.lock:
            new = [t for t in topics if t not in self.topics]
            self.topics.extend(new)
        for topic in new:
            self._unwatch.append(self.cluster.watch_topic(topic, lambda t: self._events.put("topic")))
        self._events.put("subscribe")

    def assignment(self) -> dict[str, list[str]]:
        with self.lock:
            out: dict[str, list[str]] = {}
            for (topic, name), state in self.owned.items():
                if state.active:
                    out.setdefault(topic, []).append(name)
            return {t: sorted(v) for t, v in out.items()}

    def idle(self) -> bool:
        """No event waits to be handled (the last rebalance saw the group as it is)."""
        return self._events.empty()

    def commit(self) -> None:
        """Write the consumed position of every owned partition that moved to ZooKeeper."""
        with self.lock:
            states = list(self.owned.values())
        for state in states:
            with self._commit_lock:
                if state.active:  # a released one had its last commit from the release
                    self._commit_state(state)

    def close(self) -> None:
        """Stop the coordinator thread, release everything (committed), leave the group."""
        self._events.put("close")
        self._thread.join(10)
        with self.lock:
            owned = list(self.owned)
        try:
            for key in owned:
                self._release(*key)
            try:
                self.zk.delete(paths.consumer_id_path(self.root, self.group, self.consumer_id))
            except NoNodeError:
                pass
        except (KazooException, MetaqError) as exc:
            log.warning("consumer %s: leaving the group cleanly failed: %s", self.consumer_id, exc)
        for stop in self._unwatch:
            stop()
        self.zk.remove_listener(self._on_zk_state)

    # ---- the coordinator thread -----------------------------------------------------------

    def _on_zk_state(self, state) -> None:
        """Kazoo's session states, on its event thread (quick work only, no ZooKeeper calls).

        SUSPENDED: the connection is gone and the session may expire before it comes back, and
        with it our owner nodes; delivering on past that would make this consumer a second
        owner once another one claims them, so the fetcher pauses ``suspension_grace_s`` from
        now (as Curator's recipes give up a lock on SUSPENDED, but not before the server can
        have expired the session: a ZooKeeper blip or a leader election stalls no delivery).
        LOST: the session expired; everything owned is dropped here, before the connection's
        CONNECTED resumes the fetcher. CONNECTED: same session (ownership held all along) or a
        new one (nothing owned any more; the rebalance claims again)."""
        if state == KazooState.SUSPENDED:
            self._on_suspended(self.suspension_grace_s)
        elif state == KazooState.LOST:
            self._drop_all("ZooKeeper session expired")
            self._events.put("lost")
        elif state == KazooState.CONNECTED:
            self._on_resumed()
            self._events.put("connected")

    @property
    def suspension_grace_s(self) -> float:
        """How long after SUSPENDED our session surely still holds on the server. Kazoo reports
        SUSPENDED when an answer is ``2/3`` of the session timeout late, so the server heard
        from us at most that long ago and cannot expire the session for another third of it;
        a fifth of that is kept as margin. Assumes the server granted the timeout asked for
        (ZooKeeper clamps it to 2..20 ticks: keep ``zk_session_timeout_s`` inside them)."""
        session_s = getattr(self.zk, "_session_timeout", 0) / 1000.0
        return max(0.0, session_s / 3.0 * 0.8)

    def _run(self) -> None:
        """Waits for events (or the next commit), rebalances until the group is settled."""
        next_commit = time.monotonic() + self.commit_interval_s
        retry_at = None  # when to rebalance again without an event
        while True:
            now = time.monotonic()
            wait = next_commit - now
            if retry_at is not None:
                wait = min(wait, retry_at - now)
            try:
                event = self._events.get(timeout=max(0.0, wait))
            except queue.Empty:
                event = None
            events = [] if event is None else [event]
            while True:  # coalesce a burst of events into one rebalance
                try:
                    events.append(self._events.get_nowait())
                except queue.Empty:
                    break
            if "close" in events:
                return
            if time.monotonic() >= next_commit:
                next_commit = time.monotonic() + self.commit_interval_s
                self._periodic_commit()
            if "lost" in events:
                self._drop_all("ZooKeeper session expired")
                retry_at = time.monotonic() + self._retry.next_delay()
                continue
            if not events and (retry_at is None or time.monotonic() < retry_at):
                continue  # only the commit was due
            retry_at = self._rebalance_once()

    def _periodic_commit(self) -> None:
        try:
            self.commit()
        except MetaqError as exc:
            log.warning("periodic offset commit failed: %s", exc)
        except Exception:  # noqa: BLE001 - the coordinator thread must live on
            log.exception("periodic offset commit failed")

    def _rebalance_once(self) -> float | None:
        """One rebalance; returns when to try again without an event (None: settled)."""
        if not self.topics:
            return None
        try:
            self._register()
            outcome = self._rebalance()
        except (KazooException, ZooKeeperError, OSError) as exc:
            log.warning("consumer %s: rebalance failed (%s); retrying", self.consumer_id, exc)
            return time.monotonic() + self._retry.next_delay()
        except Exception:
            log.exception("consumer %s: rebalance failed", self.consumer_id)
            return time.monotonic() + self._retry.next_delay()
        self._retry.reset()
        if outcome == _Outcome.WAITING:
            return time.monotonic() + OWNER_RECHECK_S
        return None

    def _ids_path(self) -> str:
        return paths.consumer_ids_path(self.root, self.group)

    def _register(self) -> None:
        path = paths.consumer_id_path(self.root, self.group, self.consumer_id)
        data = paths.encode_consumer_topics(self.topics)
        self.zk.ensure_path(self._ids_path())
        try:
            self.zk.create(path, data, ephemeral=True)
        except NodeExistsError:
            self.zk.set(path, data)
        if not self._registered:
            self._registered = True
            self._unwatch.append(self._watch_ids())

    def _watch_ids(self):
        stopped = [False]

        def on_children(_children):
            if stopped[0]:
                return False
            self._events.put("ids")
            return True

        ChildrenWatch(self.zk, self._ids_path(), on_children)

        def stop():
            stopped[0] = True
        return stop

    def _group_members(self) -> dict[str, list[str]]:
        """Consumer ids of the group per subscribed topic, sorted as strings."""
        members: dict[str, list[str]] = {t: [] for t in self.topics}
        for child in self.zk.get_children(self._ids_path()):
            try:
                data, _ = self.zk.get(f"{self._ids_path()}/{child}")
            except NoNodeError:
                continue
            for topic in paths.parse_consumer_topics(data):
                if topic in members:
                    members[topic].append(child)
        return {t: sorted(ids) for t, ids in members.items()}

    def _rebalance(self) -> str:
        self.rebalances += 1
        members = self._group_members()
        wanted: set[tuple[str, str]] = set()
        for topic in self.topics:
            partitions = self.cluster.subscribe_partitions(topic)
            for name in self.assign_strategy(self.consumer_id, members[topic], partitions):
                wanted.add((topic, name))
        with self.lock:
            owned = set(k for k, s in self.owned.items() if s.active)
        for key in sorted(owned - wanted):
            self._release(*key)
        outcome = _Outcome.DONE
        for key in sorted(wanted - owned):
            if not self._claim(*key):
                outcome = _Outcome.WAITING
        self._delete_stray_owner_nodes()
        if outcome == _Outcome.DONE:
            log.info("consumer %s owns %s", self.consumer_id,
                     ", ".join(f"{t}:{p}" for t, p in sorted(wanted)) or "nothing")
        return outcome

    def _delete_stray_owner_nodes(self) -> None:
        """Owner nodes of ours for partitions we do not hold: a release whose delete failed
        (connection loss, session kept), or a claim made in a new session that the LOST drop
        forgot. Left alone they would keep the partition from its owner until our session ends."""
        with self.lock:
            held = {k for k, s in self.owned.items() if s.active}
        for topic in self.topics:
            parent = paths.owners_topic_path(self.root, self.group, topic)
            try:
                children = self.zk.get_children(parent)
            except NoNodeError:
                continue
            for name in children:
                if (topic, name) in held:
                    continue
                path = f"{parent}/{name}"
                try:
                    data, stat = self.zk.get(path)
                    if data == self._me and stat.ephemeralOwner == self.zk.client_id[0]:
                        self.zk.delete(path, version=stat.version)
                        log.warning("consumer %s: deleted its stray owner node %s:%s",
                                    self.consumer_id, topic, name)
                except NoNodeError:
                    continue

    def _on_owner_node(self, _event) -> None:
        self._events.put("owner")

    def _take_owner_node(self, path: str) -> bool:
        """Create our ephemeral owner node; True if it is ours (made now, or still ours from
        before a reconnect). A node held by another consumer gets a watch: its deletion or
        change is an event of the coordinator."""
        for _attempt in range(CLAIM_ATTEMPTS):
            try:
                self.zk.create(path, self._me, ephemeral=True)
                return True
            except NodeExistsError:
                pass
            try:
                data, _ = self.zk.get(path, watch=self._on_owner_node)
            except NoNodeError:
                continue  # let go between our create and our read: try again
            return data == self._me
        return False

    def _claim(self, topic: str, name: str) -> bool:
        path = paths.owner_path(self.root, self.group, topic, name)
        with self.lock:
            drops = self._drops
        self.zk.ensure_path(paths.owners_topic_path(self.root, self.group, topic))
        if not self._take_owner_node(path):
            return False  # still owned by another consumer: its node is watched
        # The offset is read once we own the partition (the previous owner commits before it
        # lets go); a bad node reads as no offset. If reading fails all the same (ZooKeeper),
        # the claim is given back so that no partition stays owned and unfetched.
        try:
            offset, msg_id = self._offsets.load(
                paths.offset_path(self.root, self.group, topic, name))
        except BaseException:
            try:
                self.zk.delete(path)
            except KazooException:
                pass  # ephemeral: it goes with the session at worst
            raise
        state = PartitionState(topic, name, offset, msg_id, self.fetch_bytes)
        with self.lock:
            if self._drops != drops:
                # The session expired while we claimed (the LOST drop ran on kazoo's thread):
                # the node went with it and another consumer may own the partition now.
                return False
            self.owned[(topic, name)] = state
        self._on_claimed(state)
        return True

    def _release(self, topic: str, name: str) -> None:
        with self.lock:
            state = self.owned.pop((topic, name), None)
            if state is not None:
                state.active = False
                self._on_released(state)
        if state is None:
            return
        with self._commit_lock:
            self._commit_state(state)
        try:
            path = paths.owner_path(self.root, self.group, topic, name)
            data, _ = self.zk.get(path)
            if data == self._me:
                self.zk.delete(path)
        except NoNodeError:
            pass
        log.info("consumer %s released %s:%s at offset %d", self.consumer_id, topic, name,
                 state.consumed)

    def _drop_all(self, why: str) -> None:
        """Stop fetching everything now (the session is gone: others may own it already)."""
        with self.lock:
            self._drops += 1
            dropped = list(self.owned.values())
            for state in dropped:
                state.active = False
                self._on_released(state)
            self.owned.clear()
        if dropped:
            log.warning("consumer %s dropped %d partition(s): %s", self.consumer_id, len(dropped), why)

    def _commit_state(self, state: PartitionState) -> None:
        # The position is read once, under the lock that poll marks it with: a poll during a
        # slow write moves it on, and only what was written may count as committed (else the
        # newer position would never be written, and a clean close would skip it).
        with self.lock:
            consumed, consumed_id = state.consumed, state.consumed_id
        if consumed == state.committed:
            return
        path = paths.offset_path(self.root, self.group, state.topic, state.name)
        data = paths.encode_offset(consumed_id, consumed)
        try:
            try:
                self.zk.set(path, data)
            except NoNodeError:
                self.zk.create(path, data, makepath=True)
        except KazooException as exc:
            raise ZooKeeperError(f"cannot commit offset of {state.topic}:{state.name}: {exc}") from exc
        state.committed = consumed
