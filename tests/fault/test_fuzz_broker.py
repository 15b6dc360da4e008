"""Random and mutated frames against a live broker: it answers or closes, never crashes.

Each input goes to a fresh connection, whole, byte by byte, or in random chunks. After each one
a healthy client must still be served, no worker may have restarted, and the broker log may not
hold a traceback (a handled exception would still be a bug). Seeded, bounded in count and time.
"""

import errno
import os
import random
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from metaq_fast.errors import ProtocolError
from metaq_fast.protocol import NEED_DATA, ResponseDecoder

from tests.brokers import WireClient

VALID = [
    b"put test 0 5 0 -1 1\r\nhello",
    b"put test 1 5 0 907060870 2\r\nhello",
    b"put test 0 5 0 3\r\nhello",
    b"put test 0 5 0 -1 TX:s:1 4\r\nhello",
    b"get test g 0 0 1024 5\r\n",
    b"getm test g 0 0 1024 6\r\n",
    b"offset test g 0 0 7\r\n",
    b"stats topics 8\r\n",
    b"stats  9\r\n",
    b"version 10\r\n",
    b"sync test 0 5 0 9999 777 11\r\nhello",
    b"transaction TX:s:1 s BEGIN 12\r\n",
    b"admin closedPartitions 13\r\n",
    b"putm test 0 1 29 -1 14\r\n" + bytes.fromhex("00000005") + bytes(20) + b"hello",
]


def mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op == 1:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2 and data:
            del data[pos : pos + rng.randint(1, 8)]
        elif op == 3:
            data[pos:pos] = rng.choice([b" ", b"\r\n", b"-1", b"99999999999", b"\x00", b" 0"])
        else:
            data[pos:pos] = rng.choice(VALID)
    return bytes(data)


def send(port: int, data: bytes, how: str, rng: random.Random) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    decoder = ResponseDecoder()
    try:
        if how == "whole":
            sock.sendall(data)
        elif how == "bytes":
            for i in range(len(data)):
                sock.sendall(data[i : i + 1])
        else:
            i = 0
            while i < len(data):
                n = rng.randint(1, 64)
                sock.sendall(data[i : i + n])
                i += n
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # ENOTCONN: the broker has closed it already (then recv says so)
            pass
        sock.settimeout(3)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            decoder.feed(chunk)
            while decoder.next_command() is not NEED_DATA:
                pass  # every reply the broker sends must be a well-formed frame
    except ProtocolError as exc:
        raise AssertionError(f"broker sent a malformed reply to {data[:80]!r}: {exc}") from exc
    except socket.timeout as exc:
        # we shut our side down, so the broker must answer and close (EOF), never just hang
        raise AssertionError(f"broker neither answered nor closed after {data[:80]!r}") from exc
    except ConnectionError:
        pass  # the broker reset or closed the connection: an allowed answer to bad bytes
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:  # closed by the broker before we shut our side down
            raise
    finally:
        sock.close()


@pytest.fixture(scope="module")
def fuzz_broker(tmp_path_factory):
    from tests.brokers import BrokerProcess

    broker = BrokerProcess(tmp_path_factory.mktemp("fuzz"), workers=2,
                           topics={"test": {"numPartitions": 2}},
                           system={"maxMessageSize": 4096, "maxBatchBytes": 65536})
    broker.start()
    yield broker
    broker.stop()


def check_healthy(broker, workers_before) -> None:
    client = WireClient(broker.port, timeout_s=5)
    assert client.request(b"version 77\r\n").code == 200
    assert client.request(b"put test 0 2 0 -1 78\r\nok").code == 200
    client.close()
    assert broker.alive()
    assert set(broker.worker_pids()) == workers_before, "a worker crashed and was restarted"


def test_seeded_mutations_and_garbage(fuzz_broker):
    rng = random.Random(20261125)
    workers = set(fuzz_broker.worker_pids())
    deadline = time.monotonic() + 90
    for i in range(300):
        if time.monotonic() > deadline:
            break
        kind = rng.random()
        if kind < 0.6:
            data = b"".join(mutate(rng, rng.choice(VALID)) for _ in range(rng.randint(1, 3)))
        elif kind < 0.8:
            data = os.urandom(rng.randint(1, 300))
        else:
            data = b"".join(rng.choice(VALID) for _ in range(rng.randint(1, 5))) + os.urandom(rng.randint(0, 40))
        send(fuzz_broker.port, data, rng.choice(["whole", "bytes", "chunks"]), rng)
        if i % 25 == 0:
            check_healthy(fuzz_broker, workers)
    check_healthy(fuzz_broker, workers)
    assert "Traceback" not in fuzz_broker.log_text()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.sampled_from(VALID), st.binary(max_size=60)), min_size=1, max_size=6),
       st.sampled_from(["whole", "chunks"]))
def test_hypothesis_frames(fuzz_broker, parts, how):
    workers = set(fuzz_broker.worker_pids())
    send(fuzz_broker.port, b"".join(parts), how, random.Random(len(parts)))
    check_healthy(fuzz_broker, workers)
    assert "Traceback" not in fuzz_broker.log_text()


def test_oversized_line_and_huge_declared_length_are_refused(fuzz_broker):
    workers = set(fuzz_broker.worker_pids())
    rng = random.Random(1)
    send(fuzz_broker.port, b"put " + b"x" * 100_000, "whole", rng)  # no CRLF: line too long
    send(fuzz_broker.port, b"put test 0 2000000000 0 -1 1\r\n", "whole", rng)  # above framing
    send(fuzz_broker.port, b"putm test 0 100000000 1 -1 1\r\n", "whole", rng)
    check_healthy(fuzz_broker, workers)
    assert "Traceback" not in fuzz_broker.log_text()
