"""The supervisor: the ``metaq-server`` process. Forks the workers, restarts them, stops them.

Imports: stdlib, metaq_fast.config / zk and the broker modules.

States and transitions (a small signal-driven loop, as gunicorn's arbiter):

    STARTING --every slot has a ready worker--> RUNNING --SIGTERM/SIGINT--> STOPPING --> exit 0
    STARTING --a slot's first worker cannot start, or is not ready in time--> STOPPING --> exit 1
    STARTING or RUNNING --a worker died--> (log, fork it again after a back-off) --> same state
    STARTING or RUNNING --a worker stopped beating, or a restarted one is not ready in time-->
             (SIGKILL it; it is reaped and forked again) --> same state
    STARTING or RUNNING --a slot died young 5 times in a row--> STOPPING --> exit 1

The same rounds (``_tend``) run while the broker starts and while it runs, so a worker that
dies during the start (before or after it reported ready) is restarted, and the start waits
for the restarted worker too. Only a slot's first worker reporting that it cannot start
(``EXIT_BOOT_ERROR``: bad data on disk, a limit) or not ready within ``workerStartTimeoutMs``
stops a starting broker at once: that is a broker that cannot start, and it does not run
half-way. A clean stop exits 0 whatever happened to workers before it.

A worker "dies young" when it dies before it reported ready (a boot error, a crash in recovery,
killed for missing its boot deadline) or within ``QUICK_DEATH_S`` of reporting ready; lifetime
counts from readiness, so a long recovery followed by a crash is still young. Each such death
doubles the back-off before the next fork; a worker that lives longer resets the count. One
boot error after a restart (a file descriptor limit, a socket name still held) is retried like
any other death: only a slot that never comes up stops the broker.

Deadlines: a worker not ready ``workerStartTimeoutMs`` after its fork (recovery of a large data
directory may take minutes: the default is 600 s) is killed if it is a restart, and counts as a
young death. Heartbeat (gunicorn's ``murder_workers``): each worker's event loop writes the
monotonic clock into its slot of a shared block every ``min(1 s, workerTimeoutMs / 4)``
(``heartbeat.beat_interval_s``); a ready worker whose slot is older than ``workerTimeoutMs`` (a
loop stuck in a call that never returns, a stopped process) is killed with SIGKILL and
restarted, in the start as later. What it had acknowledged is in the shared mappings.

Signal handlers only write to a wakeup pipe; the loop reads it and acts. The supervisor creates,
before the first fork, everything workers share: one listening socket per worker (an
SO_REUSEPORT group on the broker's port, kept by the supervisor so a restarted worker gets its
socket back and connections wait in its backlog meanwhile), the shared counter block, and the
pipes workers report on. It alone talks to ZooKeeper (``zk/registry.py``).
"""

from __future__ import annotations

import errno
import json
import logging
import mmap
import os
import selectors
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backoff import Backoff
from ..config import Config
from .closed import ClosedPartitions
from .counters import NAMES, Counters
from .http import start_dashboard
from .heartbeat import Heartbeats, beat_interval_s
from .replication import ReplicationCoordinator
from .worker import EXIT_BOOT_ERROR, WorkerSpec, run_worker

log = logging.getLogger(__name__)

BOOT_TIMEOUT_S_DEFAULT = 600.0  # recovery of a large data directory may take a while
STOP_TIMEOUT_S = 30.0
BOOT_FAILURES_MAX = 5
QUICK_DEATH_S = 5.0
# a slot that keeps dying young waits 0.5, 1, 2, 4, 8, then 10 s (+-10%) before each fork
RESTART_BACKOFF = Backoff(0.5, 10.0, jitter=0.1)
HEARTBEAT_TIMEOUT_S_DEFAULT = 30.0  # gunicorn's default worker timeout


@dataclass
class WorkerProcess:
    slot: int
    pid: int
    started_s: float  # monotonic, at fork: the boot deadline counts from here
    ready_r: int
    first: bool = True  # the slot's first worker: if it cannot start, the broker cannot
    ready: bool = False
    ready_s: float = 0.0  # monotonic, when its "ready" was read: its lifetime counts from here
    quick_failures: int = 0
    boot_killed: bool = False  # killed for missing its boot deadline (once)


@dataclass
class Supervisor:
    config: Config
    ready_file: Path | None = None
    registry_factory: object = None  # callable(config, url) -> registry, or None (no ZooKeeper)
    workers: dict[int, WorkerProcess] = field(default_factory=dict)

    def run(self) -> int:
        self.started_s = time.time()
        self.dashboard = None
        self._lock_data_paths()
        self.count = self.config.worker_count or os.cpu_count() or 1
        self.sockets, self.port = bind_listeners(self.config.listen_host, self.config.server_port,
                                                  self.count)
        # Each worker's own port, for clients that connect to the owner of a partition directly
        # (``admin layout``); bound once here so it survives a worker restart.
        self.direct_sockets = [bind_listeners(self.config.listen_host, 0, 1)[0][0]
                               for _ in range(self.count)]
        self.direct_ports = [sock.getsockname()[1] for sock in self.direct_sockets]
        self.broker_url = broker_url(self.config, self.port)
        self.instance = f"{os.getpid()}-{self.port}"
        self.counters = Counters(self.count)
        self._reset_map = mmap.mmap(-1, (len(NAMES) + 1) * 8)
        self.reset_block = np.frombuffer(self._reset_map, dtype=np.int64)
        self.closed = ClosedPartitions()
        timeout_ms = getattr(self.config, "worker_timeout_ms", 0)
        self.heartbeat_timeout_s = timeout_ms / 1000 if timeout_ms else HEARTBEAT_TIMEOUT_S_DEFAULT
        self.heartbeats = Heartbeats(self.count, beat_interval_s(self.heartbeat_timeout_s))
        boot_ms = getattr(self.config, "worker_start_timeout_ms", 0)
        self.boot_timeout_s = boot_ms / 1000 if boot_ms else BOOT_TIMEOUT_S_DEFAULT
        self.events_r, self.events_w = os.pipe()
        os.set_blocking(self.events_r, False)
        self.wakeup_r, self.wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(self.wakeup_w, False)
        self.replication = ReplicationCoordinator(self.config, self.count, self._wake,
                                                  url=self.broker_url)
        self.signals: list[int] = []
        self.stopping = False
        self.exit_code = 0
        self.registry = None
        self._pending_restarts: dict[int, float] = {}
        # Every topic this broker publishes (configured, or with a store here): name ->
        # (numPartitions, acceptPublish, acceptSubscribe). Kept before the registry exists.
        self._topics: dict[str, tuple[int, bool, bool]] = {}
        self._install_signals()
        log.info("starting %d worker(s) for broker %d on %s", self.count, self.config.broker_id,
                 self.broker_url)
        for slot in range(self.count):
            self._spawn(slot)
        self.dashboard = start_dashboard(self)  # /health answers 503 until the workers are ready
        if not self._wait_ready():
            self._stop_dashboard()
            self._stop_workers()
            return self.exit_code  # 1 when a worker could not start; 0 when stopped meanwhile
        if self.registry_factory is not None and not self.stopping:
            try:
                self.registry = self.registry_factory(self.config, self.broker_url,
                                                      self.replication)
            except Exception as exc:
                log.error("cannot register in ZooKeeper: %s", exc)
                self._stop_dashboard()
                self._stop_workers()
                return 1
            self._drain_events()
            self.replication.start()
        for topic in self.config.topics:
            self._register_topic(topic)
        if self.registry is not None:
            # Topics the workers reported while they recovered (every topic with data here) were
            # only remembered, the registry did not exist yet: publish all of them now.
            for topic, (num, pub, sub) in sorted(self._topics.items()):
                self.registry.register_topic(topic, num, pub, sub, timeout_s=0)
            # MetaQ publishes the configured topics before the broker counts as started: wait
            # (bounded) so the ready file never precedes them.
            if not self.registry.wait_registered(
                    max(10.0, self.config.zk.connection_timeout_ms / 1000)):
                log.warning("topics not yet registered in ZooKeeper; the registry keeps trying")
        log.info("metaq-server listening on %s:%d (broker %d, %d workers, data in %s)",
                 self.config.listen_host, self.port, self.config.broker_id, self.count,
                 self.config.data_path)
        self._write_ready_file()
        try:
            self._loop()
        finally:
            if self.registry is not None:
                # MetaQ's order: leave ZooKeeper first and give clients zkSyncTimeMs to notice,
                # so producers move to other brokers while this one still answers. A master
                # with slaves stops taking puts first: one of them may take over at once.
                self.replication.before_unregister()
                try:
                    self.registry.stop(timeout_s=10 + self.config.zk.sync_time_ms / 1000,
                                       sync_wait=True)
                except Exception as exc:
                    log.warning("unregistering from ZooKeeper failed: %s", exc)
            self._stop_dashboard()
            self._stop_workers()
            if self.ready_file is not None:
                try:
                    self.ready_file.unlink()
                except FileNotFoundError:
                    pass
            for sock in self.sockets + self.direct_sockets:
                sock.close()
            self.replication.close()
        log.info("metaq-server stopped (exit %d)", self.exit_code)
        return self.exit_code

    # ---- workers -------------------------------------------------------------------------

    def _spawn(self, slot: int) -> None:
        ready_r, ready_w = os.pipe()
        try:
            pid = self._fork(slot, ready_r, ready_w)
        except BaseException:  # EAGAIN/ENOMEM from fork: the caller decides; no fd is left
            os.close(ready_r)
            os.close(ready_w)
            raise
        os.close(ready_w)
        os.set_blocking(ready_r, False)
        previous = self.workers.get(slot)
        self.workers[slot] = WorkerProcess(slot, pid, time.monotonic(), ready_r,
                                           first=previous is None,
                                           quick_failures=previous.quick_failures if previous else 0)
        log.info("worker %d started (pid %d)", slot, pid)

    def _fork(self, slot: int, ready_r: int, ready_w: int) -> int:
        """Fork the worker of ``slot`` (the child never returns from here); its pid."""
        control_fd, role = self.replication.control_pipe(slot)
        spec = WorkerSpec(slot=slot, workers=self.count, config=self.config,
                          listen_socket=self.sockets[slot], instance=self.instance,
                          direct_socket=self.direct_sockets[slot], direct_ports=self.direct_ports,
                          counters=self.counters, reset_block=self.reset_block,
                          closed=self.closed, port=self.port,
                          broker_url=self.broker_url, started_s=self.started_s,
                          ready_fd=ready_w, events_fd=self.events_w, supervisor_pid=os.getpid(),
                          heartbeats=self.heartbeats, progress=self.replication.progress,
                          control_fd=control_fd, role=role)
        self.heartbeats.beat(slot)  # a fresh slot: the new worker's clock starts now
        try:
            pid = os.fork()
        except BaseException:
            os.close(control_fd)
            raise
        if pid != 0:
            os.close(control_fd)  # the child's end
        if pid == 0:
            try:
                os.close(ready_r)
                for fd in self.replication.write_fds():
                    os.close(fd)
                for fd in (self.events_r, self.wakeup_r, self.wakeup_w):
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                for other in self.workers.values():
                    try:
                        os.close(other.ready_r)
                    except OSError:
                        pass
                for i, (sock, direct) in enumerate(zip(self.sockets, self.direct_sockets)):
                    if i != slot:
                        sock.close()
                        direct.close()
                run_worker(spec)  # never returns
            finally:  # never back into the supervisor's code, whatever happened
                os._exit(EXIT_BOOT_ERROR)
        return pid

    def _wait_ready(self) -> bool:
        """Tend the workers until every slot has a ready one (a worker that died meanwhile has
        been forked again and is waited for). False when the start failed or was stopped."""
        while not all(w.pid > 0 and w.ready for w in self.workers.values()):
            self._poll(0.05)
            if not self.stopping:
                self._tend()
            if self.stopping:
                return False  # exit_code is 1 when a slot could not start, 0 when stopped
        return True

    def _tend(self) -> None:
        """One round over the workers: restarts that are due, start reports, boot deadlines and
        heartbeats. Deaths are handled as they are reaped (``_reap``)."""
        self._restart_due()
        for worker in list(self.workers.values()):
            if worker.pid <= 0:
                continue
            if worker.ready:
                self._check_heartbeat(worker)
            elif self._check_ready(worker) is None:
                # A failed start is logged by _check_ready; the death that follows is reaped.
                self._check_boot_deadline(worker)

    def _check_boot_deadline(self, worker: WorkerProcess) -> None:
        booting_s = time.monotonic() - worker.started_s
        if worker.boot_killed or booting_s <= self.boot_timeout_s:
            return
        limit_ms = int(self.boot_timeout_s * 1000)
        if worker.first:
            log.error("worker %d (pid %d) not ready %.0f s after its start "
                      "(workerStartTimeoutMs=%d); stopping the broker", worker.slot, worker.pid,
                      booting_s, limit_ms)
            self.exit_code = 1
            self.stopping = True
            return
        log.error("worker %d (pid %d) not ready %.1f s after its restart "
                  "(workerStartTimeoutMs=%d): killing it", worker.slot, worker.pid, booting_s,
                  limit_ms)
        worker.boot_killed = True  # reaped as a death before ready: a young one
        try:
            os.kill(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _check_ready(self, worker: WorkerProcess) -> bool | None:
        """Read the worker's start report: True when ready, False when it failed to start
        (its report pipe is closed then), None while it has not said yet."""
        if worker.ready_r < 0:
            return worker.ready  # closed: ready, or gone without a word
        try:
            data = os.read(worker.ready_r, 4096)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        text = data.decode("utf-8", "replace").strip()
        self._close_ready_pipe(worker)
        if text == "ready":
            worker.ready = True
            worker.ready_s = time.monotonic()
            log.info("worker %d (pid %d) ready in %.2f s", worker.slot, worker.pid,
                     worker.ready_s - worker.started_s)
            return True
        if text:
            log.error("worker %d failed to start: %s", worker.slot, text.removeprefix("failed "))
        return False

    @staticmethod
    def _close_ready_pipe(worker: WorkerProcess) -> None:
        if worker.ready_r >= 0:
            try:
                os.close(worker.ready_r)
            except OSError:
                pass
            worker.ready_r = -1

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self.workers.values() if w.pid == pid), None)
            if worker is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if not worker.ready:
                self._check_ready(worker)  # log why it failed to start, if it said
            self._close_ready_pipe(worker)
            if self.stopping:
                del self.workers[worker.slot]
                log.info("worker %d (pid %d) exited with %s", worker.slot, pid, _describe(code))
                continue
            if worker.first and code == EXIT_BOOT_ERROR:
                # Only a starting broker has first workers that are not ready: it cannot start.
                log.error("worker %d (pid %d) could not start (%s); stopping the broker",
                          worker.slot, pid, _describe(code))
                worker.pid = -1
                self.exit_code = 1
                self.stopping = True
                continue
            self._worker_died(worker, code)

    def _worker_died(self, worker: WorkerProcess, code: int) -> None:
        # Lifetime counts from readiness, not from the fork: a recovery longer than
        # QUICK_DEATH_S followed by a crash must not restart without a back-off, forever.
        lived = time.monotonic() - worker.ready_s if worker.ready else None
        if code == EXIT_BOOT_ERROR or lived is None or lived < QUICK_DEATH_S:
            worker.quick_failures += 1
        else:
            worker.quick_failures = 0
        how = "before it was ready" if lived is None else f"{lived:.1f} s after it was ready"
        if worker.quick_failures >= BOOT_FAILURES_MAX:
            log.error("worker %d (pid %d) died (%s) %s", worker.slot, worker.pid,
                      _describe(code), how)
            log.error("worker %d died young %d times in a row; stopping the broker", worker.slot,
                      worker.quick_failures)
            del self.workers[worker.slot]
            self.exit_code = 1
            self.stopping = True
            return
        delay = 0.0 if worker.quick_failures == 0 else RESTART_BACKOFF.delay(worker.quick_failures)
        log.error("worker %d (pid %d) died (%s) %s; restarting it%s", worker.slot, worker.pid,
                  _describe(code), how,
                  f" in {delay:.1f} s (died young {worker.quick_failures} time(s) in a row)"
                  if delay else "")
        worker.pid = -1
        worker.ready = False
        self._pending_restarts[worker.slot] = time.monotonic() + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot, due in list(self._pending_restarts.items()):
            if now >= due and not self.stopping:
                del self._pending_restarts[slot]
                try:
                    self._spawn(slot)
                except OSError as exc:  # no process or memory left right now: like a young death
                    self._fork_failed(slot, exc)

    def _fork_failed(self, slot: int, exc: OSError) -> None:
        worker = self.workers[slot]
        worker.quick_failures += 1
        if worker.quick_failures >= BOOT_FAILURES_MAX:
            log.error("cannot fork worker %d: %s; failed %d times in a row; stopping the broker",
                      slot, exc, worker.quick_failures)
            self.exit_code = 1
            self.stopping = True
            return
        delay = RESTART_BACKOFF.delay(worker.quick_failures)
        log.error("cannot fork worker %d: %s; trying again in %.1f s", slot, exc, delay)
        self._pending_restarts[slot] = time.monotonic() + delay

    # ---- the loop ----------------------------------------------------------------------

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self.wakeup_w, warn_on_full_buffer=False)

        def enqueue(signum, _frame):
            self.signals.append(signum)

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(signum, enqueue)

    def _poll(self, timeout_s: float) -> None:
        selector = self._selector()
        for key, _ in selector.select(timeout_s):
            if key.fd == self.wakeup_r:
                try:
                    os.read(self.wakeup_r, 4096)
                except BlockingIOError:
                    pass
            elif key.fd == self.events_r:
                self._drain_events()
        while self.signals:
            signum = self.signals.pop(0)
            if signum in (signal.SIGTERM, signal.SIGINT):
                if not self.stopping:
                    log.info("received %s: stopping", signal.Signals(signum).name)
                self.stopping = True
            elif signum == signal.SIGCHLD:
                self._reap()
            elif signum == signal.SIGHUP:
                log.info("SIGHUP: configuration reload is not supported; restart to apply changes")
        self._reap()

    def _selector(self) -> selectors.BaseSelector:
        if not hasattr(self, "_sel"):
            self._sel = selectors.DefaultSelector()
            self._sel.register(self.wakeup_r, selectors.EVENT_READ)
            self._sel.register(self.events_r, selectors.EVENT_READ)
        return self._sel

    def _loop(self) -> None:
        while not self.stopping:
            self._poll(0.2)
            if not self.stopping:
                self._tend()
                self.replication.tick()

    def _wake(self) -> None:
        """Make the loop go round now (from another thread: a ZooKeeper callback)."""
        try:
            os.write(self.wakeup_w, b"w")
        except OSError:
            pass

    def _check_heartbeat(self, worker: WorkerProcess) -> None:
        silent_s = self.heartbeats.silent_s(worker.slot)
        if silent_s <= self.heartbeat_timeout_s:
            return
        log.error("worker %d (pid %d) has not beaten for %.1f s (workerTimeoutMs=%d): killing it",
                  worker.slot, worker.pid, silent_s, int(self.heartbeat_timeout_s * 1000))
        try:
            os.kill(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.heartbeats.beat(worker.slot)  # killed once; the reaper restarts it

    def _drain_events(self) -> None:
        """Workers report topics that got a store (first put): register them in ZooKeeper."""
        buf = b""
        while True:
            try:
                chunk = os.read(self.events_r, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            buf += chunk
        for line in buf.decode("utf-8", "replace").splitlines():
            kind, _, topic = line.partition(" ")
            if kind == "topic" and topic:
                self._register_topic(topic)

    def _register_topic(self, topic: str) -> None:
        """Publish a topic in ZooKeeper (once): a configured one, or one with a store here."""
        if topic in self._topics or "*" in topic:
            return
        settings = self.config.topic_config(topic)
        if settings is None:  # found on disk, no longer configured: system defaults (MetaQ)
            c = self.config
            num, pub, sub = c.num_partitions, c.accept_publish, c.accept_subscribe
        else:
            num, pub, sub = settings.num_partitions, settings.accept_publish, settings.accept_subscribe
        from ..names import is_valid_name
        if not is_valid_name(topic):
            log.warning("topic %r is configured but not a valid name: not published", topic)
            return
        self._topics[topic] = (num, pub, sub)
        if self.registry is not None:
            self.registry.register_topic(topic, num, pub, sub, timeout_s=0)

    def _stop_workers(self) -> None:
        self.stopping = True
        for worker in self.workers.values():
            if worker.pid > 0:
                try:
                    os.kill(worker.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(w.pid > 0 for w in self.workers.values()) and time.monotonic() < deadline:
            self._poll(0.05)
            for slot, worker in list(self.workers.items()):
                if worker.pid <= 0:
                    del self.workers[slot]
        for worker in list(self.workers.values()):
            if worker.pid > 0:
                log.error("worker %d (pid %d) did not stop in %.0f s: killing it", worker.slot,
                          worker.pid, STOP_TIMEOUT_S)
                try:
                    os.kill(worker.pid, signal.SIGKILL)
                    os.waitpid(worker.pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
        self.workers.clear()

    def _lock_data_paths(self) -> None:
        """One broker per data directory: two writers of one partition would corrupt it."""
        import fcntl

        self._locks = []
        roots = {Path(self.config.data_path)}
        roots.update(Path(t.data_path) for t in self.config.topic_configs.values())
        for root in sorted(roots):
            root.mkdir(parents=True, exist_ok=True)
            fd = os.open(root / ".metaq-broker.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise OSError(f"data directory {root} is in use by another broker (pid {holder})")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._locks.append(fd)

    def _stop_dashboard(self) -> None:
        if self.dashboard is not None:
            self.dashboard.stop()
            self.dashboard = None

    def _write_ready_file(self) -> None:
        if self.ready_file is None:
            return
        info = {"pid": os.getpid(), "host": self.config.listen_host, "port": self.port,
                "url": self.broker_url, "broker_id": self.config.broker_id,
                "workers": {str(w.slot): w.pid for w in self.workers.values()},
                "direct_ports": self.direct_ports,
                "dashboard_port": self.dashboard.port if self.dashboard is not None else None}
        tmp = self.ready_file.with_name(self.ready_file.name + ".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, self.ready_file)


def bind_listeners(host: str, port: int, count: int) -> tuple[list[socket.socket], int]:
    """``count`` listening sockets sharing one port (SO_REUSEPORT); port 0 picks a free one.

    A plain bind probe first makes a port already used by anyone else an error, instead of
    silently sharing it with another process of the same user."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if port:
        probe = socket.socket(family, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
        except OSError as exc:
            probe.close()
            if exc.errno == errno.EADDRINUSE:
                raise OSError(exc.errno, f"port {port} on {host} is already in use") from exc
            raise
        probe.close()
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.listen(1024)
            sock.set_inheritable(True)
            sockets.append(sock)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets, port


def broker_url(config: Config, port: int) -> str:
    """``meta://host:port`` as registered and quoted in error texts (MetaQ's rule: hostName,
    else the address we listen on, else the first non-loopback address)."""
    host = config.host_name
    if not host:
        host = config.listen_host
        if host in ("0.0.0.0", "::", ""):
            host = _first_non_loopback() or "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"meta://{host}:{port}"


def _first_non_loopback() -> str | None:
    """The machine's first non-loopback IPv4 address by its host name (no network traffic)."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return None
    for info in infos:
        address = info[4][0]
        if not address.startswith("127."):
            return address
    return None


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
