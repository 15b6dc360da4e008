"""MetaQ's ``stats`` answers (reference section 10) and the ``admin`` extension verbs.

Imports: stdlib, numpy, metaq_fast.protocol / errors / limits / layout and broker helpers. No
sockets.

Figures are the broker's, not one worker's: counters come from the shared counter block that
every worker writes its row of, and partition figures from the partitions' files, which any
worker can read.

Realtime figures follow MetaQ's ``MetaStatLog``: they are kept only for topics with
``stat=true`` (patterns allowed), per (topic, partition) in the shared partition table of
``counters.py``, summed at answer time; each statistic counts since the last reset (``stats
reset``, and every 30 minutes: done when an answer finds the window older than that), printed
as ``Count=<c>,Value=<v>,Value/Count=<v/c>,Count/Duration=<c/d>,Duration=<d>`` with numbers in
Java's ``#.##`` format, ``null`` for a statistic nothing was ever recorded for and ``Invalid
keyTwo:<topic>`` for a topic without an entry in it. Values: 1 per request for put, get,
offset, get_miss and put_failed (so Value = Count, as MetaQ adds 1 each time); for
message_size, Count = messages stored and Value = their data bytes (MetaQ counts every put
request there, failed ones included; we count what was stored).

``stats replication`` is ours: this broker's replication role, epoch, in-sync set and how far
each follower (or, on a slave, each partition) is behind (replica_control.status_lines).
``stats storage`` is ours too (MetaQ's own items keep their exact lines): ``disk_full_refusals <n>``,
``fsync_failures <n>``, ``offline_partitions <n>``, then ``offline_<topic>-<partition> <reason>``
per partition offline after a failed flush (see storage_faults.py). A topic named ``storage``
is asked for as ``stats storage`` no more, as with ``topics`` or ``offsets`` in MetaQ.
"""

from __future__ import annotations

import os
import threading
import time
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np

from .. import __version__
from ..config import PARTITIONS_MAX
from ..errors import BAD_REQUEST, INTERNAL_SERVER_ERROR, SUCCESS
from ..protocol import encode_stats_body
from ..layout import OWNER_RULE
from ..limits import RECORD_HEADER_BYTES
from .counters import INDEX, Counters

HELP = [
    "*EMPTY* Returns broker info.",
    "help Returns help menu.",
    "topics Returns topics statistics detail info.",
    "offsets Returns partitions detail info.",
    "realtime Returns realtime statistics detail info.",
    "config Returns broker's config file content.",
]

REALTIME_WINDOW_S = 30 * 60  # MetaQ's RealTimeStatRestTask resets the statistics this often
# MetaQ statistic -> (count column, value column; None = 1 per count)
STATISTICS = (
    ("put", "cmd_put", None),
    ("get", "cmd_get", None),
    ("offset", "cmd_offset", None),
    ("get_miss", "get_miss", None),
    ("put_failed", "put_failed", None),
    ("message_size", "put_messages", "data_bytes"),
)


class StatsService:
    def __init__(self, table, counters: Counters, *, port: int, started_s: float,
                 reset_block=None, closed=None, direct_ports=()):
        self.table = table
        self.config = table.config
        self.counters = counters
        self.port = port
        self.started_s = started_s
        # Shared by all workers: its last word is the time (ms) of the last "stats reset".
        self._reset = reset_block
        self.closed = closed
        self.direct_ports = list(direct_ports)
        self.replication = None  # callable -> lines of ``stats replication`` (the worker's)
        self.is_slave = lambda: False  # the worker's: does this broker follow a master now?
        # which partitions this worker counts figures for (counters.py, PartitionWriter)
        counters.writer(table.slot).accept = self._accept_partition

    def _accept_partition(self, topic: str, partition: int) -> bool | None:
        """True: count it; False: never (remembered); None: not yet (asked again later)."""
        settings = self.table.topic_config(topic)
        if settings is None:
            return self.table.view(topic, partition) is not None
        if partition >= settings.num_partitions:
            return False
        if settings.pattern is None:
            return True
        # A name matched by a [topic=x*] section is counted once it has a store (its first
        # put): made-up names asked for by get/offset must not fill the table.
        return True if self.table.view(topic, partition) is not None else None

    # ---- stats ----------------------------------------------------------------------------

    def answer(self, item: str) -> tuple[int, bytes]:
        item = item.strip()
        if item == "config":
            raw = self.config.raw_bytes
            if not raw:
                return INTERNAL_SERVER_ERROR, f"Config file not found:{self.config.path}".encode()
            return SUCCESS, raw
        if item == "":
            lines = self.system()
        elif item == "help":
            lines = HELP
        elif item == "topics":
            lines = self.topics()
        elif item == "offsets":
            lines = self.offsets()
        elif item == "realtime":
            lines = self.realtime()
        elif item == "storage":
            lines = self.storage()
        elif item == "replication" and self.replication is not None:
            lines = self.replication()
        elif item == "reset":
            self.reset()
            lines = ["reset ok"]
        else:
            lines = self.topic(item)
        return SUCCESS, encode_stats_body(lines)

    def system(self) -> list[str]:
        totals = self.counters.totals()
        stores = self._stores()
        topics_with_stores = {t for t, _p, _v in stores}
        configured = {t for t in self.config.topics if "*" not in t}
        return [
            f"pid {os.getppid() if self._is_worker() else os.getpid()}",
            f"broker_id {self.config.broker_id}",
            f"port {self.port}",
            f"uptime {int(time.time() - self.started_s)}",
            f"version {__version__}",
            f"slave {'true' if self.is_slave() else 'false'}",
            f"curr_connections {totals['connections']}",
            f"threads {threading.active_count()}",
            f"cmd_put {totals['cmd_put']}",
            f"cmd_get {totals['cmd_get']}",
            f"cmd_offset {totals['cmd_offset']}",
            "tx_begin 0",
            "tx_xa_begin 0",
            "tx_commit 0",
            "tx_rollback 0",
            f"get_miss {totals['get_miss']}",
            f"put_failed {totals['put_failed']}",
            f"total_messages {sum(v.message_count() for _t, _p, v in stores)}",
            f"topics {len(topics_with_stores | configured)}",
            f"config_checksum {self.config.checksum}",
        ]

    @staticmethod
    def _is_worker() -> bool:
        return os.environ.get("METAQ_FAST_ROLE", "").startswith("worker")

    def _stores(self):
        stores = []
        for topic, partition, _ in self.table.existing():
            view = self.table.view(topic, partition)
            if view is not None:
                stores.append((topic, partition, view))
        return stores

    def storage(self) -> list[str]:
        totals = self.counters.totals()
        offline = self.closed.offline_items() if self.closed is not None else []
        return [f"disk_full_refusals {totals['disk_full_refusals']}",
                f"fsync_failures {totals['fsync_failures']}",
                f"offline_partitions {len(offline)}",
                *(f"offline_{t}-{p} {' '.join(reason.split())}" for t, p, reason, _s in offline)]

    def topics(self) -> list[str]:
        by_topic: dict[str, list] = {}
        for topic, partition, view in self._stores():
            by_topic.setdefault(topic, []).append(view)
        lines = []
        for topic in sorted(by_topic):
            views = by_topic[topic]
            settings = self.table.settings_for_existing(topic)
            count = sum(v.message_count() for v in views)
            size = sum(v.visible_end - v.first_offset for v in views)
            lines.append(f"{topic} partitions {len(views)} message_count {count} message_bytes "
                         f"{size} accept_publish {_bool(settings.accept_publish)} accept_subscribe "
                         f"{_bool(settings.accept_subscribe)}")
        for topic in self.config.topics:
            if topic not in by_topic and "*" not in topic:
                lines.append(f"{topic} *Empty*")
        return lines

    def offsets(self) -> list[str]:
        return [f"{topic} part {partition} min_offset {view.first_offset} max_offset "
                f"{view.visible_end}" for topic, partition, view in self._stores()]

    def topic(self, name: str) -> list[str]:
        views = [v for t, _p, v in self._stores() if t == name]
        configured = self.table.topic_config(name) is not None or name in self.config.topics
        code = 0 if views else (2 if configured else 1)
        count = sum(v.message_count() for v in views)
        size = sum(v.visible_end - v.first_offset for v in views)
        lines = [name, f"resultCode {code}", f"partitions {len(views)}", f"message_count {count}",
                 f"bytes {size}"]
        figures, duration_s = self._realtime_figures()
        for statistic, _count, _value in STATISTICS:
            lines.append(f"topic_realtime_{statistic} "
                         f"{_realtime_value(figures, statistic, duration_s, name)}")
        return lines

    # ---- realtime -------------------------------------------------------------------------

    def reset(self) -> None:
        self.counters.partitions.reset_baselines()
        if self._reset is not None:
            self._reset[-1] = int(time.time() * 1000)

    def _since_ms(self) -> int:
        if self._reset is not None and int(self._reset[-1]):
            return int(self._reset[-1])
        return int(self.started_s * 1000)

    def _realtime_figures(self) -> tuple[dict, int]:
        """``{topic: (ever, since_reset)}`` count/value pairs per statistic for stat topics,
        and the window's duration in whole seconds (MetaQ's ``Duration``)."""
        if time.time() * 1000 - self._since_ms() >= REALTIME_WINDOW_S * 1000:
            self.reset()
        duration_s = int((time.time() * 1000 - self._since_ms()) // 1000)
        columns: dict[str, np.ndarray] = {}
        for (topic, _partition), (values, base) in self.counters.partitions.snapshot().items():
            if not self.table.settings_for_existing(topic).stat:
                continue
            both = np.stack((values, values - base))
            if topic in columns:
                columns[topic] += both
            else:
                columns[topic] = both
        figures = {}
        for topic, both in columns.items():
            per = {}
            for statistic, count_name, value_name in STATISTICS:
                counts = both[:, INDEX[count_name]]
                if value_name == "data_bytes":
                    values = both[:, INDEX["put_bytes"]] - RECORD_HEADER_BYTES * counts
                else:
                    values = counts
                per[statistic] = ((int(counts[0]), int(values[0])),
                                  (int(counts[1]), int(values[1])))
            figures[topic] = per
        return figures, duration_s

    def realtime(self) -> list[str]:
        figures, duration_s = self._realtime_figures()
        return [f"realtime_{statistic} {_realtime_value(figures, statistic, duration_s)}"
                for statistic, _count, _value in STATISTICS]

    # ---- admin extension ----------------------------------------------------------------

    def admin(self, verb: str, args: tuple[str, ...]) -> tuple[int, bytes]:
        """Operator commands (MetaQ's JMX operations and ours), ``admin <verb> <args> <opaque>``:

        * ``closePartitions <topic> <start> <end>``: refuse puts and gets (403) until opened;
        * ``openPartitions <topic>``: open every closed partition of the topic;
        * ``closedPartitions``: list them, one ``<topic> <partition>`` per line;
        * ``layout``: how partitions map to workers, for clients that connect to the owning
          worker directly: ``workers <n>``, ``owner crc32-plus-partition`` (owner =
          (crc32(topic utf-8) + partition) mod n), then ``worker <slot> <port>`` per worker.
        """
        if verb == "layout" and not args:
            lines = [f"workers {len(self.direct_ports)}", f"owner {OWNER_RULE}"]
            lines += [f"worker {slot} {port}" for slot, port in enumerate(self.direct_ports)]
            return SUCCESS, ("\n".join(lines) + "\n").encode()
        try:
            if verb == "closePartitions" and len(args) == 3:
                topic, start, end = args[0], int(args[1]), int(args[2])
                if start < 0 or end < start:
                    raise ValueError("partitions must satisfy 0 <= start <= end")
                if end - start >= PARTITIONS_MAX:  # a set of 2**31 entries would kill the worker
                    raise ValueError(f"at most {PARTITIONS_MAX} partitions at once "
                                     f"(numPartitions cannot exceed it)")
                added = self.closed.close_partitions(topic, start, end)
                return SUCCESS, f"closed {topic} partitions {start}..{end} ({added} newly)".encode()
            if verb == "openPartitions" and len(args) == 1:
                opened = self.closed.open_partitions(args[0])
                return SUCCESS, f"opened {opened} partition(s) of {args[0]}".encode()
            if verb == "closedPartitions" and not args:
                return SUCCESS, "".join(f"{t} {p}\n" for t, p in self.closed.items()).encode()
        except ValueError as exc:
            return BAD_REQUEST, f"admin {verb}: {exc}".encode("utf-8")
        return BAD_REQUEST, (f"unknown admin command {verb!r} with {len(args)} argument(s); "
                             "known: closePartitions <topic> <start> <end>, openPartitions "
                             "<topic>, closedPartitions, layout").encode("utf-8")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _realtime_value(figures: dict, statistic: str, duration_s: int,
                    topic: str | None = None) -> str:
    """MetaQ's ``getGroupedRealTimeStatResult`` for all stat topics or one topic."""
    recorded = {t: per[statistic] for t, per in figures.items() if per[statistic][0][0] > 0}
    if not recorded:
        return "null"  # nothing was ever recorded for this statistic
    if topic is None:
        count = sum(since[0] for _ever, since in recorded.values())
        value = sum(since[1] for _ever, since in recorded.values())
    elif topic in recorded:
        count, value = recorded[topic][1]
    else:
        return f"Invalid keyTwo:{topic}"
    per_count = java_decimal(value / count) if count else "invalid"
    per_second = java_decimal(count / duration_s) if duration_s else "invalid"
    return (f"Count={java_decimal(count)},Value={java_decimal(value)},Value/Count={per_count},"
            f"Count/Duration={per_second},Duration={duration_s}")


def java_decimal(number: float) -> str:
    """Java's ``new DecimalFormat("#.##").format(number)``: at most two decimals, rounded half
    to even, no trailing zeros, no grouping (``2.0`` -> ``2``, ``2.345`` -> ``2.35``)."""
    if isinstance(number, int):
        return str(number)
    # the double's exact binary value, as Java 8+ rounds it (2.355 is 2.35499... -> 2.35)
    rounded = Decimal(float(number)).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    text = format(rounded, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
