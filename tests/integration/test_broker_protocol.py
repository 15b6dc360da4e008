"""A real metaq-server against MetaQ's broker vectors (reference section 16.2), on loopback.

The broker runs with two workers, so partitions 0 and 1 of ``test`` live in different worker
processes and every vector exercises forwarding for one of them.
"""

import os
import socket
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from metaq_fast.message import MessageSet
from metaq_fast.protocol import ResultReply, ValueReply

from tests.brokers import WireClient

ATTR_BODY = bytes.fromhex("00000009617474726962757465") + b"hello"


@pytest.fixture
def broker(brokers):
    return brokers(workers=2, topics={"test": {"numPartitions": 2}})


@pytest.fixture
def client(broker):
    c = WireClient(broker.port)
    yield c
    c.close()


def result(reply, code, body=None):
    assert isinstance(reply, ResultReply), reply
    assert reply.code == code, (reply.code, bytes(reply.body))
    if body is not None:
        assert bytes(reply.body) == body
    return bytes(reply.body)


def put_ok(reply):
    msg_id, partition, offset = result(reply, 200).split(b" ")
    return int(msg_id), int(partition), int(offset)


def test_metaq_broker_vectors(broker, client):
    url = broker.url
    assert result(client.request(b"version 1\r\n"), 200)
    assert client.request(b"version\r\n").opaque == 2147483647
    result(client.request(b"offset test g 0 0 2\r\n"), 404,
           b"The topic `test` in partition `0` is not exists")
    result(client.request(b"get test g 0 0 1024 3\r\n"), 404,
           b"The topic `test` in partition `0` is not exists")
    reply = client.request(b"stats topics 4\r\n")
    assert (reply.opaque, bytes(reply.body)) == (4, b"STATS\r\ntest *Empty*\r\nEND\r\n")

    ids = []
    for request, offset in ((b"put test 0 5 0 907060870 5\r\nhello", 0),
                            (b"put test 0 5 0 -1 6\r\nhello", 25),
                            (b"put test 0 5 0 7\r\nhello", 50),
                            (b"put test 0 18 1 1880085488 8\r\n" + ATTR_BODY, 75)):
        msg_id, partition, got_offset = put_ok(client.request(request))
        assert (partition, got_offset) == (0, offset)
        ids.append(msg_id)
    assert ids == sorted(ids) and len(set(ids)) == 4

    reply = client.request(b"get test g 0 0 1048576 9\r\n")
    assert isinstance(reply, ValueReply) and reply.opaque == 9
    data = bytes(reply.data)
    expected = b"".join(
        bytes.fromhex("000000053610a686") + i.to_bytes(8, "big") + bytes(4) + b"hello" for i in ids[:3]
    ) + bytes.fromhex("00000012700fd3f0") + ids[3].to_bytes(8, "big") + bytes.fromhex("00000001") + ATTR_BODY
    assert data == expected and len(data) == 113

    cut = client.request(b"get test g 0 25 30 10\r\n")
    assert bytes(cut.data) == expected[25:55]
    decoded = MessageSet.decode(bytes(cut.data), 25)
    assert len(decoded) == 1 and decoded.next_offset == 50
    assert bytes(client.request(b"get test g 0 10 1048576 11\r\n").data) == expected[10:]
    result(client.request(b"get test g 0 113 1024 12\r\n"), 404, b"Could not find message at position 113")
    result(client.request(b"get test g 0 9223372036854775807 1024 13\r\n"), 301, b"113")
    result(client.request(b"get test g 0 500 1024 14\r\n"), 404, b"Could not find message at position 500")
    result(client.request(b"get test g 0 0 0 15\r\n"), 400, b"Bad request,invalid max size:0")
    result(client.request(b"offset test g 0 60 16\r\n"), 200, b"0")
    result(client.request(b"offset test g 0 5000 17\r\n"), 200, b"113")
    result(client.request(b"offset test g 0 -5 18\r\n"), 200, b"0")
    result(client.request(b"stats offsets 19\r\n"), 200,
           b"STATS\r\ntest part 0 min_offset 0 max_offset 113\r\nEND\r\n")
    result(client.request(b"put test 2 5 0 -1 20\r\nhello"), 500,
           f"Put message to [broker '{url}'] [partition 'test-2'] failed.Detail:wrong partition 2".encode())
    result(client.request(b"put other 0 5 0 -1 21\r\nhello"), 500,
           f"Put message to [broker '{url}'] [partition 'other-0'] failed.Detail:The server do not "
           "accept topic other".encode())
    result(client.request(b"put test 0 5 0 12345 22\r\nhello"), 500,
           f"Put message to [broker '{url}'] [partition 'test-0'] failed.Detail:Checksum failure,"
           "message may be corrupted when transfering on networking.".encode())
    assert put_ok(client.request(b"put test 0 5 0 -1 99\r\nhello"))[2] == 113  # nothing written by 22
    _, partition, _ = put_ok(client.request(b"put test -1 5 0 -1 23\r\nhello"))
    assert partition in (0, 1)
    client.send(b"put test 1 5 0 -1 24\r\nhel")
    client.sock.settimeout(0.3)
    with pytest.raises(socket.timeout):
        client.sock.recv(1)
    msg_id, partition, _ = put_ok(client.request(b"lo"))
    assert partition == 1
    reply = client.request(b"sync test 0 5 0 9999 907060870 25\r\nhello")
    assert reply.code == 503 and len(bytes(reply.body)) == 92 and b"SyncCommand" in bytes(reply.body)
    stats = result(client.request(b"stats  26\r\n"), 200).decode()
    keys = [line.split(" ")[0] for line in stats.split("\r\n")[1:-2]]
    assert keys == ["pid", "broker_id", "port", "uptime", "version", "slave", "curr_connections",
                    "threads", "cmd_put", "cmd_get", "cmd_offset", "tx_begin", "tx_xa_begin",
                    "tx_commit", "tx_rollback", "get_miss", "put_failed", "total_messages",
                    "topics", "config_checksum"]
    assert f"port {broker.port}\r\n" in stats and "broker_id 0\r\n" in stats
    assert "total_messages 7\r\n" in stats and "put_failed 3\r\n" in stats
    result(client.request(b"stats reset 27\r\n"), 200, b"STATS\r\nreset ok\r\nEND\r\n")
    help_body = result(client.request(b"stats help 28\r\n"), 200)
    assert len(help_body) == 252
    assert result(client.request(b"stats config 29\r\n"), 200) == broker.config_path.read_bytes()
    reply = client.request(b"transaction TX:s1:1 s1 BEGIN 30\r\n")
    assert reply.code == 503 and b"TransactionCommand" in bytes(reply.body)
    assert client.request(b"stats\r\n").opaque == 2147483647
    client.send(b"quit\r\n")
    assert client.closed_by_peer()


def test_storage_layout_after_stop_is_metaqs(brokers):
    broker = brokers(workers=1)
    client = WireClient(broker.port)
    for i in range(3):
        put_ok(client.request(b"put test 0 5 0 -1 %d\r\nhello" % i))
    put_ok(client.request(b"put test 0 18 1 1880085488 8\r\n" + ATTR_BODY))
    answer = bytes(client.request(b"get test g 0 0 1048576 9\r\n").data)
    client.close()
    assert broker.stop() == 0
    segment = broker.data_path / "test-0" / "00000000000000000000.meta"
    assert segment.read_bytes() == answer and len(answer) == 113


def test_roll_vector_max_segment_size_50(brokers):
    broker = brokers(workers=1, system={"maxSegmentSize": 50})
    client = WireClient(broker.port)
    for i in range(3):
        put_ok(client.request(b"put test 0 5 0 -1 %d\r\nhello" % i))
    client.close()
    assert broker.stop() == 0
    files = sorted((p.name, p.stat().st_size) for p in (broker.data_path / "test-0").glob("*.meta"))
    assert files == [("00000000000000000000.meta", 50), ("00000000000000000050.meta", 25)]


def test_closed_partition_refuses_with_403_and_reopens(broker, client):
    put_ok(client.request(b"put test 0 5 0 -1 1\r\nhello"))
    result(client.request(b"admin closePartitions test 0 0 2\r\n"), 200)
    result(client.request(b"get test g 0 0 1024 50\r\n"), 403, b"Partition[0-0] has been closed")
    result(client.request(b"put test 0 5 0 -1 51\r\nhello"), 403,
           f"Put message to [broker '{broker.url}'] [partition 'test-0'] failed.Detail:partition[0-0] "
           "has been closed".encode())
    other = WireClient(broker.port)  # every worker sees it
    result(other.request(b"put test 0 5 0 -1 52\r\nhello"), 403)
    assert put_ok(other.request(b"put test 1 5 0 -1 53\r\nhello"))[1] == 1
    result(client.request(b"admin openPartitions test 54\r\n"), 200)
    assert put_ok(client.request(b"put test 0 5 0 -1 55\r\nhello"))[2] == 25
    other.close()


def test_closing_an_absurd_partition_range_is_refused_and_the_worker_lives(broker, client):
    pids = broker.worker_pids()
    started = time.monotonic()
    reply = client.request(b"admin closePartitions test 0 2000000000 60\r\n", timeout_s=10)
    assert reply.code == 400 and b"at most 10000 partitions" in bytes(reply.body), reply
    assert time.monotonic() - started < 5  # refused up front, not after building the set
    result(client.request(b"admin closedPartitions 61\r\n"), 200)
    assert put_ok(client.request(b"put test 0 5 0 -1 62\r\nhello"))
    assert broker.worker_pids() == pids


def test_unknown_command_and_bad_token_counts_close_the_connection(broker):
    bad = WireClient(broker.port)
    bad.send(b"hello\r\n")
    assert bad.closed_by_peer()
    bad = WireClient(broker.port)
    bad.send(b"put test 0 5 0 1 2 3 4\r\nhello")
    assert bad.closed_by_peer()
    good = WireClient(broker.port)
    assert good.request(b"version 5\r\n").code == 200


def test_oversized_put_answers_400_and_the_connection_goes_on(brokers):
    broker = brokers(workers=1, system={"maxMessageSize": 1000})
    client = WireClient(broker.port)
    reply = client.request(b"put test 0 2000 0 -1 7\r\n" + b"x" * 2000)
    assert reply.code == 400 and reply.opaque == 7
    assert put_ok(client.request(b"put test 0 5 0 -1 8\r\nhello"))[2] == 0


def test_a_run_of_puts_larger_than_a_batch_is_stored_in_parts(brokers):
    """Big messages pipelined to one partition: a run of them exceeds maxBatchBytes; each
    worker (the owner appending, the other forwarding as putm) splits it, nothing is refused."""
    broker = brokers(workers=2, topics={"test": {"numPartitions": 2}},
                     system={"maxMessageSize": 3000, "maxBatchBytes": 7000})
    client = WireClient(broker.port)
    try:
        payloads = [bytes([i]) * 2900 for i in range(20)]
        for partition in (0, 1):  # one of the two is owned by the worker this connection hit
            client.send(b"".join(b"put test %d 2900 0 -1 %d\r\n" % (partition, i) + p
                                 for i, p in enumerate(payloads)))
            replies = client.replies(len(payloads))
            assert [r.opaque for r in replies] == list(range(len(payloads)))
            assert [put_ok(r)[2] for r in replies] == [i * 2920 for i in range(len(payloads))]
            data = b""
            while len(data) < 2920 * len(payloads):
                data += bytes(client.request(
                    b"get test g %d %d 1048576 99\r\n" % (partition, len(data))).data)
            assert MessageSet.decode(data).payloads() == payloads
    finally:
        client.close()


def test_pipelined_puts_are_answered_in_order_of_opaque(broker, client):
    count = 3000
    payloads = [os.urandom(50) for _ in range(count)]
    stream = b"".join(b"put test %d 50 0 -1 %d\r\n" % (i % 2, i) + p for i, p in enumerate(payloads))
    client.send(stream)
    replies = client.replies(count)
    assert [r.opaque for r in replies] == list(range(count))
    offsets = {0: [], 1: []}
    for i, reply in enumerate(replies):
        _, partition, offset = put_ok(reply)
        assert partition == i % 2
        offsets[partition].append(offset)
    for partition in (0, 1):  # stored in request order, back to back
        assert offsets[partition] == [k * 70 for k in range(count // 2)]
        data = b""
        while len(data) < 70 * (count // 2):
            data += bytes(client.request(b"get test g %d %d 1048576 1\r\n" % (partition, len(data))).data)
        got = MessageSet.decode(data).payloads()
        assert got == payloads[partition::2]


def test_getm_extension_returns_whole_records_with_index(broker, client):
    for i in range(10):
        put_ok(client.request(b"put test 0 %d 0 -1 %d\r\n" % (i + 1, i) + b"x" * (i + 1)))
    client.send(b"getm test g 0 0 100 3\r\n")
    reply = client.reply()
    # records of 21, 22, 23, 24 bytes fit in 100; the 25-byte fifth does not
    assert reply.count == 4 and reply.record_lengths().tolist() == [1, 2, 3, 4]
    decoded = MessageSet.decode_with_lengths(bytes(reply.data), reply.record_lengths())
    assert decoded.payloads() == [b"x", b"xx", b"xxx", b"xxxx"]
    result(client.request(b"getm test g 0 5 100 4\r\n"), 301, b"0")


def puts_forwarded(broker) -> float:
    """metaq_puts_forwarded on the broker's /metrics: the ``forwarded`` counter of every worker."""
    url = f"http://127.0.0.1:{broker.info['dashboard_port']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    values = [s.value for family in text_string_to_metric_families(text) for s in family.samples
              if s.name in ("metaq_puts_forwarded", "metaq_puts_forwarded_total")]
    assert len(values) == 1, values
    return values[0]


def test_layout_lets_a_client_reach_the_owning_worker_directly(brokers):
    from metaq_fast.layout import owner_of

    broker = brokers(workers=2, topics={"test": {"numPartitions": 2}},
                     system={"dashboardHttpPort": 0})
    client = WireClient(broker.port)
    try:
        lines = result(client.request(b"admin layout 1\r\n"), 200).decode().splitlines()
        assert lines[:2] == ["workers 2", "owner crc32-plus-partition"]
        ports = {int(slot): int(port) for _, slot, port in (l.split() for l in lines[2:])}
        assert set(ports) == {0, 1} and broker.port not in ports.values()
        for partition in (0, 1):
            direct = WireClient(ports[owner_of("test", partition, 2)])
            put_ok(direct.request(b"put test %d 5 0 -1 2\r\nhello" % partition))
            direct.close()
        stats = result(client.request(b"stats  3\r\n"), 200)
        assert b"cmd_put 2\r\n" in stats and b"put_failed 0\r\n" in stats
        # nothing was forwarded: each put reached its owner
        assert puts_forwarded(broker) == 0
        # and the counter does count: a put sent to the other worker's port is forwarded once
        other = WireClient(ports[1 - owner_of("test", 0, 2)])
        assert put_ok(other.request(b"put test 0 5 0 -1 4\r\nagain"))[1:] == (0, 25)
        other.close()
        assert puts_forwarded(broker) == 1
    finally:
        client.close()