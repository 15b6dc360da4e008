"""MetaQ's ZooKeeper tree under a root, and the formats of its node data. Pure functions.

Imports: the standard library, ``metaq_fast.errors`` and ``metaq_fast.limits`` only (no kazoo, no
sockets), so broker, client and tools share one definition of the layout. Reference:
``metaq-protocol.md`` sections 6 and 8 (MetaQ's ``MetaZookeeper.java``).

Tree (root ``/meta``, the default ``zk.zkRoot``)::

    /meta/brokers/ids/<brokerId>                          persistent; master URL or ""
    /meta/brokers/ids/<brokerId>/master                   ephemeral; meta://host:port
    /meta/brokers/ids/<brokerId>/slave<slaveId>           ephemeral; meta://host:port
    /meta/brokers/ids/<brokerId>/master_config_checksum   ephemeral; decimal CRC32
    /meta/brokers/topics/<topic>/<brokerId>-m             ephemeral; decimal partition count
    /meta/brokers/topics-pub/<topic>/<brokerId>-m         ephemeral; {"numParts":N,"broker":"0-m"}
    /meta/brokers/topics-sub/<topic>/<brokerId>-m         ephemeral; same JSON
        (slaves use <brokerId>-s<slaveId> in the three topic trees)
    /meta/consumers/<group>/ids/<consumerId>              ephemeral; "topicA,topicB"
    /meta/consumers/<group>/owners/<topic>/<b>-<p>        ephemeral; owning consumerId
    /meta/consumers/<group>/offsets/<topic>/<b>-<p>       persistent; "<msgId>-<offset>"
    /meta/replication/<brokerId>                          persistent; ours: master epoch, leader
                                                          and in-sync replicas (replica_state.py)

Conventions: path builders return ``str``; ``encode_*`` return the node data as UTF-8 ``bytes``
(what kazoo's ``create``/``set`` take); ``parse_*`` accept ``bytes`` or ``str``. Malformed input
raises ``InvalidNameError`` (bad topic, group or node name) or another ``ValueError`` subclass
(``InvalidArgumentError`` for numbers out of range, ``ValueError`` for unparsable data), never
anything else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from collections.abc import Iterable

from metaq_fast.errors import InvalidArgumentError, InvalidNameError
from metaq_fast import names

DEFAULT_ROOT = "/meta"

BROKERS_NODE = "brokers"
IDS_NODE = "ids"
MASTER_NODE = "master"
SLAVE_NODE_PREFIX = "slave"
MASTER_CONFIG_CHECKSUM_NODE = "master_config_checksum"
TOPICS_NODE = "topics"
TOPICS_PUB_NODE = "topics-pub"
TOPICS_SUB_NODE = "topics-sub"
CONSUMERS_NODE = "consumers"
OWNERS_NODE = "owners"
OFFSETS_NODE = "offsets"

BROKER_URL_SCHEME = "meta://"
# MetaQ's msgId when the id of the last consumed message is unknown (also for legacy offsets).
UNKNOWN_MSG_ID = -1

_JAVA_LONG_MIN = -(1 << 63)
_JAVA_LONG_MAX = (1 << 63) - 1
_JAVA_INT_MAX = (1 << 31) - 1

_DECIMAL_RE = re.compile(r"[0-9]+")
_JAVA_LONG_RE = re.compile(r"[+-]?[0-9]+")
_BROKER_CHILD_RE = re.compile(r"([0-9]+)-(?:(m)|s([0-9]+))")
_PARTITION_RE = re.compile(r"([0-9]+)-([0-9]+)")
_SLAVE_NODE_RE = re.compile(SLAVE_NODE_PREFIX + r"([0-9]+)")


# ---- names and numbers ---------------------------------------------------------------------


validate_name = names.validate_name  # the project's one name rule (names.py)


def _bad_node_char(c: str) -> bool:
    # ZooKeeper's PathUtils.validatePath; characters beyond the BMP are surrogate pairs in Java,
    # which it rejects too.
    o = ord(c)
    return o < 0x20 or 0x7F <= o <= 0x9F or 0xD800 <= o <= 0xF8FF or o >= 0xFFF0


def validate_node_name(name: object, kind: str = "node") -> str:
    """Return ``name`` if it can be one ZooKeeper path component, else ``InvalidNameError``.

    Used for names other clients choose (consumer ids): anything but empty, ``.``, ``..``, a
    ``/`` or a control character (ZooKeeper's own ``PathUtils`` rules).
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"{kind} must be a string, got {type(name).__name__}")
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or any(_bad_node_char(c) for c in name)
    ):
        raise InvalidNameError(f"invalid {kind} {name[:64]!r} for a ZooKeeper path component")
    return name


def _is_int_in(value: object, minimum: int, maximum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= maximum


def _non_negative_int(value: object, what: str, maximum: int = _JAVA_INT_MAX) -> int:
    if not _is_int_in(value, 0, maximum):
        raise InvalidArgumentError(f"{what} must be an integer in 0..{maximum}, got {value!r}")
    return value


def _broker_id(value: object) -> int:
    return _non_negative_int(value, "broker id")


def _slave_id(value: object) -> int:
    return _non_negative_int(value, "slave id")


def normalize_root(root: str = DEFAULT_ROOT) -> str:
    """MetaQ's root normalisation: add a leading ``/``, drop trailing ``/``.

    ``"meta"`` and ``"/meta/"`` give ``"/meta"``; ``"/"`` (and ``""``) give ``""``, i.e. the
    tree starts at ZooKeeper's top (``/brokers/...``), as in MetaQ.

    Raises:
        InvalidNameError: an empty, ``.``/``..`` or otherwise invalid component (``/a//b``).
    """
    if not isinstance(root, str):
        raise InvalidNameError(f"zk root must be a string, got {type(root).__name__}")
    stripped = root.strip("/")
    if not stripped:
        return ""
    for part in stripped.split("/"):
        validate_node_name(part, f"component of zk root {root[:64]!r}")
    return "/" + stripped


def _join(root: str, *parts: str) -> str:
    return normalize_root(root) + "/" + "/".join(parts)


# ---- brokers -------------------------------------------------------------------------------


def brokers_path(root: str = DEFAULT_ROOT) -> str:
    return _join(root, BROKERS_NODE)


def broker_ids_path(root: str = DEFAULT_ROOT) -> str:
    """``/meta/brokers/ids``."""
    return _join(root, BROKERS_NODE, IDS_NODE)


def broker_id_path(root: str, broker_id: int) -> str:
    """``/meta/brokers/ids/<id>`` (persistent; holds the master URL for old clients)."""
    return _join(root, BROKERS_NODE, IDS_NODE, str(_broker_id(broker_id)))


def broker_master_path(root: str, broker_id: int) -> str:
    """``/meta/brokers/ids/<id>/master`` (ephemeral; ``meta://host:port``)."""
    return broker_id_path(root, broker_id) + "/" + MASTER_NODE


def broker_slave_path(root: str, broker_id: int, slave_id: int) -> str:
    """``/meta/brokers/ids/<id>/slave<slaveId>`` (ephemeral)."""
    return broker_id_path(root, broker_id) + f"/{SLAVE_NODE_PREFIX}{_slave_id(slave_id)}"


def master_config_checksum_path(root: str, broker_id: int) -> str:
    """``/meta/brokers/ids/<id>/master_config_checksum`` (ephemeral; decimal CRC32)."""
    return broker_id_path(root, broker_id) + "/" + MASTER_CONFIG_CHECKSUM_NODE


def replication_state_path(root: str, broker_id: int) -> str:
    """``/meta/replication/<id>``: a broker id's master epoch and in-sync set (not MetaQ's)."""
    return _join(root, "replication", str(_broker_id(broker_id)))


def parse_slave_node_name(name: str) -> int:
    """``"slave3"`` -> 3; a child of ``ids/<id>`` that is not a slave node -> ``ValueError``."""
    m = _SLAVE_NODE_RE.fullmatch(name) if isinstance(name, str) else None
    if m is None:
        raise ValueError(f"not a slave node name: {str(name)[:64]!r}")
    return _slave_id(int(m.group(1)))


def broker_child_name(broker_id: int, slave_id: int | None = None) -> str:
    """``"<id>-m"`` for a master, ``"<id>-s<slaveId>"`` for a slave (topic-tree child names)."""
    if slave_id is None:
        return f"{_broker_id(broker_id)}-m"
    return f"{_broker_id(broker_id)}-s{_slave_id(slave_id)}"


def parse_broker_child_name(name: str) -> tuple[int, bool, int | None]:
    """``"0-m"`` -> ``(0, True, None)``; ``"0-s1"`` -> ``(0, False, 1)``.

    Raises:
        ValueError: any other form.
    """
    m = _BROKER_CHILD_RE.fullmatch(name) if isinstance(name, str) else None
    if m is None:
        raise ValueError(f"bad broker node name {str(name)[:64]!r}: expected <id>-m or <id>-s<n>")
    broker_id = _broker_id(int(m.group(1)))
    if m.group(2):
        return broker_id, True, None
    return broker_id, False, _slave_id(int(m.group(3)))


def _topic_tree_path(root: str, tree: str, topic: str | None) -> str:
    if topic is None:
        return _join(root, BROKERS_NODE, tree)
    return _join(root, BROKERS_NODE, tree, validate_name(topic, "topic"))


def topics_path(root: str = DEFAULT_ROOT, topic: str | None = None) -> str:
    """``/meta/brokers/topics`` or, with a topic, ``/meta/brokers/topics/<topic>`` (legacy)."""
    return _topic_tree_path(root, TOPICS_NODE, topic)


def topic_path(root: str, topic: str) -> str:
    """``/meta/brokers/topics/<topic>`` (the legacy tree read by python/ruby/.NET clients)."""
    return _topic_tree_path(root, TOPICS_NODE, validate_name(topic, "topic"))


def topic_broker_path(root: str, topic: str, broker_id: int, slave_id: int | None = None) -> str:
    """``/meta/brokers/topics/<topic>/<id>-m`` (legacy; data = decimal partition count)."""
    return topic_path(root, topic) + "/" + broker_child_name(broker_id, slave_id)


def topics_pub_path(root: str = DEFAULT_ROOT, topic: str | None = None) -> str:
    """``/meta/brokers/topics-pub`` or ``/meta/brokers/topics-pub/<topic>``."""
    return _topic_tree_path(root, TOPICS_PUB_NODE, topic)


def topics_pub_broker_path(
    root: str, topic: str, broker_id: int, slave_id: int | None = None
) -> str:
    """``/meta/brokers/topics-pub/<topic>/<id>-m`` (data = topic-broker JSON)."""
    return topics_pub_path(root, validate_name(topic, "topic")) + "/" + broker_child_name(
        broker_id, slave_id
    )


def topics_sub_path(root: str = DEFAULT_ROOT, topic: str | None = None) -> str:
    """``/meta/brokers/topics-sub`` or ``/meta/brokers/topics-sub/<topic>``."""
    return _topic_tree_path(root, TOPICS_SUB_NODE, topic)


def topics_sub_broker_path(
    root: str, topic: str, broker_id: int, slave_id: int | None = None
) -> str:
    """``/meta/brokers/topics-sub/<topic>/<id>-m`` (data = topic-broker JSON)."""
    return topics_sub_path(root, validate_name(topic, "topic")) + "/" + broker_child_name(
        broker_id, slave_id
    )


# ---- consumers -----------------------------------------------------------------------------


def consumers_path(root: str = DEFAULT_ROOT) -> str:
    return _join(root, CONSUMERS_NODE)


def consumer_group_path(root: str, group: str) -> str:
    """``/meta/consumers/<group>``."""
    return _join(root, CONSUMERS_NODE, validate_name(group, "group"))


def consumer_ids_path(root: str, group: str) -> str:
    """``/meta/consumers/<group>/ids``."""
    return consumer_group_path(root, group) + "/" + IDS_NODE


def consumer_id_path(root: str, group: str, consumer_id: str) -> str:
    """``/meta/consumers/<group>/ids/<consumerId>`` (ephemeral; data = topics joined by ``,``)."""
    return consumer_ids_path(root, group) + "/" + validate_node_name(consumer_id, "consumer id")


def owners_path(root: str, group: str) -> str:
    """``/meta/consumers/<group>/owners``."""
    return consumer_group_path(root, group) + "/" + OWNERS_NODE


def owners_topic_path(root: str, group: str, topic: str) -> str:
    """``/meta/consumers/<group>/owners/<topic>``."""
    return owners_path(root, group) + "/" + validate_name(topic, "topic")


def owner_path(root: str, group: str, topic: str, partition_str: str) -> str:
    """``/meta/consumers/<group>/owners/<topic>/<brokerId>-<partition>`` (data = consumerId)."""
    parse_partition_string(partition_str)
    return owners_topic_path(root, group, topic) + "/" + partition_str


def offsets_path(root: str, group: str) -> str:
    """``/meta/consumers/<group>/offsets``."""
    return consumer_group_path(root, group) + "/" + OFFSETS_NODE


def offsets_topic_path(root: str, group: str, topic: str) -> str:
    """``/meta/consumers/<group>/offsets/<topic>``."""
    return offsets_path(root, group) + "/" + validate_name(topic, "topic")


def offset_path(root: str, group: str, topic: str, partition_str: str) -> str:
    """``/meta/consumers/<group>/offsets/<topic>/<brokerId>-<partition>`` (``<msgId>-<offset>``)."""
    parse_partition_string(partition_str)
    return offsets_topic_path(root, group, topic) + "/" + partition_str


def consumer_id(group: str, id_part: str) -> str:
    """MetaQ's consumer id ``<group>_<id>`` (``id`` = configured id or ``<ip>-<pid>-<uuid>``)."""
    validate_name(group, "group")
    validate_node_name(id_part, "consumer id part")
    return validate_node_name(f"{group}_{id_part}", "consumer id")


# ---- partitions ----------------------------------------------------------------------------


def partition_string(broker_id: int, partition: int) -> str:
    """``"<brokerId>-<partition>"``, MetaQ's ``Partition.toString``."""
    return f"{_broker_id(broker_id)}-{_non_negative_int(partition, 'partition')}"


def parse_partition_string(s: str) -> tuple[int, int]:
    """``"0-3"`` -> ``(0, 3)``.

    Raises:
        ValueError: not ``<digits>-<digits>`` (or a number beyond Java's int).
    """
    m = _PARTITION_RE.fullmatch(s) if isinstance(s, str) else None
    if m is None:
        raise ValueError(
            f"bad partition string {str(s)[:64]!r}: expected <brokerId>-<partition>"
        )
    return _broker_id(int(m.group(1))), _non_negative_int(int(m.group(2)), "partition")


# ---- node data -----------------------------------------------------------------------------


def encode_text(text: str) -> bytes:
    """Node data as MetaQ writes it: the string's UTF-8 bytes."""
    return text.encode("utf-8")


def decode_text(data: bytes | bytearray | memoryview | str | None) -> str:
    """Node data as a string (MetaQ's ``StringSerializer``).

    Raises:
        ValueError: ``None`` (a node without data) or bytes that are not UTF-8.
    """
    if isinstance(data, str):
        return data
    if data is None:
        raise ValueError("node has no data")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"node data must be bytes or str, got {type(data).__name__}")
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"node data is not UTF-8: {bytes(data)[:64]!r}") from e


def _parse_java_long(text: str, what: str) -> int:
    # Stricter than Python's int(): no whitespace, underscores or non-ASCII digits (Java's
    # Long.parseLong rejects those too), and the Java long range.
    if not _JAVA_LONG_RE.fullmatch(text):
        raise ValueError(f"bad {what} {text[:64]!r}: expected a decimal integer")
    value = int(text)
    if not _JAVA_LONG_MIN <= value <= _JAVA_LONG_MAX:
        raise ValueError(f"bad {what} {text[:64]!r}: outside Java's long range")
    return value


def broker_url(host: str, port: int) -> str:
    """``"meta://host:port"``; an IPv6 host goes in brackets (MetaQ's ``Broker.getZKString``)."""
    if not isinstance(host, str) or not host or any(c in host for c in "/?# \t\r\n"):
        raise InvalidArgumentError(f"bad broker host {str(host)[:64]!r}")
    _non_negative_int(port, "broker port", 65535)
    if port == 0:
        raise InvalidArgumentError("broker port must be 1..65535, got 0")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{BROKER_URL_SCHEME}{host}:{port}"


def encode_broker_url(host: str, port: int) -> bytes:
    """Data of ``ids/<id>/master``, ``ids/<id>/slave<n>`` and ``ids/<id>``."""
    return encode_text(broker_url(host, port))


def parse_broker_url(data: bytes | str) -> tuple[str, int]:
    """``"meta://host:port"`` -> ``(host, port)``; IPv6 hosts come back without brackets.

    A query such as ``?slaveId=1`` (MetaQ readers append it internally) is ignored.

    Raises:
        ValueError: not a ``meta://host:port`` URL (including the empty data of a blanked
            ``ids/<id>`` node).
    """
    text = decode_text(data)
    if not text.startswith(BROKER_URL_SCHEME):
        raise ValueError(f"bad broker url {text[:64]!r}: expected meta://host:port")
    rest = text[len(BROKER_URL_SCHEME):].split("?", 1)[0].rstrip("/")
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0 or rest[close + 1 : close + 2] != ":":
            raise ValueError(f"bad broker url {text[:64]!r}: expected meta://[ipv6]:port")
        host, port_text = rest[1:close], rest[close + 2 :]
    else:
        host, sep, port_text = rest.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"bad broker url {text[:64]!r}: expected meta://host:port")
    if not host or any(c in host for c in "/#[] \t\r\n"):
        raise ValueError(f"bad broker url {text[:64]!r}: bad host")
    if not _DECIMAL_RE.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"bad broker url {text[:64]!r}: port must be 1..65535")
    return host, int(port_text)


def encode_topic_broker_json(num_parts: int, broker_id: int, slave_id: int | None = None) -> bytes:
    """Data of ``topics-pub/<t>/<id>-m`` and ``topics-sub/...``: ``{"numParts":N,"broker":"0-m"}``.

    Exactly these two properties: Java readers reject unknown ones (Jackson defaults).
    """
    _non_negative_int(num_parts, "numParts")
    if num_parts == 0:
        raise InvalidArgumentError("numParts must be at least 1, got 0")
    body = {"numParts": num_parts, "broker": broker_child_name(broker_id, slave_id)}
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def parse_topic_broker_json(data: bytes | str) -> tuple[int, str]:
    """Topic-broker JSON -> ``(num_parts, broker)``, e.g. ``(2, "0-m")``.

    Key order and whitespace do not matter; other properties are ignored.

    Raises:
        ValueError: not JSON, not an object, ``numParts`` not a non-negative integer, or
            ``broker`` not ``<id>-m`` / ``<id>-s<n>``.
    """
    text = decode_text(data)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"bad topic-broker JSON {text[:64]!r}: {e}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"bad topic-broker JSON {text[:64]!r}: expected an object")
    num_parts = obj.get("numParts")
    broker = obj.get("broker")
    if not _is_int_in(num_parts, 0, _JAVA_INT_MAX):
        raise ValueError(f"bad topic-broker JSON {text[:64]!r}: numParts must be an integer >= 0")
    if not isinstance(broker, str):
        raise ValueError(f"bad topic-broker JSON {text[:64]!r}: broker must be a string")
    parse_broker_child_name(broker)
    return num_parts, broker


def encode_num_parts(num_parts: int) -> bytes:
    """Data of the legacy ``topics/<t>/<id>-m`` node: the decimal partition count."""
    _non_negative_int(num_parts, "numParts")
    if num_parts == 0:
        raise InvalidArgumentError("numParts must be at least 1, got 0")
    return str(num_parts).encode("ascii")


def parse_num_parts(data: bytes | str) -> int:
    """Legacy ``topics/<t>/<id>-m`` data -> partition count."""
    text = decode_text(data)
    if not _DECIMAL_RE.fullmatch(text) or int(text) > _JAVA_INT_MAX:
        raise ValueError(f"bad partition count {text[:64]!r}: expected a decimal integer")
    return int(text)


def encode_offset(msg_id: int, offset: int) -> bytes:
    """Data of ``offsets/<t>/<b>-<p>``: ``"<msgId>-<offset>"``; unknown ``msg_id`` is -1."""
    for value, what in ((msg_id, "msgId"), (offset, "offset")):
        if not _is_int_in(value, _JAVA_LONG_MIN, _JAVA_LONG_MAX):
            raise InvalidArgumentError(f"{what} must be a Java long, got {value!r}")
    if offset < 0:
        raise InvalidArgumentError(f"offset must be >= 0, got {offset}")
    return f"{msg_id}-{offset}".encode("ascii")


def parse_offset(data: bytes | str) -> tuple[int, int]:
    """Offset node data -> ``(msg_id, offset)``, exactly as MetaQ's ``ZkOffsetStorage.load``.

    Splits at the *last* ``-``: if it is at index > 0, ``msgId`` is the left part and the offset
    the right (``"-1-1234"`` -> ``(-1, 1234)``); otherwise the whole string is a legacy plain
    offset and ``msg_id`` is -1 (``"1234"`` -> ``(-1, 1234)``; ``"-5"`` -> ``(-1, -5)`` as
    Java's ``Long.parseLong`` would give).

    Raises:
        ValueError: an empty or non-numeric part, or a number beyond Java's long.
    """
    text = decode_text(data)
    index = text.rfind("-")
    if index > 0:
        return (
            _parse_java_long(text[:index], "msgId in offset data"),
            _parse_java_long(text[index + 1 :], "offset in offset data"),
        )
    return UNKNOWN_MSG_ID, _parse_java_long(text, "offset data")


def encode_consumer_topics(topics: Iterable[str]) -> bytes:
    """Data of ``consumers/<g>/ids/<consumerId>``: topic names joined by ``,`` (no spaces)."""
    if isinstance(topics, str):
        raise InvalidArgumentError("topics must be a list of names, not one string")
    return ",".join(validate_name(t, "topic") for t in topics).encode("utf-8")


def parse_consumer_topics(data: bytes | str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]`` in stored order; empty items and surrounding spaces dropped."""
    return [t.strip() for t in decode_text(data).split(",") if t.strip()]


def encode_config_checksum(checksum: int) -> bytes:
    """Data of ``master_config_checksum``: the unmasked CRC32 in decimal."""
    _non_negative_int(checksum, "config checksum", 0xFFFFFFFF)
    return str(checksum).encode("ascii")


def parse_config_checksum(data: bytes | str) -> int:
    """``master_config_checksum`` data -> int (any Java long is accepted)."""
    return _parse_java_long(decode_text(data), "config checksum")


# ---- the partition value type (clients order producer partitions by it) ------------------


@dataclass(frozen=True, order=True, slots=True)
class Partition:
    """One partition of a topic on one broker; orders numerically by ``(broker_id, partition)``.

    ``str(p)`` is MetaQ's ``"<brokerId>-<partition>"`` (the consumer-side partition string and
    the name of owner and offset nodes); sort those strings, not ``Partition`` objects, where
    MetaQ sorts as strings (consumer balancing).
    """

    broker_id: int
    partition: int

    def __post_init__(self) -> None:
        partition_string(self.broker_id, self.partition)  # validates both numbers

    def __str__(self) -> str:
        return f"{self.broker_id}-{self.partition}"

    @classmethod
    def parse(cls, text: str) -> "Partition":
        """``"0-3"`` -> ``Partition(0, 3)``.

        Raises:
            ValueError: not ``<digits>-<digits>`` (``parse_partition_string``).
        """
        broker_id, partition = parse_partition_string(text)
        return cls(broker_id, partition)


def topic_nodes(root: str, topic: str, broker_id: int, num_partitions: int | None,
                accept_publish: bool = True, accept_subscribe: bool = True,
                slave_id: int | None = None) -> list[tuple[str, bytes | None]]:
    """The three nodes a master (``slave_id`` None) or slave broker keeps for ``topic``
    (``topics``, ``topics-pub``, ``topics-sub``) and their data; None where the node must not
    exist (``num_partitions`` None: the broker does not publish the topic at all)."""
    legacy = body = None
    if num_partitions is not None:
        legacy = encode_num_parts(num_partitions)
        body = encode_topic_broker_json(num_partitions, broker_id, slave_id)
    return [
        (topic_broker_path(root, topic, broker_id, slave_id), legacy),
        (topics_pub_broker_path(root, topic, broker_id, slave_id), body if accept_publish else None),
        (topics_sub_broker_path(root, topic, broker_id, slave_id),
         body if accept_subscribe else None),
    ]
