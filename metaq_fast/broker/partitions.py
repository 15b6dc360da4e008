"""The partitions one worker sees: the logs it owns (writable) and readers of all the others.

Imports: metaq_fast.config / storage / errors / layout.

A worker opens (and so recovers) every existing partition it owns at start, creates an owned
partition on its first put, and opens a read-only ``PartitionReader`` on any other partition the
first time it is asked to serve a read from it. Which topics and partitions exist follows
MetaQ: a configured topic has no store until its first put; a directory found on disk is a store
whether or not its topic is still configured.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from ..config import Config, TopicConfig
from ..errors import InvalidPartitionError, ServiceUnavailableError, UnknownTopicError
from ..names import is_valid_name
from ..storage import FlushPolicy, MessageIdAllocator, PartitionLog, PartitionReader
from ..storage import files
from ..layout import owner_of

log = logging.getLogger(__name__)


class PartitionTable:
    def __init__(self, config: Config, *, slot: int, workers: int, ids: MessageIdAllocator):
        self.config = config
        self.slot = slot
        self.workers = workers
        self.ids = ids
        self.logs: dict[tuple[str, int], PartitionLog] = {}
        self._readers: dict[tuple[str, int], PartitionReader] = {}
        self._topic_cache: dict[str, TopicConfig | None] = {}
        self.on_created = None  # called with each log opened after start (first put)
        # Why this broker takes no puts now (a slave; a master with too few in-sync replicas),
        # or None; set by the worker from the supervisor's replication role.
        self.put_refusal: str | None = None

    # ---- configuration -------------------------------------------------------------------

    def topic_config(self, topic: str) -> TopicConfig | None:
        """The settings of a topic that may be published to, or None (MetaQ: the server does
        not accept it). Topics found on disk but no longer configured use the system values."""
        try:
            return self._topic_cache[topic]
        except KeyError:
            pass
        found = self.config.topic_config(topic) if is_valid_name(topic) else None
        if len(self._topic_cache) < 100_000:
            self._topic_cache[topic] = found
        return found

    def settings_for_existing(self, topic: str) -> TopicConfig:
        found = self.topic_config(topic)
        if found is not None:
            return found
        c = self.config
        return TopicConfig(name=topic, num_partitions=c.num_partitions,
                           unflush_threshold=c.unflush_threshold,
                           unflush_interval_ms=c.unflush_interval_ms, delete_policy=c.delete_policy,
                           delete_when=c.delete_when, data_path=c.data_path,
                           accept_publish=c.accept_publish, accept_subscribe=c.accept_subscribe,
                           stat=c.stat)

    def check_put(self, topic: str, partition: int) -> TopicConfig:
        """MetaQ's store creation rules for a put (errors carry MetaQ's detail texts)."""
        if self.put_refusal is not None:
            raise ServiceUnavailableError(self.put_refusal)
        settings = self.topic_config(topic)
        if settings is None:
            raise UnknownTopicError(f"The server do not accept topic {topic}")
        if not 0 <= partition < settings.num_partitions:
            raise InvalidPartitionError(f"wrong partition {partition}")
        return settings

    def data_paths(self) -> list[Path]:
        paths = {Path(self.config.data_path)}
        for settings in self.config.topic_configs.values():
            paths.add(Path(settings.data_path))
        return sorted(paths)

    def owns(self, topic: str, partition: int) -> bool:
        return owner_of(topic, partition, self.workers) == self.slot

    # ---- discovery ---------------------------------------------------------------------

    def existing(self) -> list[tuple[str, int, Path]]:
        """Every partition directory with data under any data path: (topic, partition, dir)."""
        found = []
        for root in self.data_paths():
            try:
                names = os.listdir(root)
            except FileNotFoundError:
                continue
            for name in names:
                parsed = files.parse_partition_dir_name(name)
                if parsed is None or not (root / name).is_dir():
                    continue
                topic, partition = parsed
                if Path(self.settings_for_existing(topic).data_path) != root:
                    continue  # belongs to another data path of this topic's configuration
                found.append((topic, partition, root / name))
        found.sort()
        return found

    def open_owned(self) -> list[PartitionLog]:
        """Open (recovering) every existing partition this worker owns."""
        for topic, partition, _ in self.existing():
            if self.owns(topic, partition):
                self.log_for(topic, partition, create=True)
        return list(self.logs.values())

    # ---- access -----------------------------------------------------------------------

    def log_for(self, topic: str, partition: int, *, create: bool) -> PartitionLog | None:
        """The owned log of a partition (created when ``create``), or None."""
        key = (topic, partition)
        found = self.logs.get(key)
        if found is not None or not create:
            return found
        assert self.owns(topic, partition)
        settings = self.settings_for_existing(topic)
        opened = PartitionLog(
            settings.data_path, topic, partition,
            segment_bytes_max=self.config.segment_bytes_max,
            flush_policy=FlushPolicy(settings.unflush_threshold, settings.unflush_interval_ms),
            ids=self.ids, batch_bytes_max=self.config.batch_bytes_max)
        self.logs[key] = opened
        if self.on_created is not None:
            self.on_created(opened)
        return opened

    def view(self, topic: str, partition: int) -> PartitionLog | PartitionReader | None:
        """Something to read a partition with, or None if it has no store (MetaQ 404)."""
        key = (topic, partition)
        owned = self.logs.get(key)
        if owned is not None:
            return owned
        reader = self._readers.get(key)
        if reader is not None:
            return reader
        if not is_valid_name(topic) or partition < 0 or self.owns(topic, partition):
            return None  # an owned partition without a log has no store
        try:
            reader = PartitionReader(self.settings_for_existing(topic).data_path, topic, partition)
        except FileNotFoundError:
            return None
        self._readers[key] = reader
        return reader

    def close(self) -> None:
        for owned in self.logs.values():
            try:
                owned.close()
            except Exception:
                log.exception("closing %s-%d failed", owned.topic, owned.partition)
        self.logs.clear()
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()


def with_data_path(config: Config, data_path: Path) -> Config:
    """A config whose data lives elsewhere (tests and benchmarks)."""
    topics = {name: replace(t, data_path=data_path) for name, t in config.topic_configs.items()}
    return replace(config, data_path=data_path, topic_configs=topics)
