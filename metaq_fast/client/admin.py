"""``metaq-admin``'s logic: read MetaQ's ZooKeeper tree, ask brokers, change group offsets.

Imports: stdlib, kazoo, metaq_fast.errors / message / protocol / zk (paths, session) and
client.connection. Argument parsing lives in ``cli.py``; this module returns plain data (dicts
and lists, ready for ``--json``); ``admin_render.py`` turns it into text tables.

What each operation reads (reference sections 6 and 8.5):

* brokers: ``brokers/ids/<id>/master`` and ``slave<n>``;
* topics and partitions: ``brokers/topics``, ``topics-pub`` and ``topics-sub``; a partition's
  first and end offsets come from its master broker (``offset`` with 0 and with Long.MAX);
* a group: ``consumers/<group>/ids`` (members), ``owners`` and ``offsets``. Lag in bytes is
  ``end offset - committed offset`` (MetaQ's offsets are byte positions; with no committed
  offset, from the first offset, where a new consumer starts by default). Lag in messages is
  counted by reading the records in between from the broker (``getm`` on metaq_fast brokers,
  ``get`` and a decode elsewhere), up to ``count_bytes_max`` per partition; beyond that it is
  reported as unknown (None) rather than spending minutes reading.
* offset reset writes ``offsets/<topic>/<brokerId>-<partition>`` = ``-1-<offset>`` (msgId
  unknown, as MetaQ's tools write it), only while the group has no live member unless forced;
  a given offset must lie between the first and end offsets and on a record boundary.
* peek: ``get`` from an offset, records decoded and checked (CRC) as a consumer would.
* close and open partitions: the broker's ``admin closePartitions`` / ``openPartitions`` verbs.

Errors are ``AdminError`` subclasses whose ``exit_code`` the command returns:
0 done, 1 a broker refused or failed, 2 bad arguments, 3 ZooKeeper unreachable, 4 unknown
group / topic / broker / partition, 5 refused because the group has live members, 6 a broker
unreachable.
"""

from __future__ import annotations

import logging

from kazoo.exceptions import KazooException, NoNodeError

from ..errors import (
    BAD_REQUEST,
    FORBIDDEN,
    MOVED,
    NOT_FOUND,
    SUCCESS,
    BrokerConnectionError,
    CorruptRecordError,
    MetaqError,
    RequestTimeoutError,
    ZooKeeperError,
)
from ..message import MessageSet
from ..names import validate_group_name, validate_topic_name
from ..protocol import ResultReply, ValueReply, ValuesReply
from ..zk import paths
from ..zk.session import open_client
from .connection import ConnectionPool, next_opaque

log = logging.getLogger(__name__)

LONG_MAX = 2**63 - 1
ADMIN_GROUP = "metaq-admin"  # the group token of our get/offset requests (never committed)
CHUNK_BYTES = 1024 * 1024  # bytes asked for per get while counting or peeking
CHUNK_BYTES_MAX = 64 * 1024 * 1024  # a record larger than this is not read
COUNT_BYTES_MAX_DEFAULT = 256 * 1024 * 1024  # lag above this per partition: messages not counted
PAYLOAD_SHOWN_BYTES = 100


class AdminError(MetaqError):
    exit_code = 1


class UsageError(AdminError):
    exit_code = 2


class ZooKeeperUnavailableError(AdminError):
    exit_code = 3


class NotFoundError(AdminError):
    """No such topic, group, partition or broker (in ZooKeeper or on the broker asked)."""

    exit_code = 4


class GroupActiveError(AdminError):
    exit_code = 5


class BrokerUnreachableError(AdminError):
    exit_code = 6


class Admin:
    """Operator requests against one MetaQ cluster.

    ``zk_connect`` (``host:port[,...][/chroot]``) and ``root`` locate the tree; ``broker_url``
    (``meta://host:port``) names one broker directly, for the broker-only operations (peek,
    close and open partitions) when ZooKeeper is not at hand.

    Raises (constructor):
        ZooKeeperUnavailableError: no ZooKeeper answered within ``timeout_s``.
    """

    def __init__(self, zk_connect: str | None = None, *, root: str = paths.DEFAULT_ROOT,
                 broker_url: str | None = None, timeout_s: float = 10.0):
        self.root = paths.normalize_root(root)
        self.timeout_s = timeout_s
        self.broker_url = broker_url
        if broker_url is not None:
            try:
                paths.parse_broker_url(broker_url)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        self.zk = None
        if zk_connect:
            try:
                self.zk = open_client(zk_connect, timeout_s=timeout_s)
            except ZooKeeperError as exc:
                raise ZooKeeperUnavailableError(str(exc)) from None
        self.zk_connect = zk_connect
        self.pool = ConnectionPool()

    def close(self) -> None:
        self.pool.close()
        if self.zk is not None:
            self.zk.stop()
            self.zk.close()
            self.zk = None

    def __enter__(self) -> "Admin":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- ZooKeeper reads ----------------------------------------------------------------------

    def _need_zk(self, what: str):
        if self.zk is None:
            raise UsageError(f"{what} needs ZooKeeper: give --zk-connect (or -f server.ini)")
        return self.zk

    def _children(self, path: str) -> list[str]:
        try:
            return self._need_zk("this command").get_children(path)
        except NoNodeError:
            return []
        except KazooException as exc:
            raise ZooKeeperUnavailableError(f"cannot read {path}: {exc!r}") from None

    def _data(self, path: str) -> bytes | None:
        try:
            data, _ = self._need_zk("this command").get(path)
            return data
        except NoNodeError:
            return None
        except KazooException as exc:
            raise ZooKeeperUnavailableError(f"cannot read {path}: {exc!r}") from None

    def _exists(self, path: str) -> bool:
        try:
            return self._need_zk("this command").exists(path) is not None
        except KazooException as exc:
            raise ZooKeeperUnavailableError(f"cannot read {path}: {exc!r}") from None

    def _master_url(self, broker_id: int) -> str | None:
        data = self._data(paths.broker_master_path(self.root, broker_id))
        if not data:
            return None
        try:
            paths.parse_broker_url(data)
        except ValueError:
            return None
        return paths.decode_text(data)

    def brokers(self) -> list[dict]:
        """Every ``brokers/ids/<id>``: its master url (None if down) and slaves."""
        rows = []
        for name in sorted(self._children(paths.broker_ids_path(self.root)),
                           key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n)):
            if not name.isdigit():
                continue
            broker_id = int(name)
            slaves = {}
            for child in self._children(paths.broker_id_path(self.root, broker_id)):
                try:
                    slave_id = paths.parse_slave_node_name(child)
                except ValueError:
                    continue
                data = self._data(paths.broker_slave_path(self.root, broker_id, slave_id))
                slaves[str(slave_id)] = paths.decode_text(data) if data else None
            rows.append({"broker_id": broker_id, "master": self._master_url(broker_id),
                         "slaves": slaves})
        return rows

    def _topic_brokers(self, topic: str) -> list[dict]:
        """Per broker child (``0-m``, ``0-s1``): partitions and whether it publishes/serves."""
        found: dict[str, dict] = {}
        for tree, builder, flag in (
                (paths.topics_pub_path, paths.topics_pub_broker_path, "publish"),
                (paths.topics_sub_path, paths.topics_sub_broker_path, "subscribe")):
            for child in self._children(tree(self.root, topic)):
                try:
                    broker_id, is_master, slave_id = paths.parse_broker_child_name(child)
                    data = self._data(builder(self.root, topic, broker_id, slave_id))
                    num_parts, _ = paths.parse_topic_broker_json(data or b"")
                except ValueError:
                    continue
                entry = found.setdefault(child, {"broker": child, "broker_id": broker_id,
                                                 "master": is_master, "partitions": num_parts,
                                                 "publish": False, "subscribe": False})
                entry[flag] = True
        for child in self._children(paths.topic_path(self.root, topic)):  # legacy tree
            try:
                broker_id, is_master, slave_id = paths.parse_broker_child_name(child)
                data = self._data(paths.topic_broker_path(self.root, topic, broker_id, slave_id))
                num_parts = paths.parse_num_parts(data or b"")
            except ValueError:
                continue
            found.setdefault(child, {"broker": child, "broker_id": broker_id, "master": is_master,
                                     "partitions": num_parts, "publish": False,
                                     "subscribe": False})
        return [found[k] for k in sorted(found)]

    def topics(self) -> list[dict]:
        """Every topic registered in ZooKeeper, with its brokers and partition count."""
        names = set()
        for tree in (paths.topics_path, paths.topics_pub_path, paths.topics_sub_path):
            names.update(self._children(tree(self.root)))
        rows = []
        for topic in sorted(names):
            try:
                validate_topic_name(topic)
            except ValueError:
                continue
            brokers = self._topic_brokers(topic)
            rows.append({"topic": topic, "partitions": sum(b["partitions"] for b in brokers
                                                           if b["master"]),
                         "brokers": brokers})
        return rows

    def _partition_strings(self, topic: str) -> list[str]:
        """The partitions a consumer group balances (MetaQ section 6.3), sorted as strings;
        masters' partitions from the pub or legacy trees when no broker serves subscribers."""
        brokers = self._topic_brokers(topic)
        chosen = [b for b in brokers if b["subscribe"]] or [b for b in brokers if b["master"]]
        return sorted({paths.partition_string(b["broker_id"], p)
                       for b in chosen for p in range(b["partitions"])})

    def partitions(self, topic: str) -> list[dict]:
        """The partitions of ``topic`` with their first and end offsets (from the brokers).

        Raises:
            NotFoundError: no broker registers the topic.
        """
        validate_topic_name(topic)
        names = self._partition_strings(topic)
        if not names:
            raise NotFoundError(f"unknown topic {topic!r}: no broker registers it under "
                               f"{paths.topics_sub_path(self.root, topic)}")
        rows = []
        for name in names:
            broker_id, number = paths.parse_partition_string(name)
            row = {"partition": name, "broker_id": broker_id, "number": number,
                   "url": self._master_url(broker_id), "first_offset": None, "end_offset": None}
            try:
                row["first_offset"], row["end_offset"] = self._bounds(row["url"], topic, number)
            except AdminError as exc:
                row["error"] = str(exc)
            rows.append(row)
        return rows

    def groups(self) -> list[str]:
        return sorted(self._children(paths.consumers_path(self.root)))

    # ---- broker requests ----------------------------------------------------------------------

    def _call(self, url: str | None, request: bytes, opaque: int):
        if url is None:
            raise BrokerUnreachableError("the broker has no live master in ZooKeeper")
        try:
            conn = self.pool.get_url(url)
            return conn.call(opaque, request, self.timeout_s)
        except (BrokerConnectionError, RequestTimeoutError) as exc:
            self.pool.drop(*paths.parse_broker_url(url))
            raise BrokerUnreachableError(str(exc)) from None

    def _offset(self, url: str | None, topic: str, number: int, offset: int) -> int | None:
        """The broker's ``offset`` answer; None when the partition has no store (404)."""
        opaque = next_opaque()
        reply = self._call(url, b"offset %s %s %d %d %d\r\n" % (
            topic.encode(), ADMIN_GROUP.encode(), number, offset, opaque), opaque)
        if isinstance(reply, ResultReply) and reply.code == SUCCESS:
            return int(bytes(reply.body))
        if isinstance(reply, ResultReply) and reply.code == NOT_FOUND:
            return None
        raise AdminError(f"broker {url} answered offset for {topic}:{number} with "
                         f"{_describe_reply(reply)}")

    def _bounds(self, url: str | None, topic: str, number: int) -> tuple[int, int]:
        """(first offset, end offset) of a partition; (0, 0) when it has no store yet."""
        first = self._offset(url, topic, number, 0)
        if first is None:
            return 0, 0
        return first, self._offset(url, topic, number, LONG_MAX)

    def count_messages(self, url: str, topic: str, number: int, start: int, end: int) -> int:
        """Records in ``[start, end)`` of a partition, read from its broker."""
        conn = self._conn(url)
        fast = conn.is_metaq_fast(self.timeout_s)
        offset, count, chunk = start, 0, CHUNK_BYTES
        while offset < end:
            size = min(chunk, end - offset)
            opaque = next_opaque()
            verb = b"getm" if fast else b"get"
            reply = self._call(url, b"%s %s %s %d %d %d %d\r\n" % (
                verb, topic.encode(), ADMIN_GROUP.encode(), number, offset, size, opaque), opaque)
            if isinstance(reply, ValuesReply):
                count += reply.count
                offset += reply.data_length
                continue
            if isinstance(reply, ValueReply):
                decoded = MessageSet.decode(bytes(reply.data), offset, verify=False)
                if len(decoded):
                    count += len(decoded)
                    offset = decoded.next_offset
                    continue
            elif reply.code == MOVED and int(bytes(reply.body)) > offset:
                offset = int(bytes(reply.body))  # retention removed the start: go on there
                continue
            elif reply.code == NOT_FOUND:
                break  # the end moved back (the partition was emptied): nothing more
            elif reply.code != BAD_REQUEST:
                raise AdminError(f"broker {url} answered a read of {topic}:{number} at {offset} "
                                 f"with {_describe_reply(reply)}")
            if chunk >= CHUNK_BYTES_MAX or size < chunk:
                raise AdminError(f"record at {topic}:{number} offset {offset} is larger than "
                                 f"{min(chunk, size)} bytes")
            chunk *= 2  # one record larger than the chunk
        return count

    def _conn(self, url: str):
        try:
            return self.pool.get_url(url)
        except BrokerConnectionError as exc:
            raise BrokerUnreachableError(str(exc)) from None

    # ---- groups -------------------------------------------------------------------------------

    def _members(self, group: str) -> dict[str, list[str]]:
        ids_path = paths.consumer_ids_path(self.root, group)
        members = {}
        for child in sorted(self._children(ids_path)):
            data = self._data(f"{ids_path}/{child}")
            if data is not None:
                members[child] = paths.parse_consumer_topics(data)
        return members

    def _check_group(self, group: str) -> None:
        validate_group_name(group)
        if not self._exists(paths.consumer_group_path(self.root, group)):
            raise NotFoundError(f"unknown group {group!r}: no "
                               f"{paths.consumer_group_path(self.root, group)} in ZooKeeper")

    def _committed(self, group: str, topic: str, name: str) -> tuple[int, int] | None:
        data = self._data(paths.offset_path(self.root, group, topic, name))
        if data is None:
            return None
        try:
            return paths.parse_offset(data)
        except ValueError:
            log.warning("bad offset node data %r for %s %s:%s", data[:64], group, topic, name)
            return None

    def describe_group(self, group: str, topic: str | None = None, *, count_messages: bool = True,
                       count_bytes_max: int = COUNT_BYTES_MAX_DEFAULT) -> dict:
        """Members, and per partition: owner, committed offset, end offset and lag.

        Raises:
            NotFoundError: no such group (or ``topic`` is not registered).
        """
        self._check_group(group)
        members = self._members(group)
        topics = set()
        for subscribed in members.values():
            topics.update(subscribed)
        topics.update(self._children(paths.offsets_path(self.root, group)))
        topics.update(self._children(paths.owners_path(self.root, group)))
        if topic is not None:
            validate_topic_name(topic)
            if topic not in topics and not self._partition_strings(topic):
                raise NotFoundError(f"unknown topic {topic!r} for group {group!r}")
            topics = {topic}
        rows, errors = [], []
        for name in sorted(topics):
            partitions = set(self._partition_strings(name))
            partitions.update(self._children(paths.offsets_topic_path(self.root, group, name)))
            partitions.update(self._children(paths.owners_topic_path(self.root, group, name)))
            for partition in sorted(partitions):
                try:
                    paths.parse_partition_string(partition)
                except ValueError:
                    continue
                row = self._describe_partition(group, name, partition, count_messages,
                                               count_bytes_max)
                if "error" in row:
                    errors.append(f"{name}:{partition}: {row['error']}")
                rows.append(row)
        lag_bytes = [r["lag_bytes"] for r in rows]
        lag_messages = [r["lag_messages"] for r in rows]
        return {
            "group": group,
            "members": [{"id": m, "topics": t} for m, t in members.items()],
            "partitions": rows,
            "total_lag_bytes": None if None in lag_bytes else sum(lag_bytes),
            "total_lag_messages": None if None in lag_messages else sum(lag_messages),
            "errors": errors,
        }

    def _describe_partition(self, group, topic, partition, count_messages, count_bytes_max) -> dict:
        broker_id, number = paths.parse_partition_string(partition)
        owner = self._data(paths.owner_path(self.root, group, topic, partition))
        committed = self._committed(group, topic, partition)
        row = {"topic": topic, "partition": partition,
               "owner": paths.decode_text(owner) if owner else None,
               "committed_offset": committed[1] if committed else None,
               "committed_msg_id": committed[0] if committed else None,
               "first_offset": None, "end_offset": None, "lag_bytes": None, "lag_messages": None}
        url = self._master_url(broker_id)
        try:
            first, end = self._bounds(url, topic, number)
            row["first_offset"], row["end_offset"] = first, end
            start = min(max(committed[1] if committed else first, first), end)
            row["lag_bytes"] = end - start
            if count_messages and end - start <= count_bytes_max:
                row["lag_messages"] = self.count_messages(url, topic, number, start, end)
        except AdminError as exc:
            row["error"] = f"broker {broker_id} ({url or 'not registered'}): {exc}"
        return row

    def reset_offsets(self, group: str, topic: str, to: str | int, *,
                      partitions: list[str] | None = None, force: bool = False) -> list[dict]:
        """Set the committed offset of the group's partitions of ``topic``.

        ``to``: ``"earliest"``, ``"latest"`` or an offset (a record boundary between the first
        and end offsets). ``force``: also while members are live, for an unknown group, and
        without checking a given offset.

        Raises:
            GroupActiveError: the group has live members (and not ``force``).
            NotFoundError: unknown group, topic or partition.
            UsageError: an offset out of range or inside a record.
        """
        validate_group_name(group)
        validate_topic_name(topic)
        if not force:
            self._check_group(group)
            members = self._members(group)
            if members:
                raise GroupActiveError(
                    f"group {group!r} has {len(members)} live member(s) "
                    f"({', '.join(sorted(members))}); stop them first (their next commit would "
                    "overwrite the reset), or use --force")
        known = self._partition_strings(topic)
        if not known:
            raise NotFoundError(f"unknown topic {topic!r}: no broker registers it")
        chosen = known if not partitions else partitions
        for name in chosen:
            if name not in known:
                raise NotFoundError(f"topic {topic!r} has no partition {name!r} "
                                   f"(known: {', '.join(known)})")
        rows = []
        for name in chosen:
            broker_id, number = paths.parse_partition_string(name)
            url = self._master_url(broker_id)
            first, end = self._bounds(url, topic, number)
            if to == "earliest":
                target = first
            elif to == "latest":
                target = end
            else:
                target = int(to)
                if not force:
                    self._check_offset(url, topic, name, target, first, end)
            old = self._committed(group, topic, name)
            self._write_offset(group, topic, name, target)
            rows.append({"topic": topic, "partition": name,
                         "old_offset": old[1] if old else None, "new_offset": target})
        return rows

    def _check_offset(self, url, topic, name, offset, first, end) -> None:
        if not first <= offset <= end:
            raise UsageError(f"offset {offset} is outside the range [{first}, {end}] of "
                             f"{topic}:{name}")
        if offset == end or not self._conn(url).is_metaq_fast(self.timeout_s):
            return  # MetaQ brokers cannot say where records start: trust the operator
        number = paths.parse_partition_string(name)[1]
        opaque = next_opaque()
        reply = self._call(url, b"getm %s %s %d %d 1 %d\r\n" % (
            topic.encode(), ADMIN_GROUP.encode(), number, offset, opaque), opaque)
        if isinstance(reply, ResultReply) and reply.code == MOVED:
            raise UsageError(f"offset {offset} is inside the record that starts at "
                             f"{int(bytes(reply.body))} in {topic}:{name}; give a record start")

    def _write_offset(self, group: str, topic: str, name: str, offset: int) -> None:
        path = paths.offset_path(self.root, group, topic, name)
        data = paths.encode_offset(paths.UNKNOWN_MSG_ID, offset)
        zk = self._need_zk("reset-offsets")
        try:
            try:
                zk.set(path, data)
            except NoNodeError:
                zk.create(path, data, makepath=True)
        except KazooException as exc:
            raise ZooKeeperUnavailableError(f"cannot write {path}: {exc!r}") from None

    # ---- partitions on brokers ----------------------------------------------------------------

    def _resolve_partition(self, topic: str, spec: str, broker_id: int | None) -> tuple[int, int]:
        """``"<brokerId>-<partition>"`` or ``"<partition>"`` (+ ``broker_id``, or the only broker
        of the topic) -> (broker id, partition)."""
        if "-" in spec:
            try:
                return paths.parse_partition_string(spec)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        if not spec.isdigit():
            raise UsageError(f"bad partition {spec!r}: expected <partition> or "
                             "<brokerId>-<partition>")
        if broker_id is None:
            broker_id = self._only_broker(topic)
        return broker_id, int(spec)

    def _only_broker(self, topic: str) -> int:
        if self.broker_url is not None:
            return 0  # not used: the url names the broker
        ids = sorted({b["broker_id"] for b in self._topic_brokers(topic) if b["master"]})
        if not ids:
            raise NotFoundError(f"unknown topic {topic!r}: no broker registers it")
        if len(ids) > 1:
            raise UsageError(f"topic {topic!r} is on brokers {', '.join(map(str, ids))}: "
                             "choose one with --broker")
        return ids[0]

    def _url_of(self, broker_id: int) -> str:
        if self.broker_url is not None:
            return self.broker_url
        self._need_zk("finding a broker")
        url = self._master_url(broker_id)
        if url is None:
            raise NotFoundError(f"broker {broker_id} has no live master in ZooKeeper")
        return url

    def peek(self, topic: str, partition: str, *, offset: int | None = None, limit: int = 10,
             broker_id: int | None = None, payload_bytes: int = PAYLOAD_SHOWN_BYTES) -> dict:
        """Up to ``limit`` messages of a partition from ``offset`` (default: the first)."""
        validate_topic_name(topic)
        if limit <= 0:
            raise UsageError("--limit must be at least 1")
        broker_id, number = self._resolve_partition(topic, partition, broker_id)
        url = self._url_of(broker_id)
        if offset is None:
            offset = self._offset(url, topic, number, 0)
            if offset is None:
                raise NotFoundError(f"{topic}:{broker_id}-{number} has no data on {url}")
        start, rows, chunk, moves = offset, [], CHUNK_BYTES, 0
        while len(rows) < limit:
            opaque = next_opaque()
            reply = self._call(url, b"get %s %s %d %d %d %d\r\n" % (
                topic.encode(), ADMIN_GROUP.encode(), number, offset, chunk, opaque), opaque)
            if isinstance(reply, ValueReply):
                try:
                    decoded = MessageSet.decode(bytes(reply.data), offset)
                except CorruptRecordError as exc:
                    raise AdminError(f"{topic}:{broker_id}-{number}: {exc}") from None
                if not len(decoded):
                    if chunk >= CHUNK_BYTES_MAX:
                        raise AdminError(f"record at offset {offset} is larger than {chunk} bytes")
                    chunk *= 2
                    continue
                for message in decoded:
                    if len(rows) >= limit:
                        break
                    rows.append(_message_row(message, payload_bytes))
                    offset = message.offset + message.size
                continue
            if reply.code == MOVED and moves < 2:
                moves += 1
                offset = int(bytes(reply.body))
                if not rows:
                    start = offset
                continue
            if reply.code in (NOT_FOUND, MOVED):
                if reply.code == NOT_FOUND and not rows and b"is not exists" in bytes(reply.body):
                    raise NotFoundError(bytes(reply.body).decode("utf-8", "replace"))
                break  # the end of the partition
            if reply.code == FORBIDDEN:
                raise AdminError(f"{topic}:{broker_id}-{number} is closed: "
                                 f"{bytes(reply.body).decode('utf-8', 'replace')}")
            raise AdminError(f"broker {url} answered get with {_describe_reply(reply)}")
        return {"topic": topic, "partition": f"{broker_id}-{number}", "url": url,
                "start_offset": start, "next_offset": offset, "messages": rows}

    def _admin_verb(self, topic: str, broker_id: int | None, verb: str, args: list[str]) -> list:
        validate_topic_name(topic)
        if self.broker_url is not None:
            targets = [(broker_id, self.broker_url)]
        elif broker_id is not None:
            targets = [(broker_id, self._url_of(broker_id))]
        else:
            only = self._only_broker(topic)
            targets = [(only, self._url_of(only))]
        rows = []
        for target_id, url in targets:
            conn = self._conn(url)
            try:
                fast = conn.is_metaq_fast(self.timeout_s)
            except (BrokerConnectionError, RequestTimeoutError) as exc:
                raise BrokerUnreachableError(str(exc)) from None
            if not fast:
                raise AdminError(f"broker {url} is not a metaq_fast broker: MetaQ brokers "
                                 "close partitions through JMX only")
            opaque = next_opaque()
            request = " ".join(["admin", verb, *args, str(opaque)]).encode("utf-8") + b"\r\n"
            reply = self._call(url, request, opaque)
            if not isinstance(reply, ResultReply) or reply.code != SUCCESS:
                raise AdminError(f"broker {url} refused {verb}: {_describe_reply(reply)}")
            rows.append({"broker_id": target_id, "url": url,
                         "answer": bytes(reply.body).decode("utf-8", "replace").strip()})
        return rows

    def close_partitions(self, topic: str, start: int, end: int,
                         broker_id: int | None = None) -> list[dict]:
        """Close partitions ``start..end`` (inclusive) of ``topic`` for writes and reads (403)."""
        if start < 0 or end < start:
            raise UsageError("partitions must satisfy 0 <= start <= end")
        return self._admin_verb(topic, broker_id, "closePartitions", [topic, str(start), str(end)])

    def open_partitions(self, topic: str, broker_id: int | None = None) -> list[dict]:
        """Open every closed partition of ``topic`` again."""
        return self._admin_verb(topic, broker_id, "openPartitions", [topic])


def _message_row(message, payload_bytes: int) -> dict:
    payload = message.payload
    return {"offset": message.offset, "msg_id": message.msg_id, "flag": message.flag,
            "attribute": message.attribute, "size": len(payload),
            "payload": repr(payload[:payload_bytes]) + ("..." if len(payload) > payload_bytes
                                                        else "")}


def _describe_reply(reply) -> str:
    if isinstance(reply, ResultReply):
        return f"{reply.code} {bytes(reply.body)[:200].decode('utf-8', 'replace')!r}"
    return type(reply).__name__
