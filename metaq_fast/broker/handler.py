"""Commands in, replies out: MetaQ's broker semantics, with no sockets.

Imports: numpy, xxhash, metaq_fast.protocol / storage / message / errors and broker helpers.

``Handler.handle(out, commands)`` takes the commands decoded from one read of one connection,
in order, and writes their replies to ``out`` (an ``Output``: see connection.py) in the same
order. Puts are the hot path: consecutive puts to one partition are appended as one batch (one
CRC call per message, everything else vectorised) and answered with one encoded block. A put
for a partition another worker owns is forwarded to it (``out.forward``) and answered when the
owner answers. In group commit mode (``unflushThreshold <= 0``) replies of a batch are held
until the flush that covers it has returned (a 500 instead if that flush fails).

Every put gets an answer whatever storing it raised (``_puts`` guards each batch): the code and
detail come from ``StorageFaults`` (storage_faults.py), which also logs a partition's failures
once per change of state and counts them.

Error bodies and codes are MetaQ's (reference sections 2 and 3), but a refused get names the
get, not a put, and at a damaged record where the next record starts (protocol/get_errors.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import replace

import numpy as np
import xxhash

from .. import __version__, errors, message
from ..errors import (
    BAD_REQUEST,
    FORBIDDEN,
    INTERNAL_SERVER_ERROR,
    MOVED,
    NOT_FOUND,
    SERVICE_UNAVAILABLE,
    SUCCESS,
)
from ..protocol import (
    PutRun,
    AdminCommand,
    ReplicateCommand,
    GetBatchCommand,
    GetCommand,
    OffsetCommand,
    PutBatchCommand,
    PutCommand,
    QuitCommand,
    StatsCommand,
    SyncCommand,
    TransactionCommand,
    VersionCommand,
    encode,
    encode_put_ok,
    encode_put_ok_many,
    encode_putm_ok,
    encode_result,
    encode_value_header,
    encode_values_header,
    parse_putm_ok,
)
from ..protocol.get_errors import get_failure_body
from ..storage import NotRecordBoundaryError
from .closed import ClosedPartitions
from .counters import CounterRow
from .partitions import PartitionTable
from .connection import unavailable
from ..layout import owner_of
from .storage_faults import StorageFaults, offline_detail

log = logging.getLogger(__name__)

LONG_MAX = 2**63 - 1
PUT_RECORD_OVERHEAD = 24  # bytes a put adds to a batch: its record header and putm index entry
VERSION = f"metaq_fast-{__version__}"
# Gecko's answer for a command type with no processor (reference section 1 item 9).
NO_PROCESSOR = "未注册请求处理器，请求处理器类为com.taobao.metamorphosis.network.{}"
READ_FAILURES_LOGGED_MAX = 1024  # distinct failed reads remembered so each is logged once


class Handler:
    def __init__(self, table: PartitionTable, *, broker_url: str, counters: CounterRow,
                 flusher, stats, closed_partitions=None, replication=None):
        self.table = table
        self.config = table.config
        self.broker_url = broker_url
        self.counters = counters
        self.flusher = flusher
        self.stats = stats
        self.closed = closed_partitions if closed_partitions is not None else ClosedPartitions()
        self.faults = StorageFaults(counters, self.closed)
        self.replication = replication  # ReplicaLeader: fetches, held acknowledgements
        self._read_failures_logged: set[tuple] = set()
        flusher.on_failure = self.faults.partition_failed  # a failed flush takes it offline
        self._dispatch = {
            GetCommand: self._get,
            GetBatchCommand: self._getm,
            OffsetCommand: self._offset,
            StatsCommand: self._stats,
            VersionCommand: self._version,
            QuitCommand: self._quit,
            SyncCommand: self._sync,
            TransactionCommand: self._transaction,
            AdminCommand: self._admin,
            PutBatchCommand: self._putm,
            ReplicateCommand: self._replicate,
        }

    # ---- dispatch ------------------------------------------------------------------------

    def handle(self, out, commands: list) -> None:
        """Answer ``commands`` (one connection's, in order) through ``out``."""
        i, n = 0, len(commands)
        while i < n:
            cmd = commands[i]
            kind = type(cmd)
            # per-partition figures (counters.py): what this command counts is its partition's
            self.counters.attribute(getattr(cmd, "topic", None), getattr(cmd, "partition", -1))
            if kind is PutRun:
                self._puts(out, cmd.topic, cmd.partition, cmd.datas, cmd.flag, cmd.checksums,
                           cmd.opaques, None)
                i += 1
                continue
            if kind is PutCommand:
                i = self._put_commands(out, commands, i)
                continue
            if isinstance(cmd, errors.ProtocolError):  # non-fatal: the bad command was skipped
                self._refused(out, cmd)
            else:
                try:
                    self._dispatch[kind](out, cmd)
                except Exception:  # a bug must not take the connection's other replies down
                    log.exception("failed to answer %r", cmd)
                    opaque = getattr(cmd, "opaque", None)
                    if opaque is not None:
                        out.write(encode_result(INTERNAL_SERVER_ERROR, b"internal error", opaque))
            i += 1
        self.counters.attribute(None)

    def _refused(self, out, exc: errors.ProtocolError) -> None:
        opaque = getattr(exc, "opaque", None)
        if opaque is None:
            return
        self.counters.add(CounterRow.CMD_PUT)
        self.counters.add(CounterRow.PUT_FAILED)
        out.write(encode_result(exc.code, str(exc).encode("utf-8"), opaque))

    # ---- put -------------------------------------------------------------------------

    def _put_commands(self, out, commands: list, start: int) -> int:
        """Puts decoded one by one (forms the fast path leaves alone, e.g. with a transaction
        key): consecutive ones to one partition are handled as one batch."""
        first = commands[start]
        end = start + 1
        while end < len(commands):
            nxt = commands[end]
            if type(nxt) is not PutCommand or nxt.topic != first.topic \
                    or nxt.partition != first.partition or first.partition == -1:
                break
            end += 1
        run = commands[start:end]
        self._puts(out, first.topic, first.partition, [c.data for c in run],
                   [c.flag for c in run], [c.checksum for c in run], [c.opaque for c in run],
                   [c.tx_key for c in run])
        return end

    def _error_prefix(self, topic: str, partition: int) -> str:
        return (f"Put message to [broker '{self.broker_url}'] "
                f"[partition '{topic}-{partition}'] failed.")

    def _failure(self, topic: str, partition: int, opaque: int, code: int,
                 detail: str | None, count: bool = True) -> bytes:
        if count:
            self.counters.add_for(topic, partition, CounterRow.PUT_FAILED)
        text = self._error_prefix(topic, partition)
        if detail is not None:
            text += "Detail:" + detail
        return encode_result(code, text.encode("utf-8"), opaque)

    def _fail_all(self, out, topic, partition, opaques, code, detail) -> None:
        out.write(b"".join(self._failure(topic, partition, o, code, detail) for o in opaques))

    def _choose_partition(self, topic: str) -> int:
        """MetaQ's ``-1``: the broker chooses; a partition this worker owns if there is one."""
        settings = self.table.topic_config(topic)
        if settings is None:
            return -1
        local = [p for p in range(settings.num_partitions) if self.table.owns(topic, p)]
        return random.choice(local or range(settings.num_partitions))

    def _remote_owner(self, topic: str, partition: int) -> int | None:
        if partition < 0 or self.table.topic_config(topic) is None:
            return None  # refused here, wherever it would live
        slot = owner_of(topic, partition, self.table.workers)
        return None if slot == self.table.slot else slot

    def _puts(self, out, topic, partition, datas, flags, checksums, opaques, tx_keys,
              counted: bool = False) -> None:
        """Puts of one connection to one partition, in order (``flags``: one int or a list).

        Validation (MetaQ's rules, checksums, sizes) happens here, in the worker that received
        them. Accepted puts are appended here if this worker owns the partition; otherwise they
        go to the owner as one ``putm`` (encoded once, vectorised, vouched for by one xxh3) and
        the owner's single answer is turned back into one MetaQ reply per put. Decoding and
        appending then run on two cores.
        """
        if not counted and not getattr(out, "from_worker", False):
            self.counters.add(CounterRow.CMD_PUT, len(opaques))
        try:
            if partition == -1:
                partition = self._choose_partition(topic)
                self.counters.attribute(topic, partition)
            self._put_batch(out, topic, partition, datas, flags, checksums, opaques, tx_keys)
        except Exception as exc:  # nothing was answered yet: every put gets its answer
            code, detail = self.faults.refusal(topic, partition, exc, len(opaques))
            self._fail_all(out, topic, partition, opaques, code, detail)

    def _put_batch(self, out, topic, partition, datas, flags, checksums, opaques,
                   tx_keys) -> None:
        """``_puts`` minus the guard: each path ends with the one write (or forward) that
        answers every put of the batch, or an exception before it."""
        try:
            self.table.check_put(topic, partition)
        except errors.MetaqError as exc:
            self._fail_all(out, topic, partition, opaques, exc.code, str(exc))
            return
        if (topic, partition) in self.closed:
            self._fail_all(out, topic, partition, opaques, FORBIDDEN,
                           f"partition[{self.config.broker_id}-{partition}] has been closed")
            return
        offline = self.closed.offline_reason((topic, partition))
        if offline is not None:
            self._fail_all(out, topic, partition, opaques, SERVICE_UNAVAILABLE,
                           offline_detail(offline))
            return
        if len(opaques) == 1:
            self._put_one(out, topic, partition, datas[0], flags if isinstance(flags, int)
                          else int(flags[0]), checksums[0], opaques[0],
                          None if tx_keys is None else tx_keys[0])
            return
        lengths = message.lengths_of(datas)
        if int(lengths.sum()) + PUT_RECORD_OVERHEAD * len(opaques) > self.config.batch_bytes_max:
            self._puts_in_parts(out, topic, partition, datas, flags, checksums, opaques, tx_keys,
                                lengths)
            return
        crcs = message.crc32_many(datas)
        sums = np.asarray(checksums, dtype=np.int64)
        ok = (sums == -1) | (sums == crcs)
        too_big = lengths > self.config.message_bytes_max
        ok &= ~too_big
        if tx_keys is not None:
            ok &= ~np.array([k is not None for k in tx_keys], dtype=bool)
        if ok.all():
            kept = datas, lengths, crcs, flags
        else:
            keep = np.flatnonzero(ok)
            if not len(keep):
                out.write(self._replies(topic, partition, opaques, tx_keys, lengths, ok, too_big,
                                        None, None))
                return
            kept_flags = flags if isinstance(flags, int) else np.asarray(flags, dtype=np.int32)[keep]
            kept = [datas[i] for i in keep.tolist()], lengths[keep], crcs[keep], kept_flags
        owner = self._remote_owner(topic, partition)
        if owner is not None:
            self._forward_puts(out, owner, topic, partition, kept, opaques, tx_keys, lengths, ok,
                               too_big)
            return
        try:
            log_, result = self._append(topic, partition, *kept)
        except (errors.MetaqError, OSError) as exc:
            failed = self.faults.refusal(topic, partition, exc, len(kept[0]))
            out.write(self._replies(topic, partition, opaques, tx_keys, lengths, ok, too_big,
                                    None, None, failed))
            return
        replies = self._replies(topic, partition, opaques, tx_keys, lengths, ok, too_big,
                                result.msg_ids, result.offsets)

        def unflushed(exc) -> bytes:
            # the refused puts of the batch were counted with ``replies``; the stored ones fail now
            self.counters.add_for(topic, partition, CounterRow.PUT_FAILED, len(kept[0]))
            return self._replies(topic, partition, opaques, tx_keys, lengths, ok, too_big, None,
                                 None, self.faults.unflushed(topic, partition, exc), count=False)

        self._reply_after_durable(out, log_, result.end_offset, replies, unflushed)

    def _puts_in_parts(self, out, topic, partition, datas, flags, checksums, opaques, tx_keys,
                       lengths) -> None:
        """A run of puts larger than one batch may be (many big messages pipelined): appended
        or forwarded in parts of at most ``maxBatchBytes``, in order."""
        ends = np.cumsum(lengths + PUT_RECORD_OVERHEAD)
        limit = self.config.batch_bytes_max
        start = 0
        while start < len(opaques):
            base = int(ends[start - 1]) if start else 0
            stop = max(start + 1, int(np.searchsorted(ends, base + limit, side="right")))
            part = slice(start, stop)
            self._puts(out, topic, partition, datas[part],
                       flags if isinstance(flags, int) else flags[part], checksums[part],
                       opaques[part], None if tx_keys is None else tx_keys[part], counted=True)
            start = stop

    def _put_one(self, out, topic, partition, data, flag, checksum, opaque, tx_key) -> None:
        """A single put (the synchronous case): plain Python, no numpy call on the way."""
        crc = message.crc32(data)
        detail = None
        if tx_key is not None:
            code, detail = INTERNAL_SERVER_ERROR, (
                f"transactions are not supported by this broker (key {tx_key})")
        elif len(data) > self.config.message_bytes_max:
            code, detail = BAD_REQUEST, (f"message of {len(data)} bytes is larger than "
                                         f"maxMessageSize {self.config.message_bytes_max}")
        elif checksum != -1 and checksum != crc:
            code, detail = INTERNAL_SERVER_ERROR, (
                "Checksum failure,message may be corrupted when transfering on networking.")
        if detail is not None:
            out.write(self._failure(topic, partition, opaque, code, detail))
            return
        owner = self._remote_owner(topic, partition)
        if owner is not None:
            self.counters.add(CounterRow.FORWARDED)
            request = b"put %s %d %d %d %d %d\r\n" % (topic.encode("utf-8"), partition, len(data),
                                                      flag, crc, opaque)
            out.forward(owner, request, 1,
                        lambda skip=0: self._unavailable(topic, partition, [opaque]),
                        extra=(data,))
            return
        try:
            log_ = self.table.log_for(topic, partition, create=True)
            offset, msg_id, end = log_.append_one(data, flag, crc)
        except (errors.MetaqError, OSError) as exc:
            code, detail = self.faults.refusal(topic, partition, exc)
            out.write(self._failure(topic, partition, opaque, code, detail))
            return
        self.counters.add(CounterRow.PUT_MESSAGES)
        self.counters.add(CounterRow.PUT_BYTES, end - offset)
        self._stored(log_)
        self._reply_after_durable(
            out, log_, end, encode_put_ok(msg_id, partition, offset, opaque),
            lambda exc: self._failure(topic, partition, opaque,
                                      *self.faults.unflushed(topic, partition, exc)))

    def _forward_puts(self, out, owner, topic, partition, kept, opaques, tx_keys, lengths, ok,
                      too_big) -> None:
        datas, kept_lengths, crcs, flags = kept
        self.counters.add(CounterRow.FORWARDED, len(datas))
        kept_lengths = np.asarray(kept_lengths, dtype=np.int64)
        records = message.encode_records(datas, 0, flags, crcs, kept_lengths)
        index = kept_lengths.astype(">u4").tobytes()
        digest = xxhash.xxh3_64()  # the same as hashing index + records, without joining them
        digest.update(index)
        digest.update(records)
        request = b"putm %s %d %d %d %d 0\r\n" % (
            topic.encode("utf-8"), partition, len(datas), len(index) + len(records),
            digest.intdigest())
        relative = message.positions_from_lengths(kept_lengths)

        def convert(frame: bytes) -> bytes:
            head, _, reply_body = frame.partition(b"\r\n")
            code = int(head.split(b" ")[1])
            if code != SUCCESS:  # the owner refused the batch: each put gets its answer
                return b"".join(encode_result(code, reply_body, o) for o in opaques)
            _p, first_offset, ids = parse_putm_ok(reply_body)
            return self._replies(topic, partition, opaques, tx_keys, lengths, ok, too_big, ids,
                                 relative + first_offset)

        def fail(skip: int = 0) -> bytes:
            return self._unavailable(topic, partition, opaques)

        out.forward(owner, request, 1, fail, convert, extra=(index, memoryview(records)))

    def _replies(self, topic, partition, opaques, tx_keys, lengths, ok, too_big, ids,
                 offsets, failed: tuple[int, str] | None = None, count: bool = True) -> bytes:
        """One reply per put, in order: accepted ones with their id and offset (``ids`` and
        ``offsets`` hold the accepted puts only; None: storing them failed, with ``failed``'s
        code and detail), refused ones with MetaQ's error text."""
        if ids is not None and len(ids) == len(opaques):
            return encode_put_ok_many(ids, partition, offsets, np.asarray(opaques, dtype=np.int64))
        stored = iter(()) if ids is None else iter(zip(np.asarray(ids).tolist(),
                                                       np.asarray(offsets).tolist()))
        replies = []
        for i, opaque in enumerate(opaques):
            if ok[i] and ids is not None:
                msg_id, offset = next(stored)
                replies.append(encode_result(SUCCESS, b"%d %d %d" % (msg_id, partition, offset),
                                             opaque))
                continue
            if ok[i]:
                code, detail = failed or (INTERNAL_SERVER_ERROR, None)
            elif tx_keys is not None and tx_keys[i] is not None:
                code, detail = INTERNAL_SERVER_ERROR, (
                    f"transactions are not supported by this broker (key {tx_keys[i]})")
            elif too_big[i]:
                code, detail = BAD_REQUEST, (
                    f"message of {int(lengths[i])} bytes is larger than maxMessageSize "
                    f"{self.config.message_bytes_max}")
            else:
                code, detail = INTERNAL_SERVER_ERROR, (
                    "Checksum failure,message may be corrupted when transfering on networking.")
            replies.append(self._failure(topic, partition, opaque, code, detail, count))
        return b"".join(replies)

    def _unavailable(self, topic: str, partition: int, opaques) -> bytes:
        self.counters.add_for(topic, partition, CounterRow.PUT_FAILED, len(opaques))
        return unavailable(topic, partition, opaques)

    def _append(self, topic, partition, datas, lengths, crcs, flags):
        """Append one batch: (log, result). Raises what storing it raised."""
        log_ = self.table.log_for(topic, partition, create=True)
        if not isinstance(flags, int):
            flags = np.asarray(flags, dtype=np.int32)
            if not flags.any():
                flags = 0
        result = log_.append_datas(datas, flags, crcs, lengths)
        self._count_append(result)
        self._stored(log_)
        return log_, result

    def _stored(self, log_) -> None:
        self.flusher.appended(log_)
        if self.replication is not None:
            self.replication.appended()
        if self.faults.failing:  # empty unless puts to some partition were refused
            self.faults.stored(log_.topic, log_.partition)

    def _count_append(self, result) -> None:
        self.counters.add(CounterRow.PUT_MESSAGES, len(result))
        self.counters.add(CounterRow.PUT_BYTES, result.end_offset - result.first_offset)

    def _reply_after_durable(self, out, log_, end_offset: int, replies: bytes, unflushed) -> None:
        """``replies`` now, or once the flush covering ``end_offset`` has returned (group
        commit) and the in-sync replicas hold it (synchronous replication); ``unflushed(exc)``
        (bytes) instead if either fails."""
        waits = []
        if log_.flush_policy.group_commit:
            waits.append(self.flusher.flushed_future(log_, end_offset))
        if self.replication is not None:
            replicated = self.replication.ack_future(log_, end_offset)
            if replicated is not None:
                waits.append(replicated)
        if not waits:
            out.write(replies)
        else:
            out.write_when(waits[0] if len(waits) == 1 else asyncio.gather(*waits), replies,
                           unflushed)

    # ---- putm (batch extension) -------------------------------------------------------

    def _putm(self, out, cmd: PutBatchCommand) -> None:
        topic, partition = cmd.topic, cmd.partition
        if partition == -1:
            partition = self._choose_partition(topic)
        if not getattr(out, "from_worker", False):
            self.counters.add(CounterRow.CMD_PUT)  # here: the owner does not count forwarded ones
        owner = self._remote_owner(topic, partition)
        if owner is not None:
            self.counters.add(CounterRow.FORWARDED)
            forwarded = cmd if cmd.partition == partition else replace(cmd, partition=partition)
            out.forward(owner, encode(forwarded), 1,
                        lambda skip=0: self._unavailable(topic, partition, [cmd.opaque][skip:]))
            return
        try:
            self.table.check_put(topic, partition)
            if (topic, partition) in self.closed:
                raise errors.PartitionClosedError(
                    f"partition[{self.config.broker_id}-{partition}] has been closed")
            offline = self.closed.offline_reason((topic, partition))
            if offline is not None:
                raise errors.ServiceUnavailableError(offline_detail(offline))
            body = memoryview(cmd.body).cast("B")
            if cmd.checksum != -1 and xxhash.xxh3_64_intdigest(body) != cmd.checksum:
                raise errors.ChecksumError(
                    "Checksum failure,message may be corrupted when transfering on networking.")
            index_bytes = 4 * cmd.count
            lengths = np.frombuffer(body[:index_bytes], dtype=">u4")
            if int(lengths.max(initial=0)) > self.config.message_bytes_max:
                raise errors.MessageTooLargeError(
                    f"a message of the batch is larger than maxMessageSize "
                    f"{self.config.message_bytes_max}", fatal=False)
            log_ = self.table.log_for(topic, partition, create=True)
            result = log_.append_message_set(body[index_bytes:], lengths,
                                             verify_crcs=cmd.checksum == -1)
        except errors.InvalidArgumentError as exc:
            out.write(self._failure(topic, partition, cmd.opaque, BAD_REQUEST, str(exc)))
            return
        except Exception as exc:  # storage (full disk, offline, no directory) or a bug
            # a forwarded putm stands for cmd.count MetaQ puts (counted as such), a client's
            # own putm is one request
            requests = cmd.count if getattr(out, "from_worker", False) else 1
            code, detail = self.faults.refusal(topic, partition, exc, requests)
            out.write(self._failure(topic, partition, cmd.opaque, code, detail))
            return
        self._count_append(result)
        self._stored(log_)
        reply = encode_putm_ok(partition, result.first_offset,
                               np.asarray(result.msg_ids, dtype=">i8").tobytes(), cmd.opaque)
        self._reply_after_durable(
            out, log_, result.end_offset, reply,
            lambda exc: self._failure(topic, partition, cmd.opaque,
                                      *self.faults.unflushed(topic, partition, exc)))

    # ---- get / getm / offset -------------------------------------------------------------

    def _no_store(self, topic: str, partition: int) -> bytes:
        return f"The topic `{topic}` in partition `{partition}` is not exists".encode("utf-8")

    def _read_checks(self, out, cmd):
        """Shared preamble of get and getm: a view to read from, or None (answered)."""
        self.counters.add(CounterRow.CMD_GET)
        if (cmd.topic, cmd.partition) in self.closed:
            out.write(encode_result(FORBIDDEN, f"Partition[{self.config.broker_id}-{cmd.partition}] "
                                    "has been closed".encode("utf-8"), cmd.opaque))
            return None
        view = self.table.view(cmd.topic, cmd.partition)
        if view is None:
            self.counters.add(CounterRow.GET_MISS)
            out.write(encode_result(NOT_FOUND, self._no_store(cmd.topic, cmd.partition), cmd.opaque))
            return None
        if cmd.max_size <= 0:
            out.write(encode_result(BAD_REQUEST, f"Bad request,invalid max size:{cmd.max_size}"
                                    .encode("utf-8"), cmd.opaque))
            return None
        return view

    def _out_of_range(self, out, cmd, view, exc: errors.OffsetOutOfRangeError) -> None:
        self.counters.add(CounterRow.GET_MISS)
        offset = cmd.offset
        if offset < exc.first_offset:
            self.counters.add(CounterRow.CMD_OFFSET)
            out.write(encode_result(MOVED, str(exc.first_offset).encode(), cmd.opaque))
        elif (self.config.update_consumer_offsets and offset > exc.end_offset) or offset == LONG_MAX:
            self.counters.add(CounterRow.CMD_OFFSET)
            out.write(encode_result(MOVED, str(exc.end_offset).encode(), cmd.opaque))
        else:
            out.write(encode_result(NOT_FOUND, f"Could not find message at position {offset}"
                                    .encode("utf-8"), cmd.opaque))

    def _read_failed(self, out, cmd, view, exc: Exception) -> None:
        """A get or getm the storage refused (500): the body names the get (get_errors.py)
        and, at a damaged record, where the next record starts. Logged once per partition,
        offset and reason: a consumer retries the same offset until it gives up or skips."""
        key = (cmd.topic, cmd.partition, cmd.offset, str(exc))
        if key not in self._read_failures_logged:
            if len(self._read_failures_logged) >= READ_FAILURES_LOGGED_MAX:
                self._read_failures_logged.clear()
            self._read_failures_logged.add(key)
            log.error("get %s-%d at %d failed: %s", cmd.topic, cmd.partition, cmd.offset, exc)
        after = None
        if isinstance(exc, errors.CorruptRecordError):
            after = record_after(view, cmd.offset)
        body = get_failure_body(self.broker_url, cmd.topic, cmd.partition, str(exc), after)
        out.write(encode_result(INTERNAL_SERVER_ERROR, body, cmd.opaque))

    def _get(self, out, cmd: GetCommand) -> None:
        view = self._read_checks(out, cmd)
        if view is None:
            return
        try:
            part = view.read(cmd.offset, min(cmd.max_size, self.config.transfer_bytes_max))
        except errors.OffsetOutOfRangeError as exc:
            self._out_of_range(out, cmd, view, exc)
            return
        except errors.MetaqError as exc:
            self._read_failed(out, cmd, view, exc)
            return
        self.counters.add(CounterRow.GET_BYTES, part.length)
        out.write_many((encode_value_header(part.length, cmd.opaque), memoryview(part.view)))

    def _getm(self, out, cmd: GetBatchCommand) -> None:
        view = self._read_checks(out, cmd)
        if view is None:
            return
        limit = min(cmd.max_size, self.config.transfer_bytes_max)
        try:
            part = view.read_records(cmd.offset, limit)
        except errors.OffsetOutOfRangeError as exc:
            self._out_of_range(out, cmd, view, exc)
            return
        except NotRecordBoundaryError as exc:
            self.counters.add(CounterRow.CMD_OFFSET)
            out.write(encode_result(MOVED, str(exc.record_offset).encode(), cmd.opaque))
            return
        except errors.MetaqError as exc:
            self._read_failed(out, cmd, view, exc)
            return
        count = len(part.lengths)
        if count == 0:
            out.write(encode_result(BAD_REQUEST, (
                f"record at offset {cmd.offset} is {part.first_record_bytes} bytes, more than "
                f"maxSize {limit}").encode("utf-8"), cmd.opaque))
            return
        self.counters.add(CounterRow.GET_MESSAGES, count)
        self.counters.add(CounterRow.GET_BYTES, part.length)
        index = part.lengths.astype(">u4").tobytes()
        checksum = xxhash.xxh3_64_intdigest(part.view)  # the client checks the answer with it
        out.write_many((encode_values_header(part.length, count, cmd.opaque, index, checksum),
                        memoryview(part.view)))

    def _offset(self, out, cmd: OffsetCommand) -> None:
        self.counters.add(CounterRow.CMD_OFFSET)
        view = self.table.view(cmd.topic, cmd.partition)
        if view is None:
            out.write(encode_result(NOT_FOUND, self._no_store(cmd.topic, cmd.partition), cmd.opaque))
            return
        out.write(encode_result(SUCCESS, str(view.nearest_offset(cmd.offset)).encode(), cmd.opaque))

    # ---- the rest ---------------------------------------------------------------------

    def _version(self, out, cmd: VersionCommand) -> None:
        out.write(encode_result(SUCCESS, VERSION.encode(), cmd.opaque))

    def _stats(self, out, cmd: StatsCommand) -> None:
        code, body = self.stats.answer(cmd.item)
        out.write(encode_result(code, body, cmd.opaque))

    def _quit(self, out, cmd: QuitCommand) -> None:
        out.close_after_flush()

    def _sync(self, out, cmd: SyncCommand) -> None:
        out.write(encode_result(SERVICE_UNAVAILABLE, NO_PROCESSOR.format("SyncCommand").encode(),
                                cmd.opaque))

    def _replicate(self, out, cmd: ReplicateCommand) -> None:
        if self.replication is None or getattr(out, "from_worker", False):
            out.write(encode_result(SERVICE_UNAVAILABLE, b"replication is not served here",
                                    cmd.opaque))
            return
        self.replication.fetch(out, cmd)

    def _transaction(self, out, cmd: TransactionCommand) -> None:
        out.write(encode_result(SERVICE_UNAVAILABLE,
                                NO_PROCESSOR.format("TransactionCommand").encode(), cmd.opaque))

    def _admin(self, out, cmd: AdminCommand) -> None:
        code, body = self.stats.admin(cmd.verb, cmd.args)
        out.write(encode_result(code, body, cmd.opaque))


def record_after(view, offset: int) -> int | None:
    """Start of the record after the one starting at ``offset`` (a damaged one), from the
    record index alone: ``read_records(probe, 1)`` says a probe inside that record belongs to
    ``offset`` and answers any probe at or past the next record otherwise (a boundary, another
    record's start, or past the end). Exponential then binary search over that predicate:
    about 2 * log2(record size) index look-ups, no record bytes read. None if the index cannot
    tell (a segment whose length chain is broken too)."""

    def past(probe: int) -> bool:
        try:
            view.read_records(probe, 1)
        except NotRecordBoundaryError as exc:
            return exc.record_offset != offset
        except errors.OffsetOutOfRangeError:
            return True
        return True

    try:
        step = 1
        while not past(offset + step):
            step *= 2
            if step > 1 << 40:
                return None
        lo, hi = offset + step // 2 + 1, offset + step  # past(hi); not past(lo - 1)
        while lo < hi:
            mid = (lo + hi) // 2
            if past(mid):
                hi = mid
            else:
                lo = mid + 1
        return hi
    except errors.MetaqError:
        return None
