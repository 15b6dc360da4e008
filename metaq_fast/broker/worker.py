"""A worker process: owns a partition group, serves connections, appends, flushes.

Imports: stdlib (asyncio, socket), metaq_fast.storage and the broker modules. Never ZooKeeper.

A worker is forked by the supervisor. It recovers the partitions it owns, then accepts
connections on its own listening socket of the port's SO_REUSEPORT group (the kernel spreads
connections over the workers; the sockets belong to the supervisor, so connections wait in the
backlog while a worker restarts), and on an abstract unix socket through which other workers
forward puts for its partitions. SIGTERM: stop accepting, send what is pending (bounded), flush
and seal every partition, exit 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass

from ..config import Config
from ..pdeath import die_with_parent
from ..errors import StorageError
from ..storage import MessageIdAllocator
from . import logs
from .connection import Connection, worker_address
from .counters import CounterRow, Counters
from .flusher import Flusher
from .handler import Handler
from .heartbeat import Heartbeats, start_beating
from .partitions import PartitionTable
from .replica_control import ReplicaProgress, ReplicaRole, status_lines
from .replica_follower import ReplicaFollower
from .replica_leader import ReplicaLeader
from .retention import RetentionScheduler
from .stats import StatsService

log = logging.getLogger(__name__)

STOP_DRAIN_S = 5.0  # how long a stopping worker keeps sending replies still pending
EXIT_BOOT_ERROR = 3  # the worker cannot start (bad data on disk): do not restart it in a loop


@dataclass
class WorkerSpec:
    slot: int
    workers: int
    config: Config
    listen_socket: socket.socket
    instance: str
    direct_socket: socket.socket
    direct_ports: list
    counters: Counters
    reset_block: object
    closed: object
    port: int
    broker_url: str
    started_s: float
    ready_fd: int
    events_fd: int
    supervisor_pid: int
    heartbeats: Heartbeats | None = None
    progress: ReplicaProgress | None = None  # replication figures for the supervisor
    control_fd: int = -1  # the supervisor's role lines (replica_control.py)
    role: ReplicaRole | None = None  # the role to start in


class Worker:
    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self.config = spec.config
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.counters = spec.counters.row(spec.slot)
        self.counters.add(CounterRow.WORKER_STARTS)
        ids = MessageIdAllocator(self.config.broker_id, spec.slot, spec.workers)
        self.table = PartitionTable(self.config, slot=spec.slot, workers=spec.workers, ids=ids)
        self.flusher = Flusher(self.loop, self.counters)
        self.stats = StatsService(self.table, spec.counters, port=spec.port,
                                  started_s=spec.started_s, reset_block=spec.reset_block,
                                  closed=spec.closed, direct_ports=spec.direct_ports)
        self.replica_leader = ReplicaLeader(
            self.loop, self.table, spec.slot, spec.workers, spec.progress, spec.broker_url,
            ack_timeout_s=2 * self.config.replica_lag_max_ms / 1000)
        self.flusher.on_flushed = self.replica_leader.appended
        self.replica_follower = ReplicaFollower(self.loop, self.table, self.flusher, spec.slot,
                                                spec.workers, spec.progress, self.config,
                                                self.counters)
        self.role = spec.role or ReplicaRole(min_isr=self.config.min_in_sync_replicas)
        self.stats.is_slave = lambda: not self.role.is_master
        self.stats.replication = lambda: status_lines(
            self.role, spec.progress, spec.counters.partitions.snapshot())
        self.handler = Handler(self.table, broker_url=spec.broker_url, counters=self.counters,
                               flusher=self.flusher, stats=self.stats, closed_partitions=spec.closed,
                               replication=self.replica_leader)
        self._control_buffer = b""
        self.connections: set[Connection] = set()
        self.stopping = False
        self._link_listener: socket.socket | None = None
        self._announced: set[str] = set()

    # ---- start ---------------------------------------------------------------------------

    def start(self) -> None:
        began = time.monotonic()
        opened = self.table.open_owned()
        for partition_log in opened:
            self.flusher.track(partition_log)
            self.announce_topic(partition_log.topic)
            if partition_log.failed is not None:  # its flush at open failed again: offline now,
                self.handler.faults.partition_failed(  # not at the first put
                    partition_log.topic, partition_log.partition, partition_log.failed)
        dropped = sum(p.recovered_bytes_dropped for p in opened)
        log.info("recovered %d partition(s) in %.0f ms%s", len(opened),
                 (time.monotonic() - began) * 1e3,
                 f", {dropped} bytes of torn tail dropped" if dropped else "")
        pipe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        pipe.bind(worker_address(self.spec.instance, self.spec.slot))
        pipe.listen(128)
        pipe.setblocking(False)
        self._link_listener = pipe
        self.loop.add_reader(pipe.fileno(), self._accept, pipe, "worker-link")
        for listener in (self.spec.listen_socket, self.spec.direct_socket):
            listener.setblocking(False)
            self.loop.add_reader(listener.fileno(), self._accept, listener, None)
        self.loop.add_signal_handler(signal.SIGTERM, self.stop)
        self.flusher.start()
        self.retention = RetentionScheduler(self.loop, self.table, self.flusher.executor)
        self.retention.start()
        self.table.on_created = self._on_partition_created
        self.apply_role(self.role)
        if self.spec.control_fd >= 0:
            os.set_blocking(self.spec.control_fd, False)
            self.loop.add_reader(self.spec.control_fd, self._on_control)
        if self.spec.heartbeats is not None:
            start_beating(self.loop, self.spec.heartbeats, self.spec.slot)

    def _on_partition_created(self, partition_log) -> None:
        self.flusher.track(partition_log)
        self.counters.store_created(partition_log.topic, partition_log.partition)
        self.announce_topic(partition_log.topic)
        if self.role.is_master and self.role.epoch:
            self._assign_epoch(partition_log, self.role.epoch)
        self.replica_leader.appended()  # a follower's parked fetch learns of it

    # ---- replication role -----------------------------------------------------------------

    def _on_control(self) -> None:
        """Role lines from the supervisor: the newest one counts."""
        try:
            data = os.read(self.spec.control_fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        if not data:  # the supervisor is gone; the parent-death signal ends us
            self.loop.remove_reader(self.spec.control_fd)
            return
        *lines, self._control_buffer = (self._control_buffer + data).split(b"\n")
        if lines and lines[-1]:
            self.apply_role(ReplicaRole.from_line(lines[-1]))

    def apply_role(self, role: ReplicaRole) -> None:
        """Become what the supervisor says: a master in ``role.epoch`` (records appended from
        now on are that epoch's) or a follower of ``role.leader``."""
        if role.is_master and role.epoch:
            for partition_log in list(self.table.logs.values()):
                if partition_log.failed is None:
                    self._assign_epoch(partition_log, role.epoch)
        changed = role != self.role
        self.role = role
        self.replica_leader.set_role(role)
        self.replica_follower.set_role(role)
        if role.is_master and role.hold:
            self.table.put_refusal = (
                f"broker {self.config.broker_id} takes no puts for now: it is stopping or has "
                "lost ZooKeeper, and another replica may be taking over as master")
        elif role.is_master:
            self.table.put_refusal = self.replica_leader.put_refusal
        else:
            self.table.put_refusal = (
                f"broker {self.config.broker_id} is a slave ({role.replica}) and takes no puts; "
                f"its master is {role.leader or 'not registered'}")
        if changed:
            log.info("replication role: %s", role)
        if self.spec.progress is not None:
            self.spec.progress.applied[self.spec.slot] = role.version  # the supervisor waits

    def _assign_epoch(self, partition_log, epoch: int) -> None:
        """Records appended to it from now on are ``epoch``'s; a partition whose epoch file
        cannot be written (a full or failing disk) goes offline rather than take puts with a
        wrong epoch."""
        try:
            partition_log.epochs.assign(epoch, partition_log.end_offset)
        except (OSError, StorageError) as exc:
            reason = f"cannot record master epoch {epoch}: {exc}"
            partition_log.fail(reason)
            self.handler.faults.partition_failed(partition_log.topic, partition_log.partition,
                                                 reason)

    def announce_topic(self, topic: str) -> None:
        """Tell the supervisor a topic has a store here (it registers it in ZooKeeper)."""
        if topic in self._announced:
            return
        self._announced.add(topic)
        try:
            os.write(self.spec.events_fd, f"topic {topic}\n".encode("utf-8"))
        except OSError as exc:
            log.warning("could not tell the supervisor about topic %s: %s", topic, exc)

    def _accept(self, listener: socket.socket, label: str | None) -> None:
        for _ in range(64):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                return
            if self.stopping:
                sock.close()
                continue
            peer = label or (f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr))
            self.connections.add(Connection(self, sock, peer))
            if label is None:  # a client, not another worker's forwarding pipe
                self.counters.add(CounterRow.CONNECTIONS)
                self.counters.add(CounterRow.CONNECTIONS_TOTAL)

    def connection_closed(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            if conn.peer != "worker-link":
                self.counters.add(CounterRow.CONNECTIONS, -1)

    # ---- stop ----------------------------------------------------------------------------

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.replica_follower.stop()
        log.info("stopping: %d connection(s) open", len(self.connections))
        self.loop.remove_reader(self.spec.listen_socket.fileno())
        self.loop.remove_reader(self.spec.direct_socket.fileno())
        if self._link_listener is not None:
            self.loop.remove_reader(self._link_listener.fileno())
            self._link_listener.close()
        for conn in list(self.connections):
            conn.close_after_flush()
            conn._flush()
        self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        deadline = time.monotonic() + STOP_DRAIN_S
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.close()
        self.loop.stop()

    def close(self) -> None:
        if getattr(self, "retention", None) is not None:
            self.retention.close()
        self.flusher.close()
        self.table.close()
        log.info("stopped: all partitions flushed and closed")


def run_worker(spec: WorkerSpec) -> None:
    """Body of a forked worker; never returns."""
    code = 0
    try:
        os.environ["METAQ_FAST_ROLE"] = f"worker-{spec.slot}"
        logs.set_role(f"worker-{spec.slot}")
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, who stops us
        die_with_parent(spec.supervisor_pid)  # never run on as an orphan that left ZooKeeper
        worker = Worker(spec)
        try:
            worker.start()
        except Exception as exc:
            log.exception("worker %d cannot start", spec.slot)
            _tell(spec.ready_fd, f"failed {type(exc).__name__}: {exc}\n")
            os._exit(EXIT_BOOT_ERROR)
        gc.collect()
        gc.freeze()  # start-up objects are never garbage: keep them out of every collection
        gc.set_threshold(50_000, 20, 20)
        if spec.heartbeats is not None:  # the collection above may have taken a while
            spec.heartbeats.beat(spec.slot)
        _tell(spec.ready_fd, "ready\n")
        try:
            worker.loop.run_forever()
        finally:
            worker.close()
    except BaseException:
        log.exception("worker %d failed", spec.slot)
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)


def _tell(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode("utf-8"))
        os.close(fd)
    except OSError:
        pass
