"""Puts that meet trouble in a real broker: every request of a read gets its answer at once.

* A refused request in the middle of one read (issue 11 item 2): the decoder returns the good
  commands before it and keeps the error for the next call; the connection must drain it then,
  not wait for the client's next bytes.
* Storage that raises while creating a partition (item 3): a regular file where the partition's
  directory would go makes ``mkdir`` fail for real (tests run as root, so permissions would not
  stop it). Every put of every form (single, run, putm; local and forwarded) gets a 500 with the
  reason, the worker lives, the cause is logged once, and puts succeed once the file is gone.
"""

from __future__ import annotations

import numpy as np

from metaq_fast import message
from metaq_fast.protocol import PutBatchCommand, ResultReply, encode

from tests.brokers import WireClient
from tests.helpers import wait_until

TOPICS = {"test": {"numPartitions": 2}}


def put(partition: int, opaque: int, data: bytes = b"hello", topic: str = "test") -> bytes:
    return b"put %s %d %d 0 -1 %d\r\n" % (topic.encode(), partition, len(data), opaque) + data


def putm(partition: int, opaque: int, datas=(b"one", b"two")) -> bytes:
    lengths = np.array([len(d) for d in datas], dtype=np.int64)
    records = message.encode_records(list(datas), 0, 0, message.crc32_many(list(datas)), lengths)
    body = lengths.astype(">u4").tobytes() + bytes(records)
    return encode(PutBatchCommand("test", partition, len(datas), body, -1, opaque))


def codes(replies) -> list[tuple[int, int]]:
    for reply in replies:
        assert isinstance(reply, ResultReply), reply
    return [(r.opaque, r.code) for r in replies]


# ---- item 2: a deferred decoder error -------------------------------------------------------


def test_a_refused_put_between_good_ones_is_answered_without_more_bytes(brokers):
    broker = brokers(workers=2, topics=TOPICS, system={"maxMessageSize": 1000})
    for port in broker.info["direct_ports"]:  # partition 0 local on one, forwarded on the other
        client = WireClient(port)
        try:
            client.send(put(0, 1) + put(0, 2, b"x" * 2000) + put(0, 3) + put(1, 4)
                        + b"version 5\r\n")
            replies = client.replies(5, timeout_s=10)  # nothing more is sent
            assert codes(replies) == [(1, 200), (2, 400), (3, 200), (4, 200), (5, 200)]
            assert b"1000" in bytes(replies[1].body)  # names the limit it broke
        finally:
            client.close()


def test_a_good_put_then_undecodable_bytes_get_the_answer_then_the_close(brokers):
    broker = brokers(workers=1, topics=TOPICS)
    client = WireClient(broker.port)
    try:
        client.send(put(0, 1) + b"nonsense 1 2 3\r\n")
        assert codes([client.reply(timeout_s=10)]) == [(1, 200)]
        assert client.closed_by_peer(timeout_s=10), "the broker kept the broken stream open"
    finally:
        client.close()


# ---- item 3: storage raising in the put path -------------------------------------------------


def log_lines(broker, text: str) -> list[str]:
    return [line for line in broker.log_text().splitlines() if text in line]


def test_a_partition_that_cannot_be_created_answers_every_put_and_the_worker_lives(brokers):
    broker = brokers(start_now=False, workers=2, topics=TOPICS)
    broker.data_path.mkdir(parents=True)
    blocker = broker.data_path / "test-0"
    blocker.write_bytes(b"not a directory")  # mkdir of the partition fails: File exists
    broker.start()
    workers = dict(broker.info["workers"])
    clients = [WireClient(port) for port in broker.info["direct_ports"]]
    try:
        for round_ in range(10):  # many refusals, one log line
            for client in clients:
                base = round_ * 100
                client.send(put(0, base + 1) + b"version %d\r\n" % (base + 2)
                            + put(0, base + 3) + put(0, base + 4) + put(0, base + 5)
                            + putm(0, base + 6) + put(1, base + 7))
                replies = client.replies(7, timeout_s=10)
                assert codes(replies) == [(base + 1, 500), (base + 2, 200), (base + 3, 500),
                                          (base + 4, 500), (base + 5, 500), (base + 6, 500),
                                          (base + 7, 200)]
                for reply in replies[:1] + replies[2:6]:
                    body = bytes(reply.body).decode()
                    assert "test-0" in body and "File exists" in body, body
        assert dict(broker.info["workers"]) == workers
        assert set(broker.worker_pids()) == set(workers.values()), "a worker died"
        refused = log_lines(broker, "puts to test-0 refused")
        assert len(refused) == 1, refused
        assert "File exists" in refused[0]
        assert not log_lines(broker, "Exception in callback")

        blocker.unlink()  # the operator removes the stray file: puts go on by themselves
        for i, client in enumerate(clients):
            reply = client.request(put(0, 1000 + i))
            assert (reply.opaque, reply.code) == (1000 + i, 200), bytes(reply.body)
        wait_until(lambda: log_lines(broker, "puts to test-0 are stored again"), timeout_s=5)
        assert len(log_lines(broker, "puts to test-0 are stored again")) == 1
        assert set(broker.worker_pids()) == set(workers.values())
    finally:
        for client in clients:
            client.close()
