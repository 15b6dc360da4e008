"""Unit tests of metaq_fast.broker.connection.WorkerLink: the replies a worker reads back from
the worker that owns a partition, framed by the protocol's ResponseDecoder.

The owner is faked: a socket bound to the worker address in this process, which reads the
forwarded request and answers what the test scripts, keeping its end open (so a failure comes
from the frame, not from the link closing). The link runs on an asyncio loop whose exception
handler records anything a callback raised: a worker must never see one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from types import SimpleNamespace

import pytest

from metaq_fast.broker.connection import Pending, WorkerLink, unavailable, worker_address
from metaq_fast.protocol import encode_put_ok, encode_result

SLOT = 1
_names = itertools.count()


def fail_for(opaque: int):
    return lambda skip=0: unavailable("t", 0, [opaque])


def run_link(chunks: list[bytes], requests: int = 1, timeout_s: float = 2.0):
    """Forward ``requests`` puts over a fresh link, have the owner answer ``chunks`` (one send
    each), run the loop until every request is answered or ``timeout_s``; returns (link,
    answers (None: unanswered), exceptions the loop's callbacks raised)."""
    instance = f"test-{os.getpid()}-{next(_names)}"
    owner = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    owner.bind(worker_address(instance, SLOT))
    owner.listen(1)
    loop = asyncio.new_event_loop()
    raised = []
    loop.set_exception_handler(lambda _loop, context: raised.append(context))
    conn = SimpleNamespace(loop=loop, worker=SimpleNamespace(spec=SimpleNamespace(instance=instance)))
    peer = None
    try:
        link = WorkerLink(conn, SLOT)
        assert not link.broken
        pendings = []
        for opaque in range(requests):
            pending = Pending(lambda: None)
            link.send(b"put t 0 1 0 %d\r\nx" % opaque, 1, pending, fail_for(opaque))
            pendings.append(pending)
        peer, _ = owner.accept()
        peer.settimeout(2)
        got = b""
        while got.count(b"put ") < requests:
            got += peer.recv(65536)
        for chunk in chunks:
            peer.sendall(chunk)
            loop.run_until_complete(asyncio.sleep(0.01))
        deadline = time.monotonic() + timeout_s
        while any(p.data is None for p in pendings) and time.monotonic() < deadline:
            loop.run_until_complete(asyncio.sleep(0.01))
        return link, [p.data for p in pendings], raised
    finally:
        if peer is not None:
            peer.close()
        owner.close()
        loop.close()


def test_good_replies_pass_through_unchanged_whatever_the_chunking():
    frames = [encode_put_ok(7, 0, 100, 0), encode_result(403, b"partition closed", 1),
              encode_result(200, b"x" * 70_000, 2)]  # the last body is decoded as a view
    stream = b"".join(frames)
    chunks = [stream[:5], stream[5:40], stream[40:41], stream[41:]]
    link, answers, raised = run_link(chunks, requests=3)
    assert answers == frames
    assert not link.broken and not link.waiting and link.expected == 0 and not raised


MALFORMED = {
    "non-digit length": b"result 200 x5 0\r\nhello",
    "length beyond the framing limit": b"result 200 99999999999 0\r\n",
    "garbage line": b"hello world\r\n",
    "not a result": b"value 3 0\r\nabc",
}


@pytest.mark.parametrize("frame", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_frame_breaks_the_link_and_answers_503(frame, caplog):
    caplog.set_level(logging.ERROR, logger="metaq_fast.broker.connection")
    link, answers, raised = run_link([frame], requests=2)
    assert answers == [unavailable("t", 0, [0]), unavailable("t", 0, [1])]
    assert b"result 503 " in answers[0]  # retriable: the client's producer tries again
    assert link.broken and not link.waiting and not raised  # nothing reached the loop
    assert any("worker 1 answered a forwarded put with a malformed frame" in r.getMessage()
               for r in caplog.records)


def test_good_reply_then_garbage_answers_the_first_and_fails_the_rest():
    good = encode_put_ok(7, 0, 100, 0)
    link, answers, raised = run_link([good + b"result 200 -3 1\r\n"], requests=3)
    assert answers == [good, unavailable("t", 0, [1]), unavailable("t", 0, [2])]
    assert link.broken and not raised


def test_bytes_after_the_last_expected_reply_break_the_link_at_once():
    """The owner answers only what was asked: trailing bytes are found when they arrive, not
    when the next forwarded put (already stored by the owner) would be answered 503 for them."""
    good = encode_put_ok(7, 0, 100, 0)
    link, answers, raised = run_link([good + b"result 200 0 9\r\n"], requests=1)
    assert answers == [good]
    assert link.broken and not raised
