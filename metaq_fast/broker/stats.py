"""MetaQ's ``stats`` answers (reference section 10) and the ``admin`` extension verbs.

Imports: stdlib, metaq_fast.protocol / errors and broker helpers. No sockets.

Figures are the broker's, not one worker's: counters come from the shared counter block that
every worker writes its row of, and partition figures from the partitions' files, which any
worker can read. ``realtime`` counts since the last ``stats reset`` (or start), as MetaQ's
``MetaStatLog`` does over its window.
"""

from __future__ import annotations

import os
import threading
import time

from .. import __version__
from ..errors import BAD_REQUEST, INTERNAL_SERVER_ERROR, SUCCESS
from ..protocol import encode_stats_body
from ..layout import OWNER_RULE
from .counters import NAMES, Counters

HELP = [
    "*EMPTY* Returns broker info.",
    "help Returns help menu.",
    "topics Returns topics statistics detail info.",
    "offsets Returns partitions detail info.",
    "realtime Returns realtime statistics detail info.",
    "config Returns broker's config file content.",
]


class StatsService:
    def __init__(self, table, counters: Counters, *, port: int, started_s: float,
                 reset_block=None, closed=None, direct_ports=()):
        self.table = table
        self.config = table.config
        self.counters = counters
        self.port = port
        self.started_s = started_s
        # Baselines of the last "stats reset", shared by all workers: a row in the counter block.
        self._reset = reset_block
        self.closed = closed
        self.direct_ports = list(direct_ports)

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
            "slave false",
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
        for key in ("put", "get", "offset", "get_miss", "put_failed", "message_size"):
            lines.append(f"topic_realtime_{key} null")
        return lines

    # ---- realtime -------------------------------------------------------------------------

    _REALTIME = (("realtime_put", "cmd_put", "put_bytes"), ("realtime_get", "cmd_get", "get_bytes"),
                 ("realtime_offset", "cmd_offset", None), ("realtime_get_miss", "get_miss", None),
                 ("realtime_put_failed", "put_failed", None),
                 ("realtime_message_size", "put_messages", "put_bytes"))

    def reset(self) -> None:
        if self._reset is not None:
            self._reset[:-1] = self.counters.table.sum(axis=0)[: len(NAMES)][: len(self._reset) - 1]
            self._reset[-1] = int(time.time() * 1000)

    def realtime(self) -> list[str]:
        totals = self.counters.totals()
        base = {name: 0 for name in NAMES}
        since_ms = int(self.started_s * 1000)
        if self._reset is not None and int(self._reset[-1]):
            base = {name: int(self._reset[i]) for i, name in enumerate(NAMES)}
            since_ms = int(self._reset[-1])
        duration = max((time.time() * 1000 - since_ms) / 1000.0, 1e-9)
        lines = []
        for label, count_name, value_name in self._REALTIME:
            count = totals[count_name] - base[count_name]
            value = totals[value_name] - base[value_name] if value_name else count
            if count == 0 and value == 0:
                lines.append(f"{label} null")
                continue
            per = f"{value / count:.2f}" if count else "invalid"
            lines.append(f"{label} Count={count},Value={value},Value/Count={per},"
                         f"Count/Duration={count / duration:.2f},Duration={duration:.0f}")
        return lines

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
