"""The broker's HTTP endpoint on ``dashboardHttpPort``: Prometheus ``/metrics``, ``/health``,
``/stats`` as JSON. Served by the supervisor, from a daemon thread.

Imports: stdlib (http.server, socket, threading), prometheus_client, metaq_fast.protocol /
storage (partition.state layout) and broker.counters / partitions / storage_faults. Never
ZooKeeper.

Routes (GET; anything else 404, other methods 405):

* ``/metrics``: Prometheus text format, made by ``prometheus_client`` from ``BrokerCollector``,
  which reads at scrape time the shared counter block (``counters.py``: per worker and per
  (topic, partition)), the supervisor's worker table, the closed and offline partition sets
  and every partition's ``partition.state`` (end and first offset, 64 bytes read with
  ``pread``: the supervisor maps no segment, so a worker it forks later inherits no mapping).
* ``/health``: 200 when every worker is up and ready and no partition is offline, else 503
  (starting, a worker restarting, stopping, a partition offline after a failed flush); JSON body
  with each worker's pid and state, and ``offline_partitions`` (topic, partition, reason, since)
  with a ``detail`` line naming them and what brings them back (a broker restart).
* ``/stats`` and ``/stats/<item>``: MetaQ's ``stats`` answers as JSON (as the dashboard of MetaQ
  serves ``/stats/:item``). The supervisor asks a worker over the broker's own port
  (``stats <item>``), the way MetaQ's dashboard does, so the figures are the same ones.
* ``/``: broker id, version, url and ports.

The server never blocks the supervisor loop: it runs in its own daemon thread and only reads
shared state. Its listening socket is closed in every forked child (``os.register_at_fork``),
so a worker forked after it started does not keep the port bound.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import urllib.parse
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    SummaryMetricFamily,
)

from .. import __version__
from ..errors import SUCCESS
from ..protocol import NEED_DATA, ResponseDecoder, ResultReply, encode
from ..protocol.commands import StatsCommand
from ..storage import files
from ..storage.state import FIRST_OFFSET, MAGIC, STATE_BYTES, VISIBLE_END
from .counters import INDEX
from .partitions import PartitionTable
from .replica_control import now_ms
from .storage_faults import RECOVERY_HINT

log = logging.getLogger(__name__)

STATS_TIMEOUT_S = 5.0  # how long /stats waits for a worker's answer
STATS_REPLY_BYTES_MAX = 16 * 1024 * 1024  # a stats answer larger than this is refused

# per (topic, partition) counters: metric name (without _total), column, help
PARTITION_COUNTERS = (
    ("metaq_partition_put_requests", "cmd_put", "put requests received for the partition"),
    ("metaq_partition_put_failures", "put_failed", "put requests answered with an error"),
    ("metaq_partition_messages_put", "put_messages", "messages appended to the partition"),
    ("metaq_partition_bytes_put", "put_bytes", "record bytes appended to the partition"),
    ("metaq_partition_get_requests", "cmd_get", "get and getm requests for the partition"),
    ("metaq_partition_get_misses", "get_miss",
     "gets on a missing store, before the first offset or at/after the end"),
    ("metaq_partition_messages_served", "get_messages", "records served by getm"),
    ("metaq_partition_bytes_served", "get_bytes", "bytes served by get and getm"),
    ("metaq_partition_offset_requests", "cmd_offset",
     "offset requests plus gets answered 301 (MetaQ's cmd_offset)"),
    ("metaq_partition_disk_full_refusals", "disk_full_refusals",
     "put requests refused because the disk was full"),
    ("metaq_partition_fsync_failures", "fsync_failures",
     "failed flushes that took the partition offline"),
    ("metaq_partition_messages_replicated", "replicated_messages",
     "records this slave copied from its master"),
    ("metaq_partition_bytes_replicated", "replicated_bytes",
     "record bytes this slave copied from its master"),
)
# broker totals (every worker row summed): metric name, column, help
BROKER_COUNTERS = (
    ("metaq_put_requests", "cmd_put", "put and putm requests (MetaQ cmd_put)"),
    ("metaq_put_failures", "put_failed", "put requests answered with an error (put_failed)"),
    ("metaq_get_requests", "cmd_get", "get and getm requests (cmd_get)"),
    ("metaq_get_misses", "get_miss", "gets that found nothing (get_miss)"),
    ("metaq_offset_requests", "cmd_offset", "offset requests (cmd_offset)"),
    ("metaq_messages_put", "put_messages", "messages appended"),
    ("metaq_bytes_put", "put_bytes", "record bytes appended"),
    ("metaq_messages_served", "get_messages", "records served by getm"),
    ("metaq_bytes_served", "get_bytes", "bytes served by get and getm"),
    ("metaq_puts_forwarded", "forwarded", "puts forwarded to the worker owning the partition"),
    ("metaq_put_disk_full_refusals", "disk_full_refusals",
     "put requests refused because the disk was full"),
    ("metaq_fsync_failures", "fsync_failures", "failed flushes that took a partition offline"),
)

_servers: "weakref.WeakSet[DashboardServer]" = weakref.WeakSet()


def _close_in_child() -> None:
    for server in list(_servers):
        try:
            server.httpd.socket.close()
        except OSError:
            pass


os.register_at_fork(after_in_child=_close_in_child)


# ---- /metrics ----------------------------------------------------------------------------------


def read_partition_state(path) -> tuple[int, int] | None:
    """(first_offset, visible_end) of a ``partition.state`` file, or None if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        raw = os.pread(fd, STATE_BYTES, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(raw) < STATE_BYTES:
        return None
    words = np.frombuffer(raw, dtype="<u8")
    if int(words[0]) != MAGIC:
        return None
    return int(words[FIRST_OFFSET]), int(words[VISIBLE_END])


class BrokerCollector:
    """A prometheus_client collector over the supervisor's shared state (read at scrape time).

    ``supervisor`` needs: ``config``, ``counters``, ``workers`` (slot -> object with ``pid`` and
    ``ready``), ``count``, ``closed``, ``started_s``, ``broker_url``, ``port``.
    """

    def __init__(self, supervisor):
        self.supervisor = supervisor
        self.table = PartitionTable(supervisor.config, slot=0, workers=1, ids=None)

    def describe(self):
        return []  # figures are dynamic: no describe-time collection

    def collect(self):
        sup = self.supervisor
        config = sup.config
        info = InfoMetricFamily("metaq_broker", "the broker", labels=())
        info.add_metric([], {"broker_id": str(config.broker_id), "version": __version__,
                             "url": sup.broker_url})
        yield info
        yield GaugeMetricFamily("metaq_uptime_seconds", "seconds since the broker started",
                                value=time.time() - sup.started_s)
        yield from self._workers()
        yield from self._broker_totals()
        yield from self._partitions()
        yield from self._replication()

    def _replication(self):
        """The role of this broker for its id, and how far its followers (or, on a slave,
        its partitions: in ``_partitions``) are behind."""
        replication = getattr(self.supervisor, "replication", None)
        if replication is None:
            return
        role = replication.role
        info = InfoMetricFamily("metaq_replication", "this broker's replication role", labels=())
        info.add_metric([], {"role": role.role, "replica": role.replica,
                             "leader": role.leader or "", "isr": ",".join(role.isr)})
        yield info
        yield GaugeMetricFamily("metaq_replication_epoch", "master epoch of this broker id",
                                value=role.epoch)
        yield GaugeMetricFamily("metaq_replication_in_sync_replicas",
                                "replicas in sync (a master; itself counted)",
                                value=len(role.isr) if role.is_master else 0)
        lag = GaugeMetricFamily("metaq_replication_follower_lag_bytes",
                                "bytes a follower lacks of this master's partitions",
                                labels=["replica"])
        age = GaugeMetricFamily("metaq_replication_follower_caught_up_age_seconds",
                                "seconds since the follower last had everything (-1: never)",
                                labels=["replica"])
        if role.is_master:
            for replica in replication.progress.followers_seen():
                caught_ms, lag_bytes, _fetched = replication.progress.follower_lag(replica)
                lag.add_metric([replica], lag_bytes)
                age.add_metric([replica], caught_ms / 1000 if caught_ms >= 0 else -1)
        yield from (lag, age)

    def _workers(self):
        sup = self.supervisor
        rows = sup.counters.table
        up = GaugeMetricFamily("metaq_worker_up", "1 when the worker runs and has started",
                               labels=["worker"])
        restarts = CounterMetricFamily("metaq_worker_restarts",
                                       "times the worker was started again after dying",
                                       labels=["worker"])
        connections = GaugeMetricFamily("metaq_connections", "client connections open now",
                                        labels=["worker"])
        accepted = CounterMetricFamily("metaq_connections_accepted",
                                       "client connections accepted", labels=["worker"])
        flush = SummaryMetricFamily("metaq_flush_seconds", "fdatasync rounds and time spent",
                                    labels=["worker"])
        workers = dict(sup.workers)
        for slot in range(sup.count):
            label = [str(slot)]
            worker = workers.get(slot)
            row = rows[slot]
            up.add_metric(label, 1.0 if worker is not None and worker.pid > 0 and worker.ready
                          else 0.0)
            restarts.add_metric(label, max(int(row[INDEX["worker_starts"]]) - 1, 0))
            connections.add_metric(label, int(row[INDEX["connections"]]))
            accepted.add_metric(label, int(row[INDEX["connections_total"]]))
            flush.add_metric(label, count_value=int(row[INDEX["flushes"]]),
                             sum_value=int(row[INDEX["flush_us_total"]]) / 1e6)
        yield GaugeMetricFamily("metaq_workers", "worker processes configured", value=sup.count)
        yield from (up, restarts, connections, accepted, flush)

    def _broker_totals(self):
        totals = self.supervisor.counters.totals()
        for name, column, text in BROKER_COUNTERS:
            yield CounterMetricFamily(name, text, value=totals[column])

    def _partitions(self):
        sup = self.supervisor
        figures = sup.counters.partitions.snapshot()
        states = {}
        for topic, partition, directory in self.table.existing():
            found = read_partition_state(directory / files.STATE_NAME)
            if found is not None:
                states[(topic, partition)] = found
        closed = set(sup.closed.items()) if sup.closed is not None else set()
        offline = ({(t, p) for t, p, _reason, _since in sup.closed.offline_items()}
                   if sup.closed is not None else set())
        labels = ["topic", "partition"]
        counters = {name: CounterMetricFamily(name, text, labels=labels)
                    for name, _column, text in PARTITION_COUNTERS}
        end = GaugeMetricFamily("metaq_partition_end_offset",
                                "offset after the last readable message (MetaQ max_offset)",
                                labels=labels)
        first = GaugeMetricFamily("metaq_partition_first_offset",
                                  "start offset of the first segment (MetaQ min_offset)",
                                  labels=labels)
        stored = GaugeMetricFamily("metaq_partition_stored_bytes",
                                   "bytes stored: end offset minus first offset", labels=labels)
        closed_gauge = GaugeMetricFamily("metaq_partition_closed",
                                         "1 while an operator has closed the partition",
                                         labels=labels)
        lag = GaugeMetricFamily("metaq_partition_replica_lag_bytes",
                                "a slave: bytes its master had at its last answer that it "
                                "still lacks",
                                labels=labels)
        lag_s = GaugeMetricFamily("metaq_partition_replica_lag_seconds",
                                  "a slave: seconds since it last held all the master had "
                                  "(0 while it does)",
                                  labels=labels)
        offline_gauge = GaugeMetricFamily(
            "metaq_partition_offline",
            "1 while the partition is offline after a failed flush (until the broker restarts)",
            labels=labels)
        for key in sorted(set(figures) | set(states) | closed | offline):
            label = [key[0], str(key[1])]
            values = figures.get(key)
            if values is not None:
                for name, column, _text in PARTITION_COUNTERS:
                    counters[name].add_metric(label, int(values[0][INDEX[column]]))
                caught = int(values[0][INDEX["replica_caught_up_ms"]])
                if caught:
                    behind = int(values[0][INDEX["replica_lag_bytes"]])
                    lag.add_metric(label, behind)
                    lag_s.add_metric(label, max(0, now_ms() - caught) / 1000 if behind else 0.0)
            if key in states:
                first_offset, end_offset = states[key]
                end.add_metric(label, end_offset)
                first.add_metric(label, first_offset)
                stored.add_metric(label, max(end_offset - first_offset, 0))
            closed_gauge.add_metric(label, 1.0 if key in closed else 0.0)
            offline_gauge.add_metric(label, 1.0 if key in offline else 0.0)
        yield from counters.values()
        yield from (end, first, stored, closed_gauge, offline_gauge, lag, lag_s)


# ---- /stats ------------------------------------------------------------------------------------


def query_stats(host: str, port: int, item: str, timeout_s: float = STATS_TIMEOUT_S
                ) -> ResultReply:
    """Ask the broker at host:port ``stats <item>`` over MetaQ's protocol; its reply."""
    request = encode(StatsCommand(item, 1))  # refuses an item that would split the line
    decoder = ResponseDecoder()
    received = 0
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.settimeout(timeout_s)
        sock.sendall(request)
        while True:
            reply = decoder.next_command()
            if reply is not NEED_DATA:
                return reply
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError("the broker closed the connection before answering")
            received += len(data)
            if received > STATS_REPLY_BYTES_MAX:
                raise ConnectionError(f"stats answer larger than {STATS_REPLY_BYTES_MAX} bytes")
            decoder.feed(data)


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        return text


def stats_json(item: str, body: bytes) -> dict:
    """A ``stats`` answer as JSON-ready data.

    ``config``: ``{"item", "config": text}``; ``topics``/``offsets``: one object per line
    (``<topic> key value key value...``, ``part`` named ``partition``; ``*Empty*`` topics get
    ``"empty": true``); every other item: ``{"item", "stats": {key: value}}`` (key = text before
    the first space, as MetaQ's client parses it; numbers as numbers), a topic item also
    ``"topic"`` (its first line).
    """
    text = body.decode("utf-8", "replace")
    if item == "config":
        return {"item": item, "config": text}
    lines = [line for line in text.split("\r\n") if line]
    if lines[:1] == ["STATS"]:
        lines = lines[1:]
    if lines[-1:] == ["END"]:
        lines = lines[:-1]
    if item in ("topics", "offsets"):
        rows = []
        for line in lines:
            head, *rest = line.split(" ")
            row: dict = {"topic": head}
            if rest == ["*Empty*"]:
                row["empty"] = True
            else:
                for key, value in zip(rest[0::2], rest[1::2]):
                    row["partition" if key == "part" else key] = _number(value)
            rows.append(row)
        return {"item": item, item: rows}
    out: dict = {"item": item or "system"}
    if item not in ("", "realtime", "help", "reset") and lines and " " not in lines[0]:
        out["topic"] = lines.pop(0)
    stats = {}
    for line in lines:
        key, sep, value = line.partition(" ")
        stats[key] = _number(value) if sep else "NO VALUE"
    out["stats"] = stats
    return out


# ---- the server --------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server_version = f"metaq_fast/{__version__}"
    timeout = 10  # seconds: an idle or slow client does not hold a thread for ever
    dashboard: "DashboardServer"  # set on the subclass made per server

    def log_message(self, fmt, *args):  # access log at DEBUG, in the broker's one format
        log.debug("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data) -> None:
        self._send(status, (json.dumps(data, indent=1) + "\n").encode("utf-8"),
                   "application/json; charset=utf-8")

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        try:
            if path == "/metrics":
                self._send(200, generate_latest(self.dashboard.registry), CONTENT_TYPE_LATEST)
            elif path == "/health":
                status, data = self.dashboard.health()
                self._json(status, data)
            elif path == "/stats" or path.startswith("/stats/"):
                item = urllib.parse.unquote(path[len("/stats/"):]) if path != "/stats" else ""
                status, data = self.dashboard.stats(item)
                self._json(status, data)
            elif path == "/":
                self._json(200, self.dashboard.about())
            else:
                self._json(404, {"error": f"no such page {path!r}; try /metrics, /health, "
                                          "/stats, /stats/<item>"})
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # a bug must not kill the server thread
            log.exception("dashboard request %s failed", path)
            try:
                self._json(500, {"error": f"{type(exc).__name__}: {exc}"})
            except OSError:
                pass

    def _refuse(self):
        self._json(405, {"error": f"method {self.command} not allowed; use GET"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse


class DashboardServer:
    """The HTTP server of one supervisor (see the module docstring)."""

    def __init__(self, supervisor):
        self.supervisor = supervisor
        config = supervisor.config
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(BrokerCollector(supervisor))
        handler = type("DashboardHandler", (_Handler,), {"dashboard": self})
        server_class = type("DashboardHTTPServer", (ThreadingHTTPServer,), {
            "address_family": socket.AF_INET6 if ":" in config.dashboard_host else socket.AF_INET,
            "daemon_threads": True})
        self.httpd = server_class((config.dashboard_host, config.dashboard_http_port), handler)
        self.host = config.dashboard_host
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None
        _servers.add(self)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        kwargs={"poll_interval": 0.2}, name="metaq-dashboard",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # ---- pages ------------------------------------------------------------------------------

    def health(self) -> tuple[int, dict]:
        sup = self.supervisor
        workers = dict(sup.workers)
        states = {}
        for slot in range(sup.count):
            worker = workers.get(slot)
            if worker is None:
                states[str(slot)] = {"pid": None, "state": "gone"}
            elif worker.pid <= 0:
                states[str(slot)] = {"pid": None, "state": "restarting"}
            else:
                states[str(slot)] = {"pid": worker.pid,
                                     "state": "up" if worker.ready else "starting"}
        offline = sup.closed.offline_items() if sup.closed is not None else []
        healthy = (not sup.stopping and all(s["state"] == "up" for s in states.values())
                   and not offline)
        data = {"status": "ok" if healthy else "unavailable",
                "stopping": bool(sup.stopping), "workers": states}
        if offline:
            data["offline_partitions"] = [
                {"topic": t, "partition": p, "reason": reason, "since": since_s}
                for t, p, reason, since_s in offline]
            data["detail"] = "; ".join(f"partition {t}-{p} is offline: {reason}"
                                       for t, p, reason, _since in offline) + "; " + RECOVERY_HINT
        return (200 if healthy else 503), data

    def stats(self, item: str) -> tuple[int, dict]:
        sup = self.supervisor
        host = sup.config.listen_host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if not item.isprintable() or any(c.isspace() for c in item):
            # one token of MetaQ's stats line, nothing else: no second command smuggled in
            return 400, {"item": item, "error": "a stats item is one word without spaces "
                                                "or control characters"}
        try:
            reply = query_stats(host, sup.port, item)
        except (OSError, ValueError) as exc:
            return 503, {"item": item, "error": f"no answer from the broker's workers: {exc}"}
        if not isinstance(reply, ResultReply):
            return 502, {"item": item, "error": f"unexpected answer {type(reply).__name__}"}
        if reply.code != SUCCESS:
            return 500, {"item": item, "code": reply.code,
                         "error": bytes(reply.body).decode("utf-8", "replace")}
        return 200, stats_json(item, bytes(reply.body))

    def about(self) -> dict:
        sup = self.supervisor
        return {"broker_id": sup.config.broker_id, "version": __version__,
                "url": sup.broker_url, "port": sup.port, "dashboard_port": self.port,
                "pages": ["/metrics", "/health", "/stats", "/stats/<item>"]}


def start_dashboard(supervisor) -> DashboardServer | None:
    """Start the endpoint if ``dashboardHttpPort`` >= 0; None when disabled or it cannot bind
    (logged: the broker serves on without it)."""
    config = supervisor.config
    if config.dashboard_http_port < 0:
        log.info("dashboard disabled (dashboardHttpPort=-1)")
        return None
    try:
        server = DashboardServer(supervisor)
    except OSError as exc:
        log.error("dashboard cannot listen on %s:%d (%s); the broker runs without it",
                  config.dashboard_host, config.dashboard_http_port, exc)
        return None
    server.start()
    log.info("dashboard listening on http://%s:%d (/metrics, /health, /stats)",
             server.host if ":" not in server.host else f"[{server.host}]", server.port)
    return server
