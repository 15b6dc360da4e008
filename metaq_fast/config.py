"""server.ini -> a frozen, validated ``Config``, read the way MetaQ's MetaConfig reads it.

Allowed imports: the standard library, metaq_fast.errors / limits / names and
metaq_fast.config_values (the value syntax and the line reader).

File syntax (reference 9.1): ``[section]`` headers, ``key=value`` lines split at the first ``=``
with both sides trimmed (values may hold spaces), full-line comments starting with ``;`` or ``#``.
Comment lines may hold any bytes (MetaQ's own files have GBK comments); every other line must
be UTF-8. Section names are literal: ``[system]`` is required, ``[zookeeper]`` holds the ``zk.*``
keys, ``[topic=NAME]`` declares a topic, ``[slave]`` holds MetaQ's slave keys (config_slave.py;
MetaQ's loader ignored it, its metaslave plugin read the same keys), other sections are ignored. As in ini4j, a
repeated section continues the first one and a repeated key overrides the earlier value (both
logged as warnings). Backslashes are literal.

Values: integer keys take arithmetic over integers as MetaQ's Aviator evaluation allows
(``1024*1024``; ``+ - * /`` and parentheses, ``/`` truncating like Java); booleans are
``true``/``false`` in any case; ``key=`` (blank) means "not set". Unknown keys fail with MetaQ's
``Invalid config key:<key>,do you mean '<closest>'?``. Every error names file, section, key,
value, the accepted range and the line.

Deliberate differences from MetaQ:

- only ``brokerId`` (each broker of a cluster needs its own) and one ``[topic=NAME]`` are
  required: ``numPartitions``, ``unflushThreshold``, ``unflushInterval``, ``maxSegmentSize``
  and ``maxTransferSize``, which MetaQ's loader demands, take MetaConfig's field defaults when
  absent or blank, and a missing ``[zookeeper]`` section is an empty one (``zk.zkConnect`` may
  then come from the command line). An absent ``brokerId`` is reported as absent, a blank one
  as blank. MetaQ's own files load as before;
- ranges are checked at load: ``brokerId`` must be 0..1023 (MetaQ accepts 1111, the value of
  its own test files, and fails later in its id generator), ports 0..65535, sizes positive...;
- a relative ``dataPath``/``dataLogPath``/``appClassPath``/``logFile`` is resolved against the
  directory of the ini file, never the working directory, and ``~`` is expanded;
- ``maxSegmentSize`` may be as small as 1 byte (MetaQ's tests use tiny segments) and
  ``maxTransferSize`` must exceed the 20-byte record header;
- topic ``stat`` must be true/false (MetaQ reads anything but "true" as false);
- a ``[topic=pattern*]`` section's own settings apply to the topics it matches (MetaQ applies
  the system defaults to them); an exact section wins over patterns, and patterns are tried in
  name order;
- a topic section whose name is not a valid topic name (MetaQ's test topic ``!@#$%``) loads with
  a warning and matches no topic, as MetaQ rejects puts to it too;
- ``zk.zkEnable=false`` runs without ZooKeeper and needs no ``zk.zkConnect``;
- ``group.<name>`` filter classes are kept but not run (server-side filters are Java classes).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metaq_fast import limits, names
from metaq_fast.config_values import (
    DEFAULT_DELETE_POLICY,
    LONG_MAX,
    PARTITIONS_MAX,
    PORT_MAX,
    WORKERS_MAX,
    DeletePolicy,
    _check_override,
    _convert,
    _ints,
    _Key,
    _levenshtein,
    _read_ini,
    _Section,
)
from metaq_fast.config_slave import SlaveConfig, slave_from_entries
from metaq_fast.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_DELETE_WHEN = "0 0 6,18 * * ?"

_NAME_RE = names.NAME_PATTERN


# ---- names ----------------------------------------------------------------------------
# Topic and group names are validated in one place, names.py; re-exported here for callers.
is_valid_name = names.is_valid_name
validate_topic_name = names.validate_topic_name
validate_group_name = names.validate_group_name


def _is_valid_pattern(pattern: str) -> bool:
    """A configured topic section name: a valid name in which ``*`` may stand for any run."""
    rest = pattern.replace("*", "")
    return (
        0 < len(pattern) <= limits.NAME_CHARS_MAX
        and (rest == "" or bool(_NAME_RE.fullmatch(rest)))
        and pattern not in (".", "..")
    )


@functools.lru_cache(maxsize=256)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


# ---- value objects -------------------------------------------------------------------------


def _default_data_path() -> Path:
    return Path(os.path.expanduser("~/meta"))


def _default_thread_count() -> int:
    return 10 * (os.cpu_count() or 1)


@dataclass(frozen=True)
class ZkConfig:
    """``[zookeeper]`` (reference 9.3)."""

    enabled: bool = True  # zk.zkEnable
    connect: str = ""  # zk.zkConnect, host:port[,host:port...]
    session_timeout_ms: int = 30_000  # zk.zkSessionTimeoutMs
    connection_timeout_ms: int = 30_000  # zk.zkConnectionTimeoutMs
    sync_time_ms: int = 5_000  # zk.zkSyncTimeMs
    root: str = "/meta"  # zk.zkRoot


@dataclass(frozen=True)
class TopicConfig:
    """One ``[topic=NAME]`` section with the system values filled in (reference 9.4)."""

    name: str
    num_partitions: int = 1
    unflush_threshold: int = 1000
    unflush_interval_ms: int = 10_000
    delete_policy: DeletePolicy = DEFAULT_DELETE_POLICY
    delete_when: str = DEFAULT_DELETE_WHEN
    data_path: Path = field(default_factory=_default_data_path)
    accept_publish: bool = True
    accept_subscribe: bool = True
    stat: bool = False
    # group name -> Java filter class (kept for display; server-side filters are not run)
    group_filters: Mapping[str, str] = field(default_factory=dict, hash=False)
    # attributes set in the section itself; the others follow [system] (see with_overrides)
    explicit_keys: frozenset[str] = frozenset()
    # the configured ``*`` pattern when this config was matched through one, else None
    pattern: str | None = None

    @property
    def is_pattern(self) -> bool:
        return "*" in self.name

    @property
    def is_valid_name(self) -> bool:
        """False for sections such as MetaQ's ``[topic=!@#$%]``: loaded, but never matched."""
        return _is_valid_pattern(self.name)

    def matches(self, topic: str) -> bool:
        """Does this section configure ``topic`` (exact name, or ``*`` = any run of chars)?"""
        if not self.is_valid_name or not is_valid_name(topic):
            return False
        if not self.is_pattern:
            return topic == self.name
        return _pattern_regex(self.name).fullmatch(topic) is not None


@dataclass(frozen=True)
class Config:
    """The whole server.ini. Field comments name the MetaQ key; units are last in each name."""

    path: str = "<string>"
    raw_bytes: bytes = b""  # the file as read, for ``stats config``
    checksum: int = 0  # zlib.crc32 of raw_bytes, unmasked, as MetaQ's configFileChecksum
    # ---- [system], MetaQ's keys
    broker_id: int = 0  # brokerId
    host_name: str | None = None  # hostName; None = auto
    server_port: int = 8123  # serverPort; 0 = a free port
    dashboard_http_port: int = 8120  # dashboardHttpPort; 0 = a free port, -1 = disabled
    num_partitions: int = 1  # numPartitions
    data_path: Path = field(default_factory=_default_data_path)  # dataPath
    data_log_path: Path = field(default_factory=_default_data_path)  # dataLogPath
    app_class_path: Path | None = None  # appClassPath (unused: no Java filters)
    unflush_threshold: int = 1000  # unflushThreshold; <= 0 = group commit
    unflush_interval_ms: int = 10_000  # unflushInterval
    segment_bytes_max: int = 1024 * 1024 * 1024  # maxSegmentSize
    transfer_bytes_max: int = 1024 * 1024  # maxTransferSize
    get_process_thread_count: int = field(default_factory=_default_thread_count)  # unused
    put_process_thread_count: int = field(default_factory=_default_thread_count)  # unused
    delete_policy: DeletePolicy = DEFAULT_DELETE_POLICY  # deletePolicy
    delete_when: str = DEFAULT_DELETE_WHEN  # deleteWhen (Quartz cron, validated)
    quartz_thread_count: int = 5  # quartzThreadCount (unused)
    checkpoints_max: int = 3  # maxCheckpoints (transactions; unused)
    checkpoint_interval_ms: int = 3_600_000  # checkpointInterval (unused)
    tx_timeout_timer_capacity: int = 30_000  # maxTxTimeoutTimerCapacity (unused)
    flush_tx_log_at_commit: int = 1  # flushTxLogAtCommit (unused)
    tx_timeout_s_max: int = 60  # maxTxTimeoutInSeconds (unused)
    accept_publish: bool = True  # acceptPublish (default for topics)
    accept_subscribe: bool = True  # acceptSubscribe (default for topics)
    stat: bool = False  # stat (default for topics)
    update_consumer_offsets: bool = False  # updateConsumerOffsets
    load_message_stores_in_parallel: bool = False  # loadMessageStoresInParallel
    # ---- [system], our keys
    worker_count: int = 0  # workerCount; 0 = one per CPU core
    worker_timeout_ms: int = 30_000  # workerTimeoutMs: a worker silent this long is killed
    worker_start_timeout_ms: int = 600_000  # workerStartTimeoutMs: a worker's boot deadline
    listen_host: str = "127.0.0.1"  # listenHost; default hostName, else 127.0.0.1
    message_bytes_max: int = limits.MESSAGE_BYTES_MAX_DEFAULT  # maxMessageSize
    batch_bytes_max: int = limits.BATCH_BYTES_MAX_DEFAULT  # maxBatchBytes
    log_level: str = "INFO"  # logLevel
    log_file: Path | None = None  # logFile; None = stderr
    dashboard_host: str = "127.0.0.1"  # dashboardHost
    # replication (docs/architecture.md, "Replication"): copies (the master counted) that must
    # hold a put before it is acknowledged; 1 = asynchronous slaves
    min_in_sync_replicas: int = 1  # minInSyncReplicas
    replica_lag_max_ms: int = 10_000  # replicaLagMaxMs: a slave behind this long leaves the ISR
    unclean_takeover: bool = False  # uncleanTakeover: a slave out of the ISR may take over
    replica_fetch_bytes_max: int = 4 * 1024 * 1024  # replicaFetchMaxBytes: one fetch's answer
    # ---- the other sections
    zk: ZkConfig = field(default_factory=ZkConfig)
    topic_configs: Mapping[str, TopicConfig] = field(default_factory=dict, hash=False)
    slave: SlaveConfig | None = None  # [slave] or --slave: this broker is a slave of brokerId

    @property
    def topics(self) -> list[str]:
        """Configured topic section names, sorted (patterns and invalid names included)."""
        return sorted(self.topic_configs)

    @functools.cached_property
    def _patterns(self) -> tuple[TopicConfig, ...]:
        return tuple(
            self.topic_configs[name]
            for name in sorted(self.topic_configs)
            if self.topic_configs[name].is_pattern and self.topic_configs[name].is_valid_name
        )

    def topic_config(self, name: str) -> TopicConfig | None:
        """The configuration of topic ``name``, or None if no section accepts it.

        An exact section wins; else the first ``*`` pattern in name order that matches the whole
        name, returned under ``name`` with ``pattern`` set. Invalid names match nothing.
        """
        if not is_valid_name(name):
            return None
        exact = self.topic_configs.get(name)
        if exact is not None:
            return exact
        for candidate in self._patterns:
            if candidate.matches(name):
                return dataclasses.replace(candidate, name=name, pattern=candidate.name)
        return None

    def with_overrides(self, **fields: object) -> Config:
        """A copy with [system] fields replaced (attribute or MetaQ key names: ``server_port=0``
        or ``serverPort=0``), checked like the file. Topic values not set in their own section
        follow the new system values. Raises ConfigError."""
        changes: dict[str, object] = {}
        for name, value in fields.items():
            spec = _SYSTEM_KEYS.get(name) or _SYSTEM_BY_ATTR.get(name)
            if spec is None:
                changes[name] = value  # zk, topic_configs...; dataclasses.replace checks names
                continue
            try:
                changes[spec.attr] = _check_override(spec, value, _base_dir(self.path))
            except ValueError as exc:
                raise ConfigError(f"{self.path} override {name}={value!r}: {exc}") from None
        if "data_path" in changes and "data_log_path" not in changes:
            if self.data_log_path == self.data_path:  # MetaConfig.setDataPath does this too
                changes["data_log_path"] = changes["data_path"]
        new = dataclasses.replace(self, **changes)
        topics = {
            name: dataclasses.replace(
                topic,
                **{
                    attr: getattr(new, attr)
                    for attr in _TOPIC_ATTRS
                    if attr not in topic.explicit_keys
                },
            )
            for name, topic in new.topic_configs.items()
        }
        new = dataclasses.replace(new, topic_configs=topics)
        for key, problem in _cross_problems(vars(new), new.zk, zk_keys_present=True):
            raise ConfigError(f"{self.path} override {key}: {problem}")
        return new

    def summary(self) -> str:
        """A few lines for the startup log."""
        if self.unflush_threshold <= 0:
            flush = "group commit: fsync before every ack (unflushThreshold <= 0)"
        else:
            flush = (
                f"fsync after more than {self.unflush_threshold} unflushed messages "
                f"or every {self.unflush_interval_ms} ms"
            )
        if self.zk.enabled:
            zk = (
                f"zookeeper {self.zk.connect} root {self.zk.root}, "
                f"session timeout {self.zk.session_timeout_ms} ms"
            )
        else:
            zk = "zookeeper disabled (zk.zkEnable=false)"
        topics = ", ".join(
            f"{name}({self.topic_configs[name].num_partitions})" for name in self.topics
        )
        dashboard = (
            "disabled"
            if self.dashboard_http_port < 0
            else f"{self.dashboard_host}:{self.dashboard_http_port}"
        )
        return "\n".join(
            (
                f"config {self.path} (crc32 {self.checksum})",
                f"broker {self.broker_id} on {self.listen_host}:{self.server_port}, "
                f"hostName {self.host_name or '(auto)'}, "
                f"workers {self.worker_count or 'one per CPU core'}",
                f"data {self.data_path}",
                flush,
                f"segments {self.segment_bytes_max} B, transfers {self.transfer_bytes_max} B, "
                f"messages {self.message_bytes_max} B, batches {self.batch_bytes_max} B",
                f"retention {self.delete_policy} at cron '{self.delete_when}'",
                zk,
                f"topics {topics}",
                f"dashboard {dashboard}",
                f"log {self.log_level} to {self.log_file or 'stderr'}",
            )
        )


# ---- the keys ------------------------------------------------------------------------------


_METAQ_SYSTEM_KEYS = {
    "brokerId": _ints("broker_id", 0, limits.BROKER_ID_MAX, "message ids have 10 bits for it"),
    "hostName": _Key("host_name", "str"),
    "serverPort": _ints("server_port", 0, PORT_MAX, "0 picks a free port"),
    "dashboardHttpPort": _ints(
        "dashboard_http_port", -1, PORT_MAX, "0 picks a free port, -1 disables the dashboard"
    ),
    "numPartitions": _ints("num_partitions", 1, PARTITIONS_MAX),
    "dataPath": _Key("data_path", "path"),
    "dataLogPath": _Key("data_log_path", "path"),
    "appClassPath": _Key("app_class_path", "path"),
    "unflushThreshold": _ints("unflush_threshold", why="<= 0 means fsync before each ack"),
    "unflushInterval": _ints("unflush_interval_ms", 0),
    "maxSegmentSize": _ints("segment_bytes_max", 1),
    "maxTransferSize": _ints(
        "transfer_bytes_max",
        limits.RECORD_HEADER_BYTES + 1,
        why=f"a record header alone is {limits.RECORD_HEADER_BYTES} bytes",
    ),
    "getProcessThreadCount": _ints("get_process_thread_count", 1),
    "putProcessThreadCount": _ints("put_process_thread_count", 1),
    "deletePolicy": _Key("delete_policy", "policy"),
    "deleteWhen": _Key("delete_when", "cron"),
    "quartzThreadCount": _ints("quartz_thread_count", 1),
    "maxCheckpoints": _ints("checkpoints_max", 0),
    "checkpointInterval": _ints("checkpoint_interval_ms", 1, LONG_MAX),
    "maxTxTimeoutTimerCapacity": _ints("tx_timeout_timer_capacity", 1),
    "flushTxLogAtCommit": _ints(
        "flush_tx_log_at_commit", 0, 2, "0 = OS decides, 1 = at each commit, 2 = every second"
    ),
    "maxTxTimeoutInSeconds": _ints("tx_timeout_s_max", 1),
    "acceptPublish": _Key("accept_publish", "bool"),
    "acceptSubscribe": _Key("accept_subscribe", "bool"),
    "stat": _Key("stat", "bool"),
    "updateConsumerOffsets": _Key("update_consumer_offsets", "bool"),
    "loadMessageStoresInParallel": _Key("load_message_stores_in_parallel", "bool"),
}
_OUR_SYSTEM_KEYS = {
    "workerCount": _ints("worker_count", 0, WORKERS_MAX, "0 = one per CPU core"),
    "workerTimeoutMs": _ints("worker_timeout_ms", 1000, LONG_MAX,
                             "a worker whose event loop is silent this long is killed"),
    "workerStartTimeoutMs": _ints("worker_start_timeout_ms", 1000, LONG_MAX,
                                  "how long a worker may take to start, recovery included"),
    "listenHost": _Key("listen_host", "str"),
    "maxMessageSize": _ints("message_bytes_max", 1),
    "maxBatchBytes": _ints("batch_bytes_max", 1),
    "logLevel": _Key("log_level", "level"),
    "logFile": _Key("log_file", "path"),
    "dashboardHost": _Key("dashboard_host", "str"),
    "minInSyncReplicas": _ints("min_in_sync_replicas", 1, 64,
                               "copies that must hold a put before it is acknowledged"),
    "replicaLagMaxMs": _ints("replica_lag_max_ms", 100, LONG_MAX,
                             "a slave not caught up for this long leaves the in-sync set"),
    "uncleanTakeover": _Key("unclean_takeover", "bool"),
    "replicaFetchMaxBytes": _ints("replica_fetch_bytes_max", 1024, 1 << 30),
}
_SYSTEM_KEYS = {**_METAQ_SYSTEM_KEYS, **_OUR_SYSTEM_KEYS}
_SYSTEM_BY_ATTR = {spec.attr: spec for spec in _SYSTEM_KEYS.values()}
# MetaQ's loader also demands numPartitions, unflushThreshold, unflushInterval, maxSegmentSize
# and maxTransferSize; here they take MetaConfig's field defaults (the ``Config`` defaults).
_REQUIRED_SYSTEM_KEYS = ("brokerId",)
_DEFAULTED_ATTRS = ("num_partitions", "unflush_threshold", "unflush_interval_ms",
                    "segment_bytes_max", "transfer_bytes_max")
_CONFIG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Config)
                    if f.name in _DEFAULTED_ATTRS}
# MetaConfig fields that its loader accepts as keys but never reads.
_SYSTEM_IGNORED = frozenset(
    "serialVersionUID topics slaveConfig zkConfig topicConfigMap propertyChangeSupport "
    "lastModified path configFileChecksum log closedPartitionMap".split()
)
_ZK_KEYS = {
    "zk.zkEnable": _Key("enabled", "bool"),
    "zk.zkConnect": _Key("connect", "str"),
    "zk.zkSessionTimeoutMs": _ints("session_timeout_ms", 1),
    "zk.zkConnectionTimeoutMs": _ints("connection_timeout_ms", 1),
    "zk.zkSyncTimeMs": _ints("sync_time_ms", 0),
    "zk.zkRoot": _Key("root", "zkroot"),
}
# MetaQ also lets [zookeeper] name MetaConfig fields; they have no effect there.
_ZK_IGNORED = frozenset({"serialVersionUID", *_METAQ_SYSTEM_KEYS, *_SYSTEM_IGNORED})
_TOPIC_KEYS = {
    key: _METAQ_SYSTEM_KEYS[key]
    for key in (
        "numPartitions",
        "unflushThreshold",
        "unflushInterval",
        "deletePolicy",
        "deleteWhen",
        "dataPath",
        "acceptPublish",
        "acceptSubscribe",
        "stat",
    )
}
_TOPIC_ATTRS = tuple(spec.attr for spec in _TOPIC_KEYS.values())
_TOPIC_IGNORED = frozenset({"topic", "filterClassNames"})
_GROUP_PREFIX = "group."
_TOPIC_PREFIX = "topic="


# ---- loading -------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str], zk_overrides: Mapping[str, Any] | None = None,
                zk_defaults: Mapping[str, Any] | None = None) -> Config:
    """Read and validate the server.ini at ``path``; raises ConfigError. See ``parse_config``
    for the two mappings."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except OSError as exc:
        raise ConfigError(f"{os.fspath(path)}: cannot read: {exc.strerror}") from None
    return parse_config(raw, os.fspath(path), zk_overrides, zk_defaults)


def parse_config(text_bytes: bytes | str, path: str | os.PathLike[str] = "<string>",
                 zk_overrides: Mapping[str, Any] | None = None,
                 zk_defaults: Mapping[str, Any] | None = None) -> Config:
    """Parse server.ini bytes (a str is taken as UTF-8); ``path`` names the file in errors and
    anchors relative paths (for ``<string>``: the working directory). ``zk_overrides`` replace
    ``ZkConfig`` fields of the file and ``zk_defaults`` fill those it does not set (the command
    line's ``--zk-connect``, ``--no-zk``, ``--local``), before the file is checked as a whole, so
    a file without ``zk.zkConnect`` loads when the command line gives one. Raises ConfigError."""
    path = os.fspath(path)
    if isinstance(text_bytes, str):
        text_bytes = text_bytes.encode("utf-8")
    sections = _read_ini(text_bytes, path)
    if "system" not in sections:
        raise ConfigError(f"{path}: missing [system] section (it holds brokerId at least)")
    if "zookeeper" not in sections:  # MetaQ requires the section; its keys can come from flags
        sections["zookeeper"] = _Section("zookeeper", 0, {})
    topic_sections = [s for s in sections.values() if s.name.startswith(_TOPIC_PREFIX)]
    for section in sections.values():
        _check_keys(path, section)
    loader = _Loader(path, _base_dir(path))
    system = loader.system(sections["system"])
    zk = loader.zookeeper(sections["zookeeper"], zk_overrides or {}, zk_defaults or {})
    if not topic_sections:
        raise ConfigError(f"{path}: Empty topics list (add a [topic=NAME] section)")
    topics = {s.name[len(_TOPIC_PREFIX) :]: loader.topic(s, system) for s in topic_sections}
    zk_keys_present = bool(zk_overrides or zk_defaults) or any(
        key in _ZK_KEYS for key in sections["zookeeper"].entries)
    for key, problem in _cross_problems(system, zk, zk_keys_present):
        section = sections["zookeeper" if key.startswith("zk.") else "system"]
        raise loader.error(section, key, problem)
    slave = None
    if "slave" in sections:
        slave = slave_from_entries(sections["slave"].entries, f"{path} [slave]", _base_dir(path))
    for name, section in sections.items():
        if name not in ("system", "zookeeper", "slave") and not name.startswith(_TOPIC_PREFIX):
            log.info("%s: ignoring section [%s] (line %d)", path, name, section.line)
    return Config(
        slave=slave,
        path=path,
        raw_bytes=bytes(text_bytes),
        checksum=zlib.crc32(text_bytes),
        zk=zk,
        topic_configs=topics,
        **system,
    )


def _base_dir(path: str) -> Path:
    return Path(os.path.abspath(os.path.dirname(path) or "."))


def _check_keys(path: str, section: _Section) -> None:
    """MetaQ's key validation; warns about keys it accepts but ignores."""
    is_topic = section.name.startswith(_TOPIC_PREFIX)
    if section.name == "system":
        known, ignored = _SYSTEM_KEYS.keys(), _SYSTEM_IGNORED
    elif section.name == "zookeeper":
        known, ignored = _ZK_KEYS.keys(), _ZK_IGNORED
    elif is_topic:
        known, ignored = _TOPIC_KEYS.keys(), _TOPIC_IGNORED
    else:
        return
    for key, (value, line) in section.entries.items():
        if key in known or (is_topic and key.startswith(_GROUP_PREFIX)):
            continue
        if key in ignored:
            log.warning("%s line %d: [%s] %s has no effect", path, line, section.name, key)
            continue
        candidates = sorted({*known, *ignored})
        closest = min(candidates, key=lambda candidate: _levenshtein(key, candidate))
        raise ConfigError(
            f"{path} [{section.name}] {key}={value}: "
            f"Invalid config key:{key},do you mean '{closest}'? (line {line})"
        )


class _Loader:
    """Turns checked sections into field values; every error names file, section, key, line."""

    def __init__(self, path: str, base_dir: Path):
        self.path = path
        self.base_dir = base_dir

    def error(self, section: _Section, key: str, problem: str) -> ConfigError:
        entry = section.entries.get(key)
        if entry is None:
            return ConfigError(f"{self.path} [{section.name}] {key}: {problem}")
        value, line = entry
        return ConfigError(f"{self.path} [{section.name}] {key}={value}: {problem} (line {line})")

    def values(self, section: _Section, specs: Mapping[str, _Key]) -> dict[str, Any]:
        """Attribute -> value for every key of ``specs`` set (non-blank) in ``section``."""
        result: dict[str, Any] = {}
        for key, (value, _) in section.entries.items():
            spec = specs.get(key)
            if spec is None or value == "":
                continue
            try:
                result[spec.attr] = _convert(spec, value, self.base_dir)
            except ValueError as exc:
                raise self.error(section, key, str(exc)) from None
        return result

    def system(self, section: _Section) -> dict[str, Any]:
        for key in _REQUIRED_SYSTEM_KEYS:
            if key not in section.entries:
                raise self.error(section, key, f"{key} is not set (required: each broker of a "
                                 f"cluster has its own id; add {key}=N to [system])")
            if section.entries[key][0] == "":
                raise self.error(section, key, f"Blank value for {key}")
        values = self.values(section, _SYSTEM_KEYS)
        for attr in _DEFAULTED_ATTRS:  # MetaConfig's field defaults, where MetaQ demanded a value
            values.setdefault(attr, _CONFIG_DEFAULTS[attr])
        values.setdefault("data_path", _default_data_path())
        values.setdefault("data_log_path", values["data_path"])
        if "app_class_path" not in values and (self.base_dir.parent / "provided").is_dir():
            values["app_class_path"] = self.base_dir.parent / "provided"
        values.setdefault("listen_host", values.get("host_name") or "127.0.0.1")
        values.setdefault(
            "message_bytes_max",
            min(
                limits.MESSAGE_BYTES_MAX_DEFAULT,
                values["transfer_bytes_max"] - limits.RECORD_HEADER_BYTES,
            ),
        )
        return values

    def zookeeper(self, section: _Section, overrides: Mapping[str, Any],
                  defaults: Mapping[str, Any]) -> ZkConfig:
        return ZkConfig(**{**defaults, **self.values(section, _ZK_KEYS), **overrides})

    def topic(self, section: _Section, system: Mapping[str, Any]) -> TopicConfig:
        name = section.name[len(_TOPIC_PREFIX) :]
        explicit = self.values(section, _TOPIC_KEYS)
        groups = {
            key[len(_GROUP_PREFIX) :]: value
            for key, (value, _) in section.entries.items()
            if key.startswith(_GROUP_PREFIX) and value
        }
        if groups:
            log.warning(
                "%s [%s]: server-side consumer filters are not supported; ignoring %s",
                self.path, section.name, ", ".join(f"group.{group}" for group in groups),
            )
        if not _is_valid_pattern(name):
            log.warning(
                "%s [%s] (line %d): %r is not a valid topic name ([A-Za-z0-9._-], '*' as a "
                "wildcard); the section loads but accepts no topic",
                self.path, section.name, section.line, name,
            )
        inherited = {attr: system[attr] for attr in _TOPIC_ATTRS if attr in system}
        return TopicConfig(
            name=name,
            **{**inherited, **explicit},
            group_filters=groups,
            explicit_keys=frozenset(explicit),
        )


def _cross_problems(
    values: Mapping[str, Any], zk: ZkConfig, zk_keys_present: bool
) -> Iterable[tuple[str, str]]:
    """(MetaQ key, problem) for rules that involve more than one value."""
    transfer = values["transfer_bytes_max"]
    message = values["message_bytes_max"]
    batch = values.get("batch_bytes_max", limits.BATCH_BYTES_MAX_DEFAULT)
    if message > transfer - limits.RECORD_HEADER_BYTES:
        yield "maxMessageSize", (
            f"must be <= maxTransferSize - {limits.RECORD_HEADER_BYTES} = "
            f"{transfer - limits.RECORD_HEADER_BYTES} (a get answer holds at most "
            "maxTransferSize bytes, record header included)"
        )
    one_record = message + limits.RECORD_HEADER_BYTES + 4  # header, and its putm index entry
    if batch < one_record:
        yield "maxBatchBytes", (f"must be >= maxMessageSize + {one_record - message} = {one_record} "
                                "(a batch holds one record at least)")
    if message + limits.RECORD_HEADER_BYTES > limits.CLIENT_RECORD_DATA_BYTES_MAX:
        log.warning(
            "maxMessageSize=%d: MetaQ's Java clients cannot read records above %d bytes",
            message, limits.CLIENT_RECORD_DATA_BYTES_MAX,
        )
    if zk.enabled and not zk.connect:
        if not zk_keys_present:
            yield "zk.zkConnect", (
                "Null zookeeper config (no zk.* key in [zookeeper]; set zk.zkConnect or give "
                "--zk-connect, or zk.zkEnable=false (--no-zk) to run without ZooKeeper)"
            )
        else:
            yield "zk.zkConnect", (
                "Empty zookeeper servers (set zk.zkConnect=host:port, "
                "or zk.zkEnable=false to run without ZooKeeper)"
            )
