"""Client limits under a broker that stops answering (SIGSTOP of its whole process group):
the producer's buffer bound, retries that stay on a partition the user chose, and consumer
fetches that give up instead of stalling."""

import os
import signal
import time

import pytest

from metaq_fast.client.consumer import Consumer
from metaq_fast.client.producer import Producer
from metaq_fast.errors import BufferFullError
from metaq_fast.zk.paths import Partition

from tests.brokers import WireClient
from tests.helpers import wait_until

pytestmark = [pytest.mark.zk, pytest.mark.slow, pytest.mark.timeout(120)]


def frozen(broker):
    """SIGSTOP the broker (supervisor and workers); SIGCONT on exit."""
    class Frozen:
        def __enter__(self):
            os.killpg(broker.pid, signal.SIGSTOP)

        def __exit__(self, *exc):
            os.killpg(broker.pid, signal.SIGCONT)
    return Frozen()


def test_send_blocks_then_fails_clearly_when_the_buffer_is_full(brokers, zk_connect):
    broker = brokers(zk_connect=zk_connect, workers=1, system={"unflushThreshold": 1000})
    producer = Producer(zk_connect, buffer_bytes=64 * 1024, block_s=0.5, request_timeout_s=30,
                        linger_ms=1)
    try:
        producer.send_sync("test", b"warm")
        futures = []
        with frozen(broker):
            began = time.monotonic()
            with pytest.raises(BufferFullError, match="buffer_bytes"):
                for _ in range(10_000):
                    futures.append(producer.send("test", b"x" * 1000))
            assert time.monotonic() - began < 5
            assert 30 <= len(futures) < 100  # about 64 KiB held, no more
        producer.flush(30)
        assert all(f.exception(0) is None for f in futures)  # nothing buffered was lost
    finally:
        producer.close()


def test_retries_of_a_pinned_partition_stay_on_it(brokers, zk_connect):
    broker = brokers(zk_connect=zk_connect, workers=1, system={"unflushThreshold": 1000})
    admin = WireClient(broker.port)
    producer = Producer(zk_connect, retries=20, retry_backoff_ms=100)
    try:
        assert admin.request(b"admin closePartitions test 1 1 1\r\n").code == 200
        future = producer.send("test", b"pinned", partition="0-1")
        wait_until(lambda: producer.failed_attempts >= 2, timeout_s=10,
                   message="the closed partition was not retried")  # 403 is retriable
        assert not future.done()
        assert admin.request(b"admin openPartitions test 2\r\n").code == 200
        result = future.result(10)
        assert result.partition == Partition(0, 1)
        assert producer.failed_attempts >= 2
    finally:
        producer.close()
        admin.close()


def test_consumer_fetch_gives_up_on_a_silent_broker_and_recovers(brokers, zk_connect):
    broker = brokers(zk_connect=zk_connect, workers=1, system={"unflushThreshold": 1000},
                     topics={"test": {"numPartitions": 1}})
    producer = Producer(zk_connect)
    consumer = Consumer(zk_connect, group="g", topics=["test"], fetch_timeout_s=1.0,
                        max_fetch_delay_ms=500)
    try:
        producer.send_sync("test", b"before")
        got = []
        wait_until(lambda: got.extend(b for batch in consumer.poll(0.1) for b in batch.payloads())
                   or got == [b"before"], timeout_s=15)
        with frozen(broker):
            wait_until(lambda: consumer.fetch_timeouts >= 1, timeout_s=10,
                       message="the fetch to the frozen broker never timed out")
        producer.send_sync("test", b"after")
        wait_until(lambda: got.extend(b for batch in consumer.poll(0.1) for b in batch.payloads())
                   or b"after" in got, timeout_s=15)
        assert got == [b"before", b"after"]
    finally:
        consumer.close()
        producer.close()


def test_a_broker_that_stops_reading_fails_the_send_instead_of_stalling_it():
    """A peer that accepts and then never reads (a hung broker): the connection's send gives
    up after its send timeout, the request fails with a retriable connection error, and the
    sending thread is free again."""
    import socket

    from metaq_fast.client.connection import BrokerConnection
    from metaq_fast.errors import BrokerConnectionError

    with socket.create_server(("127.0.0.1", 0)) as server:
        conn = BrokerConnection("127.0.0.1", server.getsockname()[1], send_timeout_s=0.5)
        peer, _ = server.accept()  # accepted, never read
        try:
            began = time.monotonic()
            future = conn.submit(1, [b"x" * (1 << 20)] * 64)  # far more than the socket buffers
            error = future.exception(30)
            assert isinstance(error, BrokerConnectionError), error
            assert error.retriable
            assert time.monotonic() - began < 20
            assert conn.closed
        finally:
            conn.close()
            peer.close()
