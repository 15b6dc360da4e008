"""The supervisor's part of replication: which role this broker plays for its broker id (master
or follower), claimed and fenced in ZooKeeper, kept in sync set, and told to every worker.

Imports: the standard library, kazoo's watch recipe, metaq_fast.errors / protocol / zk and the
broker's replica_control. Runs in the supervisor, the only process that talks to ZooKeeper.

Roles (docs/architecture.md, "Replication"): every replica of a broker id is named ``m`` (started
without slave settings) or ``s<slaveId>``. ``/meta/replication/<id>`` (zk/replica_state.py)
names the master, its epoch and the in-sync replicas (ISR). At the start of every registration
pass (the registry's ``role_hook``: start, each new session, and whenever asked) ``decide``
reads it with ``ids/<id>/master``:

* the master node is ours and we lead: stay master;
* no live master and we may claim it (we lead, we are in sync, or ``uncleanTakeover``): claim
  in one transaction (epoch + 1, the master node in our session); the first claim of a broker id
  is its ``m``'s, and creates the state;
* otherwise follow whoever holds the master node, registered as MetaQ's ``slave<n>``: a slave
  as its own slaveId, ``m`` in the slot its new master left (the leader's number), so a broker
  id's nodes stay MetaQ's. A master node held by another session while the state names us is a
  duplicate broker (or our own old session not yet expired): refused as before.

Watches on the master node and the state node update the role (the leader's URL, the epoch) and
ask the registry for a pass when the master node goes, so an in-sync slave takes over within the
old master's session timeout. The master's own thread keeps the ISR every ``TICK_S``: a follower
whose fetches have not caught up for ``replicaLagMaxMs`` leaves it, one caught up joins it, each
change a write conditional on the state's version (a master that was replaced meanwhile learns
it there, and follows). While the ZooKeeper connection is suspended, or while stopping, a master
that has followers takes no puts (``hold``): another replica may be taking over.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace

from kazoo.recipe.watchers import DataWatch

from ..errors import DuplicateBrokerError, ZooKeeperError
from ..protocol import replica_name
from ..zk import paths
from ..zk.ops import DeadlineOps
from ..zk.replica_state import (FencedError, ReplicaState, ReplicaStateStore, claimed_state,
                                may_claim)
from .replica_control import ReplicaProgress, ReplicaRole, now_ms

log = logging.getLogger(__name__)

TICK_S = 0.2
APPLY_WAIT_S = 2.0  # how long a step waits for every worker to apply the role before it
JOIN_LAG_MS_MAX = 1000  # a follower joins the ISR when caught up within this (and the bound)


class ReplicationCoordinator:
    def __init__(self, config, workers: int, wake, url: str = ""):
        self.config = config
        self.progress = ReplicaProgress(workers)
        slave = config.slave
        self.slave_id = slave.slave_id if slave is not None else None
        self.me = replica_name(self.slave_id)
        self.url = url
        self.root = paths.normalize_root(config.zk.root)
        self.store = ReplicaStateStore(self.root, config.broker_id,
                                       DeadlineOps(config.zk.session_timeout_ms / 1000))
        self._ops = DeadlineOps(config.zk.session_timeout_ms / 1000)
        self._lock = threading.Lock()
        self._version = 0  # of the roles set (workers report the one they applied)
        self._role = (ReplicaRole("master", 0, self.me, None, (self.me,),
                                  config.min_in_sync_replicas) if slave is None else
                      ReplicaRole("follower", 0, self.me, None, (), config.min_in_sync_replicas))
        self._state: ReplicaState | None = None
        self._state_version = -1  # of the state node as last read or written
        self._master_since_ms = 0
        self._suspended = False
        self._session_lost = False  # since a session loss, until decide has run again
        self._stopping = False
        self._wake = wake
        self._registry = None
        self._watches: list[DataWatch] = []
        self._thread: threading.Thread | None = None
        self._pipes: dict[int, int] = {}  # slot -> write end of its control pipe
        self._sent: dict[int, ReplicaRole] = {}

    @property
    def role(self) -> ReplicaRole:
        with self._lock:
            return self._role

    def status(self) -> dict:
        """For stats and the dashboard."""
        with self._lock:
            role, state = self._role, self._state
        out = {"role": role.role, "replica": self.me, "epoch": role.epoch, "leader": role.leader,
               "isr": list(state.isr) if state else [], "min_isr": role.min_isr}
        if role.is_master:
            out["followers"] = {r: dict(zip(("caught_up_ms_ago", "lag_bytes", "fetch_ms_ago"),
                                            self.progress.follower_lag(r)))
                                for r in self.progress.followers_seen()}
        else:
            lag, fetched = self.progress.own_lag()
            out["lag_bytes"], out["fetch_ms_ago"] = lag, fetched
        return out

    # ---- workers (the supervisor's thread) ----------------------------------------------------

    def control_pipe(self, slot: int) -> tuple[int, ReplicaRole]:
        """A new control pipe for the worker about to be forked in ``slot``: (its read end for
        the child, the role it starts in)."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        old = self._pipes.pop(slot, None)
        if old is not None:
            os.close(old)
        self._pipes[slot] = write_fd
        role = self.role
        self._sent[slot] = role
        return read_fd, role

    def write_fds(self) -> list[int]:
        return list(self._pipes.values())

    def tick(self) -> None:
        """Send the role to every worker that has not got it yet."""
        role = self.role
        for slot, fd in list(self._pipes.items()):
            if self._sent.get(slot) == role:
                continue
            try:
                os.write(fd, role.to_line())
                self._sent[slot] = role
            except BlockingIOError:
                pass  # a worker not reading (stuck or stopping): next tick
            except OSError as exc:
                log.debug("control pipe of worker %d: %s", slot, exc)

    # ---- life cycle ---------------------------------------------------------------------------

    def attach(self, registry) -> None:
        """Before the registry starts: it asks ``decide`` for the role at every pass."""
        self._registry = registry
        registry.set_role_hook(self.decide)

    def start(self) -> None:
        """After the registry started: watch the broker id, keep the ISR."""
        registry = self._registry
        if registry is None:
            return
        client = registry.client
        self._watches = [DataWatch(client, self.store.master_path, self._on_master),
                         DataWatch(client, self.store.path, self._on_state)]
        self._thread = threading.Thread(target=self._run, name="metaq-replication", daemon=True)
        self._thread.start()

    def on_session(self, state: str) -> None:
        """The registry's connection state: a master with followers holds puts while it
        cannot know whether it is still the master; after a session loss, until ``decide``
        has looked again (another replica may have claimed the role meanwhile)."""
        with self._lock:
            self._suspended = state != "connected"
            if state == "lost":
                self._session_lost = True
        self._update_hold()

    def before_unregister(self) -> None:
        """At stop, before the master node goes (a slave may claim it at once): no more puts
        here, so that two masters never take puts together; waits (bounded) until every
        worker applied it."""
        with self._lock:
            self._stopping = True
        self._update_hold()
        self.tick()
        self.wait_applied(self.role.version, APPLY_WAIT_S, tick=True)

    def wait_applied(self, version: int, timeout_s: float, tick: bool = False) -> bool:
        """Until every worker applied role ``version`` (False after ``timeout_s``). ``tick``:
        send the role ourselves (the caller is the supervisor's own thread)."""
        deadline = time.monotonic() + timeout_s
        while not self.progress.all_applied(version):
            if time.monotonic() >= deadline:
                log.warning("workers did not apply replication role %d within %g s",
                            version, timeout_s)
                return False
            if tick:
                self.tick()
            time.sleep(0.01)
        return True

    def close(self) -> None:
        with self._lock:
            self._stopping = True
        for fd in self._pipes.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._pipes.clear()

    # ---- the role (the registry's maintainer thread) ------------------------------------------

    def decide(self, client) -> int | None:
        """The registry's role hook (module docstring): claim if we may; the slave id to
        register as, None for master."""
        state, version = self.store.read(client)
        got = self._ops.get(client, self.store.master_path)
        ours = got is not None and self._ops.is_ours(client, got[1])
        held = got is not None and not ours
        if ours and state is not None and state.leader == self.me:
            self._lead(state, version, keep_since=True)
            return None
        if held and (state is None or state.leader == self.me) and self.me == "m":
            owner = f"session 0x{got[1].ephemeralOwner:x}"
            raise DuplicateBrokerError(
                f"broker id {self.config.broker_id} is already registered by "
                f"{paths.decode_text(got[0])} (another live broker); refusing to start "
                f"({self.store.master_path} is held by {owner}, which may be this broker's "
                f"own previous session, not yet expired)")
        if may_claim(state, self.me, got is not None, self.config.unclean_takeover):
            new = claimed_state(state, self.me)
            try:
                self.store.claim(client, new, version, self.url)
            except FencedError as exc:
                log.info("%s; following", exc)
                state, version = self.store.read(client)
            else:
                log.warning("broker %d: %s is master now (epoch %d, in sync: %s)%s",
                            self.config.broker_id, self.me, new.epoch, ", ".join(new.isr),
                            "" if state is None or state.leader == self.me or self.me in
                            state.isr else " - an unclean takeover: what the old master "
                            "acknowledged after this replica's last copy is lost")
                self._lead(new, 0 if version < 0 else version + 1, keep_since=False)
                return None
        leader_url = paths.decode_text(got[0]) if got is not None else None
        self._follow(state, version, leader_url)
        return self._slot(state)

    def _slot(self, state: ReplicaState | None) -> int:
        """The slave node this replica registers as while it follows (module docstring)."""
        if self.slave_id is not None:
            return self.slave_id
        if state is not None and state.leader.startswith("s"):
            return int(state.leader[1:])
        raise ZooKeeperError(f"broker id {self.config.broker_id}: its master is not known yet")

    def _lead(self, state: ReplicaState, version: int, keep_since: bool,
              isr: tuple[str, ...] | None = None) -> int:
        """Master in ``state``; ``isr``: the set the workers count for acknowledgements, when
        it differs from the state's (a larger one, before it is written). The role version."""
        with self._lock:
            if not (keep_since and self._role.is_master and self._role.epoch == state.epoch):
                self._master_since_ms = now_ms()
                self.progress.master[:] = 0  # figures of an earlier term are stale
            self._state, self._state_version = state, version
            self._session_lost = False
            role = self._set_role_locked(ReplicaRole(
                "master", state.epoch, self.me, None, isr or state.isr,
                self.config.min_in_sync_replicas))
        self._wake()
        return role.version

    def _follow(self, state: ReplicaState | None, version: int, leader_url: str | None) -> None:
        with self._lock:
            self._state, self._state_version = state, version
            self._session_lost = False
            self._set_role_locked(ReplicaRole("follower", state.epoch if state else 0, self.me,
                                              leader_url, (), self.config.min_in_sync_replicas))
        self._wake()

    def _set_role_locked(self, role: ReplicaRole) -> ReplicaRole:
        """Set ``role`` (with the hold it needs now) under a new version, if it changed."""
        hold = role.is_master and (self._stopping or self._suspended or self._session_lost) \
            and (len(role.isr) > 1 or bool(self.progress.followers_seen()))
        role = replace(role, hold=hold, version=self._role.version)
        if role != self._role:
            self._version += 1
            role = replace(role, version=self._version)
            self._role = role
        return self._role

    def _update_hold(self) -> None:
        with self._lock:
            before = self._role
            role = self._set_role_locked(before)
        if role.hold != before.hold:
            log.info("puts %s", "held: another replica may be taking over" if role.hold
                     else "taken again")
            self._wake()

    # ---- watches (kazoo's threads: record, wake, never block) ---------------------------------

    def _on_master(self, data, stat, event=None) -> None:
        url = None
        if data:
            try:
                url = paths.decode_text(data)
                paths.parse_broker_url(url)
            except ValueError:
                url = None
        with self._lock:
            role = self._role
            if not role.is_master and role.leader != url:
                self._set_role_locked(replace(role, leader=url))
                log.info("master of broker %d: %s", self.config.broker_id, url or "none")
        if url is None or not self.role.is_master:
            self._ask_pass()  # gone: we may claim it; or someone else's: we may have to follow
        self._wake()

    def _on_state(self, data, stat, event=None) -> None:
        try:
            state = ReplicaState.parse(data) if data else None
        except ValueError as exc:
            log.warning("%s", exc)
            return
        with self._lock:
            known = self._state
            if state is None or (known is not None and (state.epoch, stat.version) <=
                                 (known.epoch, self._state_version)):
                return
            mine = self._role.is_master and state.leader == self.me
            if not self._role.is_master:
                self._state, self._state_version = state, stat.version
                self._set_role_locked(replace(self._role, epoch=state.epoch))
        if self.role.is_master and not mine:
            log.warning("broker %d: %s took over as master (epoch %d); following it",
                        self.config.broker_id, state.leader, state.epoch)
            self._ask_pass()
        elif not self.role.is_master:
            self._ask_pass()  # a new leader may mean a new slot for ``m``
        self._wake()

    def _ask_pass(self) -> None:
        if self._registry is not None and not self._stopping:
            self._registry.request_pass()

    # ---- the in-sync set (its own thread) -----------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            time.sleep(TICK_S)
            try:
                self._keep_isr()
            except FencedError as exc:
                log.warning("broker %d: the replication state changed under us (%s)",
                            self.config.broker_id, exc)
                self._ask_pass()
            except ZooKeeperError as exc:
                log.debug("keeping the ISR: %s", exc)
            except Exception:  # noqa: BLE001 - the thread must go on
                log.exception("keeping the ISR failed")

    def _keep_isr(self) -> None:
        with self._lock:
            role, state, version = self._role, self._state, self._state_version
            since = self._master_since_ms
        if not role.is_master or state is None or self._suspended:
            return
        lag_max = self.config.replica_lag_max_ms
        never = now_ms() - since
        isr = [self.me]
        for replica in state.isr:
            if replica == self.me:
                continue
            lag_ms, _, _ = self.progress.follower_lag(replica)
            if (lag_ms if lag_ms >= 0 else never) <= lag_max:
                isr.append(replica)
            else:
                log.warning("broker %d: %s leaves the in-sync replicas (not caught up for %s)",
                            self.config.broker_id, replica,
                            f"{lag_ms} ms" if lag_ms >= 0 else "ever")
        for replica in self.progress.followers_seen():
            if replica not in state.isr and replica != self.me:
                lag_ms, lag_bytes, _ = self.progress.follower_lag(replica)
                if 0 <= lag_ms <= min(JOIN_LAG_MS_MAX, lag_max) and lag_bytes == 0:
                    isr.append(replica)
                    log.info("broker %d: %s joins the in-sync replicas", self.config.broker_id,
                             replica)
        removed = set(state.isr) - set(isr)
        if removed:  # shrink first, on its own: ZooKeeper before the workers stop counting
            isr = [r for r in isr if r in state.isr]
        new = ReplicaState(state.epoch, self.me, (self.me, *sorted(isr[1:])))
        if set(new.isr) == set(state.isr):
            return
        client = self._registry.client
        if not removed:
            # Grow: the workers count the new member for acknowledgements before ZooKeeper
            # lets it take over (Kafka's maximal ISR), else it could be chosen lacking puts
            # acknowledged in between.
            applied = self._lead(state, version, keep_since=True, isr=new.isr)
            if not self.wait_applied(applied, APPLY_WAIT_S):
                self._lead(state, version, keep_since=True)  # not joined: count without it
                return
        new_version = self.store.write(client, new, version)
        self._lead(new, new_version, keep_since=True)
