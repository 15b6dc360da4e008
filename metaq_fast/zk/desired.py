"""The broker registry's bookkeeping: what it wants in ZooKeeper and what it has applied where.

Imports: the standard library only (no kazoo, no I/O, no locking: ``zk/registry.py`` holds its
lock around every call).

The registry's maintainer takes ``Work`` from a ``DesiredState`` (a full pass, or the changed
topics only), applies it to ZooKeeper (``zk/broker_nodes.py``) and reports back which topic
registrations it applied in which ZooKeeper session; ``register_topic`` and friends wait on those
records. An argument named ``connected_session`` is the current session id while connected and
None otherwise, so that nothing counts as applied while the session is suspended or lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TopicRegistration:
    """What this broker publishes in ZooKeeper for one topic."""

    num_partitions: int
    accept_publish: bool = True
    accept_subscribe: bool = True


@dataclass
class Work:
    """One unit of the maintainer: a full pass, or the changed topics only."""

    full: bool
    session_id: int | None
    topics: dict[str, TopicRegistration]  # desired, snapshot
    dirty: set[str]  # topics changed since their last registration (removed ones included)
    checksum: int | None
    done: dict[str, TopicRegistration | None] = field(default_factory=dict)


class DesiredState:
    """The wanted broker registration (topics, checksum) and what was applied in which session."""

    def __init__(self, checksum: int | None):
        self.topics: dict[str, TopicRegistration] = {}  # desired
        self.checksum = checksum  # desired
        self.need_pass = True  # a full pass is due (every (re)connect, a checksum change)
        self.dirty: set[str] = set()  # topics changed since their last registration
        self.applied: dict[str, tuple[TopicRegistration, int]] = {}  # topic -> (spec, session)
        self.pass_session: int | None = None  # session of the last successful pass

    # ---- changes of the wanted registration (any thread) -------------------------------------

    def set_topic(
        self, topic: str, spec: TopicRegistration, connected_session: int | None
    ) -> bool:
        """Want ``topic`` registered as ``spec``; True if ZooKeeper needs a change for it."""
        self.topics[topic] = spec
        if self.topic_applied(topic, spec, connected_session):
            return False
        self.dirty.add(topic)
        return True

    def remove_topic(self, topic: str) -> bool:
        """Want ``topic`` gone; True if its nodes may exist (registered, or about to be)."""
        self.topics.pop(topic, None)
        if topic not in self.applied and topic not in self.dirty:
            return False
        self.dirty.add(topic)
        return True

    def set_checksum(self, checksum: int | None) -> bool:
        """Want ``checksum`` (None: no node); True if it changed (a pass is then due)."""
        if checksum == self.checksum:
            return False
        self.checksum = checksum
        self.need_pass = True
        return True

    # ---- questions --------------------------------------------------------------------------

    def pending(self) -> bool:
        """True when a pass or a topic change is due."""
        return self.need_pass or bool(self.dirty)

    def complete(self, connected_session: int | None) -> bool:
        """True when the last pass and every topic change succeeded in ``connected_session``."""
        return (
            not self.need_pass
            and not self.dirty
            and self.pass_session is not None
            and self.pass_session == connected_session
        )

    def topic_applied(
        self, topic: str, spec: TopicRegistration, connected_session: int | None
    ) -> bool:
        """True when ``spec`` of ``topic`` was applied in ``connected_session``."""
        applied = self.applied.get(topic)
        return (
            applied is not None
            and connected_session is not None
            and applied == (spec, connected_session)
        )

    def topic_settled(
        self, topic: str, spec: TopicRegistration | None, connected_session: int | None
    ) -> bool:
        """True when nothing is due and ``topic`` is registered as ``spec`` (None: deleted)."""
        if self.need_pass or topic in self.dirty:
            return False
        if spec is None:
            return topic not in self.applied
        return self.topic_applied(topic, spec, connected_session)

    def known_topics(self) -> list[str]:
        """Every topic whose nodes may exist: wanted, applied or pending (sorted)."""
        return sorted(self.topics.keys() | self.applied.keys() | self.dirty)

    # ---- the maintainer's work ------------------------------------------------------------------

    def take_work(self, session_id: int | None) -> Work:
        """What is due now, for ``session_id``; it is no longer due (``work_failed`` restores)."""
        work = Work(
            full=self.need_pass,
            session_id=session_id,
            topics=dict(self.topics),
            dirty=set(self.dirty),
            checksum=self.checksum,
        )
        self.need_pass = False
        self.dirty.clear()
        return work

    def work_failed(self, work: Work, session_id: int | None) -> None:
        """Keep what ``work`` applied before failing; the rest of it is due again."""
        self._record_done(work, session_id)
        self.need_pass = self.need_pass or work.full
        self.dirty |= work.dirty - work.done.keys()

    def work_done(self, work: Work, session_id: int | None) -> int | None:
        """Record ``work`` as applied; for a full pass, return the previous pass's session."""
        self._record_done(work, session_id)
        previous: int | None = None
        if work.full:
            previous, self.pass_session = self.pass_session, work.session_id
        return previous

    def _record_done(self, work: Work, session_id: int | None) -> None:
        if work.session_id is None:
            return
        for topic, spec in work.done.items():
            if spec is None:
                self.applied.pop(topic, None)
            else:
                self.applied[topic] = (spec, work.session_id)
            # Marked again while this work ran, but for what was just applied: nothing to redo.
            if self.topics.get(topic) == spec and work.session_id == session_id:
                self.dirty.discard(topic)
