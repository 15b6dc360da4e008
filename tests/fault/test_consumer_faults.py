"""The consumer against damaged state, through a real broker and a real ZooKeeper (issue 11.5, 11.6).

* An offsets node that does not hold ``<msgId>-<offset>`` is taken as no offset (the partition
  starts at the configured start offset) and logged once; it used to wedge the partition (the
  claim raised ValueError, was retried every 200 ms for ever, and no other consumer could take
  the partition).
* A record damaged on disk (bytes flipped in the segment file while the broker is stopped; the
  broker verifies what it serves and refuses it with a 500): the refusal names the get (put
  refusals keep MetaQ's text) and where the next record starts; the consumer reports the error
  to the application after ``max_fetch_failures`` failures in a row (``on_error``, or raised
  from ``poll``) and, with ``skip_corrupt=True``, goes on at the next record and counts it in
  ``skipped_records``. It used to refetch the damaged record for ever, telling nobody.
* The same through a MetaQ broker, which serves what its disk holds unverified: a proxy in front
  of the real broker (``DamagingProxy``) says it is not metaq_fast, so the consumer speaks plain
  ``get``, and damages one record in every answer; the consumer finds the bad CRC, delivers
  the records before it, and skips it by its length field.

Every wait is bounded; brokers are stopped by the ``brokers`` fixture, consumers in ``finally``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import pytest

from metaq_fast.client.consumer import Consumer, PartitionStuckError
from metaq_fast.protocol import NEED_DATA, ResponseDecoder, ResultReply, ValueReply
from metaq_fast.zk import paths
from tests.brokers import WireClient
from tests.helpers import wait_until

pytestmark = [pytest.mark.zk, pytest.mark.timeout(120)]

TOPIC = "test"
HEADER = 20  # MetaQ's record header
PAYLOAD = 30
RECORD = HEADER + PAYLOAD
COUNT = 12
BAD = 4  # the record whose data is damaged


def payload(i: int) -> bytes:
    return b"message-%04d-" % i + b"x" * (PAYLOAD - 13)


def start_broker(brokers, zk_connect, segment_bytes: int | None = None):
    system = {} if segment_bytes is None else {"maxSegmentSize": segment_bytes}
    return brokers(zk_connect=zk_connect, workers=1, system=system,
                   topics={TOPIC: {"numPartitions": 1}})


def put_all(broker, count: int = COUNT) -> None:
    client = WireClient(broker.port)
    try:
        for i in range(count):
            data = payload(i)
            reply = client.request(b"put %s 0 %d 0 -1 %d\r\n%s" % (TOPIC.encode(), len(data), i + 1,
                                                                  data))
            assert isinstance(reply, ResultReply) and reply.code == 200, bytes(reply.body)
            assert bytes(reply.body).split(b" ")[2] == b"%d" % (i * RECORD)
    finally:
        client.close()


def segments(broker) -> list[tuple[int, Path]]:
    """(start offset, data file) of every segment of the partition, in order."""
    return sorted((int(f.stem), f) for f in (broker.data_path / f"{TOPIC}-0").glob("*.meta"))


def damage_record(broker, index: int, at: int = HEADER + 5) -> Path:
    """Stop the broker (everything flushed), flip one byte (``at`` bytes into the record: in its
    data by default) in the segment file that holds it, start it again over the same data
    directory. Returns that file."""
    assert broker.stop() == 0
    found = segments(broker)
    assert sum(f.stat().st_size for _, f in found) == COUNT * RECORD
    offset = index * RECORD
    start, segment = [(s, f) for s, f in found if s <= offset][-1]
    raw = bytearray(segment.read_bytes())
    raw[offset - start + at] ^= 0x20
    segment.write_bytes(bytes(raw))
    broker.start()
    return segment


def drain(consumer: Consumer, got: list, errors: list | None = None) -> bool:
    """One poll into ``got`` (payloads); a raised PartitionStuckError goes to ``errors``."""
    try:
        for batch in consumer.poll(timeout_s=0.1):
            got.extend(batch.payloads())
    except PartitionStuckError as exc:
        if errors is None:
            raise
        errors.append(exc)
    return True


# ---- 11.5: a bad offsets node ---------------------------------------------------------------------


def test_offsets_node_with_garbage_reads_as_no_offset_and_is_logged_once(
        brokers, zk_connect, zk_client, caplog):
    broker = start_broker(brokers, zk_connect)
    put_all(broker)
    node = f"/meta/consumers/g/offsets/{TOPIC}/0-0"
    zk_client.create(node, b"not-an-offset", makepath=True)
    caplog.set_level(logging.WARNING, logger="metaq_fast.client")
    consumer = Consumer(zk_connect, group="g", topics=[TOPIC], rebalance_backoff_ms=50)
    try:
        got: list[bytes] = []
        wait_until(lambda: drain(consumer, got) and len(got) >= COUNT, timeout_s=15,
                   message=lambda: f"received {len(got)} of {COUNT}")
        assert got == [payload(i) for i in range(COUNT)]  # from the earliest offset, in order
        assert consumer.assignment() == {TOPIC: ["0-0"]}
        time.sleep(0.5)  # ten rebalance back-offs: a retry loop would have logged again by now
    finally:
        consumer.close()
    warnings = [r.getMessage() for r in caplog.records
                if "not-an-offset" in r.getMessage() and r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert node in warnings[0] and "earliest" in warnings[0]
    data, _ = zk_client.get(node)
    assert data.endswith(b"-%d" % (COUNT * RECORD))  # the close committed a real offset over it


# ---- 11.6: a damaged record on disk ----------------------------------------------------------


@pytest.mark.parametrize("where", ["first", "middle", "last", "last-of-segment", "length-field"])
def test_get_refused_at_a_damaged_record_names_the_get_and_the_next_record(
        brokers, zk_connect, where):
    small = where == "last-of-segment"
    broker = start_broker(brokers, zk_connect, segment_bytes=3 * RECORD if small else None)
    put_all(broker)
    if small:  # the next record is the first of the next segment
        assert len(segments(broker)) > 2
        index = segments(broker)[1][0] // RECORD - 1
    else:
        index = {"first": 0, "middle": BAD, "last": COUNT - 1, "length-field": BAD}[where]
    # the length field's low byte: the record index still says where the next record starts
    segment = damage_record(broker, index, 3 if where == "length-field" else HEADER + 5)
    offset = index * RECORD
    position = offset - int(segment.stem)
    prefix = f"Get message from [broker '{broker.url}'] [partition '{TOPIC}-0'] failed.Detail:"
    client = WireClient(broker.port)
    try:
        if index:
            before = client.request(b"get test g 0 %d 1048576 1\r\n" % (offset - RECORD))
            assert len(bytes(before.data)) == RECORD  # served up to the damage, not into it
        for verb in (b"get", b"getm"):
            reply = client.request(b"%s test g 0 %d 1048576 2\r\n" % (verb, offset))
            assert isinstance(reply, ResultReply) and reply.code == 500
            # the next record's offset, or the end of the partition after the last one
            body = bytes(reply.body).decode()
            assert body.startswith(f"{prefix}corrupt record in {segment} at position {position}: ")
            assert body.endswith(f"; next record at offset {offset + RECORD}")
            if where != "length-field":
                assert body == (f"{prefix}corrupt record in {segment} at position {position}: "
                                f"checksum failure; next record at offset {offset + RECORD}")
        if index < COUNT - 1:
            after = client.request(b"getm test g 0 %d 1048576 3\r\n" % (offset + RECORD))
            assert after.record_lengths().tolist()[0] == PAYLOAD
        # a put refusal keeps MetaQ's text byte for byte
        reply = client.request(b"put test 0 5 0 12345 4\r\nhello")
        assert reply.code == 500 and bytes(reply.body) == (
            f"Put message to [broker '{broker.url}'] [partition '{TOPIC}-0'] failed.Detail:"
            "Checksum failure,message may be corrupted when transfering on networking.").encode()
    finally:
        client.close()


def test_consumer_reports_a_damaged_record_and_skips_it_when_told_to(brokers, zk_connect,
                                                                    zk_client):
    broker = start_broker(brokers, zk_connect)
    put_all(broker)
    damage_record(broker, BAD)
    reported: list[PartitionStuckError] = []
    consumer = Consumer(zk_connect, group="g", topics=[TOPIC], max_fetch_delay_ms=200,
                        max_fetch_failures=3, skip_corrupt=True, on_error=reported.append,
                        commit_interval_ms=60_000)
    began = time.monotonic()
    try:
        got: list[bytes] = []
        wanted = [payload(i) for i in range(COUNT) if i != BAD]
        wait_until(lambda: drain(consumer, got) and len(got) >= len(wanted), timeout_s=20,
                   message=lambda: f"received {len(got)}, reported {reported}")
        elapsed = time.monotonic() - began
        assert got == wanted  # everything before and after the damaged record, in order
        assert consumer.skipped_records == 1
        [error] = reported
        assert (error.topic, error.partition, error.offset) == (TOPIC, "0-0", BAD * RECORD)
        assert error.failures == 3 and error.skip_to == (BAD + 1) * RECORD
        assert "corrupt record" in error.reason and "checksum failure" in error.reason
        assert "500" in str(error) and f"offset {BAD * RECORD}" in str(error)
        # three tries with back-off (0.02 + 0.04 s at least, far less than the 20 s bound)
        assert elapsed < 15
        for _ in range(5):  # nothing more: no second report, no redelivery
            drain(consumer, got)
        assert len(got) == len(wanted) and len(reported) == 1
    finally:
        consumer.close()
    # the skip was consumed and committed: the group's offset is the end of the partition
    data, _ = zk_client.get(f"/meta/consumers/g/offsets/{TOPIC}/0-0")
    assert paths.parse_offset(data)[1] == COUNT * RECORD, data
    # and a new consumer of the group starts there
    consumer = Consumer(zk_connect, group="g", topics=[TOPIC], on_error=reported.append)
    try:
        consumer.wait_assignment(lambda a: a == {TOPIC: ["0-0"]}, timeout_s=15)
        late: list[bytes] = []
        for _ in range(5):
            drain(consumer, late)
        assert late == [] and len(reported) == 1
    finally:
        consumer.close()


def test_consumer_without_skip_raises_from_poll_and_stays_at_the_damaged_record(
        brokers, zk_connect, caplog):
    broker = start_broker(brokers, zk_connect)
    put_all(broker)
    damage_record(broker, BAD)
    caplog.set_level(logging.WARNING, logger="metaq_fast.client")
    consumer = Consumer(zk_connect, group="g", topics=[TOPIC], max_fetch_delay_ms=200,
                        max_fetch_failures=4)
    try:
        got: list[bytes] = []
        errors: list[PartitionStuckError] = []
        wait_until(lambda: drain(consumer, got, errors) and errors, timeout_s=20,
                   message=lambda: f"no error reached the application; received {len(got)}")
        assert got == [payload(i) for i in range(BAD)]  # the records before it came first
        [error] = errors
        assert error.offset == BAD * RECORD and error.skip_to is None
        assert error.failures == 4 and "skip_corrupt is off" in str(error)
        assert consumer.skipped_records == 0
        deadline = time.monotonic() + 1.5  # several more refetches at the 0.2 s back-off
        while time.monotonic() < deadline:
            drain(consumer, got, errors)
        assert got == [payload(i) for i in range(BAD)] and len(errors) == 1
    finally:
        consumer.close()
    failures = [r for r in caplog.records if "failed (retrying with back-off)" in r.getMessage()]
    assert len(failures) == 1  # logged when it started failing, not on every refetch


# ---- the same through a broker that serves damaged records (MetaQ's) -----------------------------


class DamagingProxy:
    """Between a consumer and the real broker: answers ``version`` as a MetaQ broker would (not
    metaq_fast, so the consumer speaks plain ``get``) and flips one byte of ``marker`` in every
    ``value`` answer that holds it, as a MetaQ broker reading a damaged disk serves it."""

    def __init__(self, port: int, marker: bytes):
        self.target, self.marker = port, marker
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)  # accept wakes up to see close
        self.port = self.server.getsockname()[1]
        self.closed = threading.Event()
        self.damaged = 0
        self.sockets: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            client.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, upstream]
            for target in (lambda: self._copy(client, upstream), lambda: self._answers(upstream, client)):
                self.threads.append(threading.Thread(target=target, daemon=True))
                self.threads[-1].start()

    def _copy(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def _answers(self, src: socket.socket, dst: socket.socket) -> None:
        decoder = ResponseDecoder()
        try:
            while data := src.recv(65536):
                decoder.feed(data)
                while (reply := decoder.next_command()) is not NEED_DATA:
                    dst.sendall(self._rewrite(reply))
        except OSError:
            pass

    def _rewrite(self, reply) -> bytes:
        if isinstance(reply, ResultReply):
            body = bytes(reply.body)
            if body.startswith(b"metaq_fast"):
                body = b"1.4.6"
            return b"result %d %d %d\r\n" % (reply.code, len(body), reply.opaque) + body
        assert isinstance(reply, ValueReply), reply  # plain MetaQ only past the version check
        data = bytearray(reply.data)
        at = data.find(self.marker)
        if at >= 0:
            data[at + 5] ^= 0x20
            self.damaged += 1
        return b"value %d %d\r\n" % (len(data), reply.opaque) + bytes(data)

    def close(self) -> None:
        self.closed.set()
        self.threads[0].join(5)
        self.server.close()
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in self.threads:
            thread.join(5)
        assert not any(t.is_alive() for t in self.threads), "proxy thread hung"


def test_consumer_skips_a_record_a_metaq_broker_serves_damaged(brokers, zk_connect, zk_client):
    broker = start_broker(brokers, zk_connect)
    put_all(broker)
    proxy = DamagingProxy(broker.port, payload(BAD))
    consumer = None
    try:
        zk_client.set(paths.broker_master_path("/meta", 0),
                      paths.encode_broker_url("127.0.0.1", proxy.port))  # consumers go through it
        reported: list[PartitionStuckError] = []
        consumer = Consumer(zk_connect, group="g", topics=[TOPIC], max_fetch_delay_ms=200,
                            max_fetch_failures=3, skip_corrupt=True, on_error=reported.append)
        got: list[bytes] = []
        wanted = [payload(i) for i in range(COUNT) if i != BAD]
        wait_until(lambda: drain(consumer, got) and len(got) >= len(wanted), timeout_s=20,
                   message=lambda: f"received {len(got)}, reported {reported}")
        assert got == wanted and consumer.skipped_records == 1
        [error] = reported
        assert (error.offset, error.skip_to) == (BAD * RECORD, (BAD + 1) * RECORD)
        assert "Checksum failure" in error.reason and error.failures == 3
        assert proxy.damaged >= 4  # the first answer (records 0-11) and three at the record
    finally:
        if consumer is not None:
            consumer.close()
        proxy.close()
