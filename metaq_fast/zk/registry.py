"""A broker's registration in MetaQ's ZooKeeper tree, kept across connection and session loss.

Used by the broker's supervisor process only; workers never talk to ZooKeeper. Follows
``metaq-protocol.md`` 6.2 (MetaQ's ``BrokerZooKeeper.java``): at start the ephemeral
``ids/<id>/master`` (URL), the URL again in the persistent ``ids/<id>`` "for old clients", the
ephemeral ``master_config_checksum``; per topic the ephemeral ``topics/<t>/<id>-m`` (partition
count) and, when accepted, ``topics-pub/<t>/<id>-m`` / ``topics-sub/<t>/<id>-m`` (JSON). Every
path and node format comes from ``metaq_fast.zk.paths``.

Imports: the standard library, kazoo, ``metaq_fast.backoff``, ``metaq_fast.errors`` and
``metaq_fast.zk.paths`` / ``ops`` (the deadline-bound ZooKeeper operations) / ``desired`` (the
bookkeeping of wanted and applied registrations) / ``broker_nodes`` (the writes to this broker's
nodes). This module is the reconciler: its threads, states, waits and retries.

Threads: kazoo's connection thread calls ``_on_state`` (it only records the state and wakes the
maintainer; kazoo forbids blocking there); one maintainer thread ("metaq-zk-registry-<id>") does
all ZooKeeper work of the running registry and calls ``on_change``; ``start``, ``stop``,
``register_topic``, ``unregister_topic`` and ``set_config_checksum`` may be called from any other
thread and wait for the maintainer with a timeout.

States (``state``) and transitions::

    stopped --start()--> connected            (registered once the first pass is done)
    connected --connection lost--> suspended  (session may be alive; keep serving)
    suspended --reconnected, same session--> connected: verify every node, re-create missing ones
    suspended|connected --session expired--> lost --new session--> connected: re-register all
    any --stop()--> stopped

The maintainer keeps a desired state (broker node, checksum, topics) and reconciles ZooKeeper with
it: a *pass* after every (re)connect reads all of this broker's nodes and fixes what differs (node
missing, wrong data, or an ephemeral of another session); between passes ``register_topic``
applies MetaQ's delete-then-create to the changed topic only. A failed pass or topic change is
retried with backoff while connected. ``registered`` (``wait_registered``) is set when the last
pass and every topic change succeeded in the current session, and cleared on SUSPENDED, LOST and
stop.

Duplicate broker ids: ``ids/<id>/master`` held by another live session makes ``start`` raise
``DuplicateBrokerError`` (MetaQ refuses to start too). Found later (another broker took the id
while our session was lost) it is logged as an error and retried with backoff, never overwritten.
A broker restarted after ``kill -9`` within its old session's timeout meets its own old node and
gets ``DuplicateBrokerError`` too, until that session expires on the server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.protocol.states import KazooState

from metaq_fast.backoff import Backoff, Retry
from metaq_fast.errors import DuplicateBrokerError, InvalidArgumentError, ZooKeeperError
from metaq_fast.zk import paths
from metaq_fast.zk.broker_nodes import BrokerNodes
# TopicRegistration is part of this module's API (tests import it from here).
from metaq_fast.zk.desired import DesiredState, TopicRegistration, Work
from metaq_fast.zk.ops import DeadlineOps

log = logging.getLogger(__name__)

STATE_STOPPED = "stopped"
STATE_CONNECTED = "connected"
STATE_SUSPENDED = "suspended"
STATE_LOST = "lost"

START_TIMEOUT_S_DEFAULT = 30.0
STOP_TIMEOUT_S_DEFAULT = 10.0
# kazoo reconnects forever (a broker must come back by itself after a ZooKeeper outage), backing
# off from 0.1 s to this cap; kazoo's default cap of one hour would leave a broker unregistered
# long after ZooKeeper is back.
RECONNECT_DELAY_MIN_S = 0.1
RECONNECT_DELAY_MAX_S = 2.0
# Retry of a failed pass or topic change while connected (also of a broker id found taken);
# jittered so that the brokers of a cluster do not retry in step after a ZooKeeper outage.
RETRY_DELAY_MIN_S = 0.2
RETRY_DELAY_MAX_S = 5.0
RETRY_BACKOFF = Backoff(RETRY_DELAY_MIN_S, RETRY_DELAY_MAX_S, jitter=0.2)
# Part of stop()'s timeout kept for closing the kazoo client after unregistering.
CLOSE_RESERVE_S_MAX = 1.0

_KAZOO_STATES = {
    KazooState.CONNECTED: STATE_CONNECTED,
    KazooState.SUSPENDED: STATE_SUSPENDED,
    KazooState.LOST: STATE_LOST,
}


class _Stopping(Exception):
    """stop() began: the maintainer abandons its current work."""


class BrokerRegistry:
    """Registers one master broker in ZooKeeper and keeps it registered.

    Args:
        connect: ZooKeeper connect string ``host:port[,host:port...][/chroot]`` (``zk.zkConnect``);
            a chroot must already exist.
        root: MetaQ's root (``zk.zkRoot``), normalised as MetaQ does.
        broker_id: ``brokerId``.
        url: ``meta://host:port`` of the broker (``paths.broker_url``).
        session_timeout_ms: requested session timeout (``zk.zkSessionTimeoutMs``).
        connection_timeout_ms: how long ``start`` tries to connect (``zk.zkConnectionTimeoutMs``);
            later reconnects never give up.
        sync_time_ms: pause after unregistering in ``stop(sync_wait=True)`` (``zk.zkSyncTimeMs``).
        config_checksum: CRC32 of the config file for ``master_config_checksum``; None: no node.
        slave_id: register as slave ``slave_id`` of the broker id (``ids/<id>/slave<n>``,
            topics as ``<id>-s<n>``) instead of its master; ``set_slave_id`` changes it later.
        on_change: called from the maintainer thread with the new state ("connected",
            "suspended", "lost") for logging; must not block nor call the waiting methods.
        op_timeout_ms: bound of every single ZooKeeper call; None means the session timeout.

    Raises:
        InvalidArgumentError: a bad broker id, url, checksum or timeout.
        InvalidNameError: a bad root.
    """

    def __init__(
        self,
        connect: str,
        *,
        root: str = paths.DEFAULT_ROOT,
        broker_id: int,
        url: str,
        session_timeout_ms: int = 30000,
        connection_timeout_ms: int = 30000,
        sync_time_ms: int = 5000,
        config_checksum: int | None = None,
        on_change: Callable[[str], object] | None = None,
        op_timeout_ms: int | None = None,
        slave_id: int | None = None,
    ):
        if not isinstance(connect, str) or not connect.strip():
            raise InvalidArgumentError(
                f"ZooKeeper connect string must be non-empty, got {connect!r}"
            )
        self._root = paths.normalize_root(root)
        self._broker_id = broker_id
        paths.broker_master_path(self._root, broker_id)  # validates the id
        try:
            paths.parse_broker_url(url)
        except ValueError as e:
            raise InvalidArgumentError(f"bad broker url: {e}") from None
        self._url = url
        for name, value in (
            ("session_timeout_ms", session_timeout_ms),
            ("connection_timeout_ms", connection_timeout_ms),
            ("op_timeout_ms", session_timeout_ms if op_timeout_ms is None else op_timeout_ms),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(sync_time_ms, int) or isinstance(sync_time_ms, bool) or sync_time_ms < 0:
            raise InvalidArgumentError(
                f"sync_time_ms must be an integer >= 0, got {sync_time_ms!r}"
            )
        if config_checksum is not None:
            paths.encode_config_checksum(config_checksum)  # validates
        self._connect = connect
        self._session_timeout_s = session_timeout_ms / 1000.0
        self._connection_timeout_s = connection_timeout_ms / 1000.0
        self._sync_time_s = sync_time_ms / 1000.0
        self._op_timeout_s = (op_timeout_ms or session_timeout_ms) / 1000.0
        self._ops = DeadlineOps(self._op_timeout_s)
        self._nodes = BrokerNodes(self._root, broker_id, url, self._ops, slave_id)
        self._on_change = on_change

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        # Serialises ZooKeeper mutations of the maintainer and stop().
        self._ops_lock = threading.Lock()
        self._registered = threading.Event()
        # Everything below is guarded by _lock.
        self._client: KazooClient | None = None
        self._worker: threading.Thread | None = None
        self._state = STATE_STOPPED
        self._session_id: int | None = None
        self._started = False  # start() succeeded
        self._stopping = False  # stop() began (or start() failed); never cleared
        self._start_error: BaseException | None = None
        self._last_error: BaseException | None = None
        self._notes: list[str] = []  # states not yet reported to on_change
        self._desired = DesiredState(config_checksum)
        self._retry_at: float | None = None
        self._retry = Retry(RETRY_BACKOFF)

    # ---- public API ------------------------------------------------------------------------

    @property
    def broker_id(self) -> int:
        return self._broker_id

    @property
    def url(self) -> str:
        return self._url

    @property
    def state(self) -> str:
        """"connected", "suspended", "lost", or "stopped" (before start and after stop)."""
        with self._lock:
            return self._state

    @property
    def session_id(self) -> int | None:
        """The current ZooKeeper session id (None when not connected)."""
        with self._lock:
            return self._session_id if self._state == STATE_CONNECTED else None

    @property
    def client(self) -> KazooClient | None:
        """The registry's own kazoo client (for tests and diagnostics; do not stop it)."""
        with self._lock:
            return self._client

    @property
    def registered(self) -> bool:
        """True when every node is registered in the current session."""
        return self._registered.is_set()

    def wait_registered(self, timeout_s: float | None = None) -> bool:
        """Wait until every node is registered in the current session; False on timeout."""
        return self._registered.wait(timeout_s)

    def registered_topics(self) -> dict[str, TopicRegistration]:
        """The topics this registry maintains (registered now or as soon as ZooKeeper allows)."""
        with self._lock:
            return dict(self._desired.topics)

    def start(self, timeout_s: float = START_TIMEOUT_S_DEFAULT) -> None:
        """Connect, register the broker, its checksum and the topics known so far; once only.

        Connecting is bounded by ``connection_timeout_ms`` and ``timeout_s``, the whole by
        ``timeout_s``. On failure nothing is left running.

        Raises:
            DuplicateBrokerError: ``ids/<id>/master`` belongs to another live session.
            ZooKeeperError: ZooKeeper not reachable in time, the chroot is missing, or the
                registration did not complete within ``timeout_s`` (the message says why).
        """
        deadline = time.monotonic() + timeout_s
        with self._lock:
            if self._client is not None or self._stopping:
                raise RuntimeError("BrokerRegistry.start() may be called once")
            try:
                client = KazooClient(
                    hosts=self._connect,
                    timeout=self._session_timeout_s,
                    connection_retry={
                        "max_tries": -1,
                        "delay": RECONNECT_DELAY_MIN_S,
                        "backoff": 2,
                        "max_delay": RECONNECT_DELAY_MAX_S,
                    },
                )
            except (ValueError, KazooException) as e:
                raise ZooKeeperError(f"bad ZooKeeper connect string {self._connect!r}: {e}") from e
            client.add_listener(self._on_state)
            self._client = client
        connect_timeout_s = max(0.0, min(self._connection_timeout_s, deadline - time.monotonic()))
        try:
            client.start(timeout=connect_timeout_s)
        except client.handler.timeout_exception:
            self._fail_start(client, deadline)
            raise ZooKeeperError(
                f"cannot connect to ZooKeeper at {self._connect!r} within {connect_timeout_s:g} s "
                f"(zk.zkConnectionTimeoutMs={int(self._connection_timeout_s * 1000)}); "
                "is it running?"
            ) from None
        except Exception as e:
            self._fail_start(client, deadline)
            raise ZooKeeperError(f"cannot connect to ZooKeeper at {self._connect!r}: {e!r}") from e
        if client.chroot:
            try:
                chroot_exists = self._ops.result(client.exists_async("/"), "exists", "/", deadline)
            except (ZooKeeperError, KazooException) as e:
                self._fail_start(client, deadline)
                raise ZooKeeperError(f"cannot read ZooKeeper at {self._connect!r}: {e}") from e
            if chroot_exists is None:
                self._fail_start(client, deadline)
                raise ZooKeeperError(
                    f"the chroot {client.chroot!r} of the ZooKeeper connect string "
                    f"{self._connect!r} does not exist; create it first"
                )
        worker = threading.Thread(
            target=self._run, name=f"metaq-zk-registry-{self._broker_id}", daemon=True
        )
        with self._cond:
            self._worker = worker
        worker.start()
        with self._cond:
            self._cond.wait_for(
                lambda: self._registered.is_set() or self._start_error is not None,
                max(0.0, deadline - time.monotonic()),
            )
            error = self._start_error
            ok = self._registered.is_set() and error is None
            if ok:
                self._started = True
            last = self._last_error
        if ok:
            log.info(
                "broker %d registered in ZooKeeper %s as %s (session 0x%x)",
                self._broker_id, self._connect, self._url, self.session_id or 0,
            )
            return
        self._fail_start(client, deadline)
        if isinstance(error, DuplicateBrokerError):
            raise error
        reason = f"; last error: {last}" if last is not None else ""
        raise ZooKeeperError(
            f"broker {self._broker_id} could not register in ZooKeeper {self._connect!r} within "
            f"{timeout_s:g} s{reason}"
        )

    def set_slave_id(self, slave_id: int | None) -> None:
        """Register as slave ``slave_id`` from now on (None: as the master). The maintainer's
        next pass (started here) deletes the old role's nodes and creates the new ones. Waits
        for a pass in progress; never call it from the maintainer or kazoo's threads."""
        with self._ops_lock, self._cond:
            self._nodes.set_slave_id(slave_id)
            self._desired.need_pass = True
            self._registered.clear()
            self._cond.notify_all()

    @property
    def slave_id(self) -> int | None:
        return self._nodes.slave_id

    def set_role_hook(self, hook) -> None:
        """Before ``start``: ``hook(client)`` runs at the start of every full pass, on the
        maintainer thread, and returns the slave id to register as (None: master); it may
        claim the master role first (broker/replication.py). It must not call back into the
        registry's waiting methods."""
        self._nodes.role_hook = hook

    def request_pass(self) -> None:
        """Run a full pass soon (the role may have changed: a master gone, a new leader)."""
        with self._cond:
            self._desired.need_pass = True
            self._cond.notify_all()

    def register_topic(
        self,
        topic: str,
        num_partitions: int,
        accept_publish: bool = True,
        accept_subscribe: bool = True,
        *,
        timeout_s: float | None = None,
    ) -> bool:
        """Publish ``topic`` (MetaQ 6.2 step 1) now and after every session loss.

        A changed registration deletes this broker's three topic nodes and creates them again;
        the same registration again does nothing. Before ``start`` the topic is only remembered.

        Args:
            timeout_s: how long to wait for ZooKeeper; None means the op timeout, 0 returns at
                once (the maintainer registers it in the background).

        Returns:
            True if the nodes are in ZooKeeper (current session) on return, False if the
            registration is still pending; it then happens by itself when ZooKeeper allows.

        Raises:
            InvalidNameError: a bad topic name.
            InvalidArgumentError: ``num_partitions`` not in 1..2**31-1.
        """
        paths.topic_path(self._root, topic)  # validates
        paths.encode_num_parts(num_partitions)  # validates
        spec = TopicRegistration(num_partitions, bool(accept_publish), bool(accept_subscribe))
        with self._cond:
            if self._stopping:
                log.warning("register_topic(%r) after stop() ignored", topic)
                return False
            if self._desired.set_topic(topic, spec, self._connected_session_locked()):
                self._update_registered_locked()  # not every node registered until it is done
                self._cond.notify_all()
            return self._wait_topic_locked(topic, spec, timeout_s)

    def unregister_topic(self, topic: str, *, timeout_s: float | None = None) -> bool:
        """Stop maintaining ``topic`` and delete this broker's three nodes of it.

        Returns:
            True if the nodes are gone on return (or were never registered), False if the
            deletion is still pending (done when ZooKeeper allows, or by the session's end).

        Raises:
            InvalidNameError: a bad topic name.
        """
        paths.topic_path(self._root, topic)  # validates
        with self._cond:
            if self._stopping:
                return False
            if not self._desired.remove_topic(topic):
                return True
            self._update_registered_locked()
            self._cond.notify_all()
            return self._wait_topic_locked(topic, None, timeout_s)

    def set_config_checksum(self, checksum: int | None, *, timeout_s: float | None = None) -> bool:
        """Change (or, with None, remove) ``master_config_checksum`` (config reload, 6.2 step 3).

        Returns:
            True if ZooKeeper holds the new value on return, False if it is still pending.
        """
        if checksum is not None:
            paths.encode_config_checksum(checksum)  # validates
        with self._cond:
            if self._stopping:
                return False
            if not self._desired.set_checksum(checksum):
                return self._registered.is_set()
            self._registered.clear()
            self._cond.notify_all()
            if self._client is None:
                return False
        return self.wait_registered(self._wait_timeout(timeout_s))

    def stop(self, timeout_s: float = STOP_TIMEOUT_S_DEFAULT, *, sync_wait: bool = False) -> None:
        """Unregister gracefully and close the client, within ``timeout_s``; never raises.

        Deletes (only nodes of this session) ``ids/<id>/master``, ``master_config_checksum``,
        ``ids/<id>`` (or blanks it when it still has children, as MetaQ does) and every topic's
        three nodes; with ``sync_wait`` then sleeps ``sync_time_ms`` (bounded by the timeout) so
        clients notice before the broker stops serving. With ZooKeeper unreachable it logs and
        just closes the client: the ephemerals go when the session expires.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            client = self._client
            if self._stopping or client is None:
                self._stopping = True
                return
            self._stopping = True
            self._registered.clear()
            self._cond.notify_all()
        unregister_deadline = deadline - min(CLOSE_RESERVE_S_MAX, timeout_s / 4)
        self._join_worker(unregister_deadline)
        unregistered = False
        if self._ops_lock.acquire(timeout=max(0.0, unregister_deadline - time.monotonic())):
            try:
                if client.state == KazooState.CONNECTED:
                    with self._lock:
                        topics = self._desired.known_topics()
                    unregistered = self._nodes.unregister_all(client, topics, unregister_deadline)
                else:
                    log.warning(
                        "ZooKeeper %s unreachable at stop (%s): broker %d's ephemeral nodes go "
                        "when its session expires",
                        self._connect, client.state, self._broker_id,
                    )
            finally:
                self._ops_lock.release()
        else:
            log.warning("broker %d: registry busy at stop; not unregistering", self._broker_id)
        if sync_wait and unregistered:
            pause = max(0.0, min(self._sync_time_s, unregister_deadline - time.monotonic()))
            if pause > 0:
                log.info("broker %d left ZooKeeper; still serving for %.1f s (zk.zkSyncTimeMs) so "
                         "that clients move to other brokers first", self._broker_id, pause)
            time.sleep(pause)
        self._close_client(client, deadline)
        with self._cond:
            self._state = STATE_STOPPED
            self._session_id = None
            self._cond.notify_all()
        log.info("broker %d unregistered from ZooKeeper and disconnected", self._broker_id)

    # ---- kazoo state listener (kazoo's connection thread: never block here) ------------------

    def _on_state(self, kstate: KazooState) -> bool:
        with self._cond:
            if self._stopping:
                return False
            state = _KAZOO_STATES.get(kstate)
            if state is None:
                return False
            client = self._client
            if state == STATE_CONNECTED:
                client_id = client.client_id if client is not None else None
                self._session_id = client_id[0] if client_id else None
                self._retry_at = None
                self._retry.reset()
            else:
                self._registered.clear()
            self._state = state
            self._desired.need_pass = True
            self._notes.append(state)
            self._cond.notify_all()
        return False

    # ---- maintainer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    notes, self._notes = self._notes, []
                    ready = self._work_ready_locked()
                    if notes or ready or self._stopping:
                        break
                    self._cond.wait(self._work_wait_s_locked())
                stopping = self._stopping
                work = self._desired.take_work(self._session_id) if ready and not stopping else None
            for note in notes:
                self._report(note)
            if stopping:
                return
            if work is not None:
                self._do_work(work)

    def _work_ready_locked(self) -> bool:
        return (
            self._state == STATE_CONNECTED
            and self._start_error is None
            and self._desired.pending()
            and (self._retry_at is None or time.monotonic() >= self._retry_at)
        )

    def _work_wait_s_locked(self) -> float | None:
        if (
            self._retry_at is None
            or self._state != STATE_CONNECTED
            or self._start_error is not None
            or not self._desired.pending()
        ):
            return None
        return max(0.0, self._retry_at - time.monotonic())

    def _report(self, state: str) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(state)
        except Exception:  # noqa: BLE001 - a logging callback must not stop the maintainer
            log.exception("on_change(%r) of broker %d's registry failed", state, self._broker_id)

    def _do_work(self, work: Work) -> None:
        client = self.client
        assert client is not None
        try:
            with self._ops_lock:
                if work.full:
                    self._nodes.reconcile_all(client, work, self._started, self._check_not_stopping)
                else:
                    self._nodes.apply_topics(client, work, self._check_not_stopping)
        except _Stopping:
            return
        except Exception as e:  # noqa: BLE001 - maintainer loop: log, retry with backoff
            with self._cond:
                self._desired.work_failed(work, self._session_id)
                self._last_error = e
                if isinstance(e, DuplicateBrokerError) and not self._started:
                    self._start_error = e
                    self._cond.notify_all()
                    return
                delay = self._retry.next_delay()
                self._retry_at = time.monotonic() + delay
                self._update_registered_locked()
            if isinstance(e, DuplicateBrokerError):
                log.error("%s; retrying in %g s", e, delay)
            elif isinstance(e, (ZooKeeperError, KazooException)):
                log.warning(
                    "ZooKeeper registration of broker %d failed: %s; retrying in %g s",
                    self._broker_id, e, delay,
                )
            else:
                log.error(
                    "ZooKeeper registration of broker %d failed; retrying in %g s",
                    self._broker_id, delay, exc_info=True,
                )
            return
        with self._cond:
            self._retry_at = None
            self._retry.reset()
            self._last_error = None
            previous = self._desired.work_done(work, self._session_id)
            self._update_registered_locked()
            self._cond.notify_all()
            started = self._started
        if work.full and started:
            log.info(
                "broker %d %s in ZooKeeper (session 0x%x, %d topics)",
                self._broker_id,
                "verified" if previous == work.session_id else "registered again",
                work.session_id or 0,
                len(work.topics),
            )

    def _update_registered_locked(self) -> None:
        if not self._stopping and self._desired.complete(self._connected_session_locked()):
            self._registered.set()
        else:
            self._registered.clear()

    def _connected_session_locked(self) -> int | None:
        return self._session_id if self._state == STATE_CONNECTED else None

    def _check_not_stopping(self) -> None:
        if self._stopping:
            raise _Stopping()

    # ---- waiting for the maintainer -------------------------------------------------------------

    def _wait_topic_locked(
        self, topic: str, spec: TopicRegistration | None, timeout_s: float | None
    ) -> bool:
        def done() -> bool:
            return self._desired.topic_settled(topic, spec, self._connected_session_locked())

        if self._client is None:
            return False
        if threading.current_thread() is self._worker:
            return done()  # called from on_change: the maintainer cannot wait for itself
        return self._cond.wait_for(
            lambda: self._stopping or done(), self._wait_timeout(timeout_s)
        ) and not self._stopping and done()

    def _wait_timeout(self, timeout_s: float | None) -> float:
        return self._op_timeout_s if timeout_s is None else max(0.0, timeout_s)

    # ---- shutdown ------------------------------------------------------------------------------

    def _join_worker(self, deadline: float) -> None:
        worker = self._worker
        if worker is None or worker is threading.current_thread():
            return
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            log.warning(
                "broker %d: registry thread still busy with ZooKeeper at stop", self._broker_id
            )

    def _fail_start(self, client: KazooClient, deadline: float) -> None:
        with self._cond:
            self._stopping = True
            self._registered.clear()
            self._cond.notify_all()
        self._join_worker(deadline)
        self._close_client(client, max(deadline, time.monotonic() + CLOSE_RESERVE_S_MAX))
        with self._cond:
            self._state = STATE_STOPPED
            self._session_id = None

    def _close_client(self, client: KazooClient, deadline: float) -> None:
        """Stop and close ``client`` in a helper thread, waiting at most until ``deadline``."""
        client.remove_listener(self._on_state)

        def close() -> None:
            try:
                client.stop()
            except Exception:  # noqa: BLE001 - best effort: the session ends on the server anyway
                log.warning("stopping the kazoo client of broker %d failed", self._broker_id,
                            exc_info=True)
            try:
                client.close()
            except Exception:  # noqa: BLE001
                log.warning("closing the kazoo client of broker %d failed", self._broker_id,
                            exc_info=True)

        closer = threading.Thread(
            target=close, name=f"metaq-zk-close-{self._broker_id}", daemon=True
        )
        closer.start()
        closer.join(max(0.0, deadline - time.monotonic()))
        if closer.is_alive():
            log.warning(
                "the kazoo client of broker %d (ZooKeeper %s) did not close in time; it finishes "
                "in the background", self._broker_id, self._connect,
            )

    def __repr__(self) -> str:
        return (
            f"BrokerRegistry(broker {self._broker_id}, {self._url}, zk {self._connect!r}, "
            f"{self.state})"
        )
