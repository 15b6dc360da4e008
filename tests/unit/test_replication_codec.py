"""The replication fetch codec (protocol/replication.py): round trips as properties, fed to the
request decoder byte by byte and in one piece, and malformed frames refused with a ProtocolError
(never another exception)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from metaq_fast.errors import ProtocolError
from metaq_fast.protocol import (
    FetchPosition,
    GetCommand,
    ReplicaEntry,
    ReplicateCommand,
    RequestDecoder,
    encode_replica_entries,
    encode_replicate,
    parse_replica_entries,
)

names = st.text("abcXYZ019._-", min_size=1, max_size=20)
u63 = st.integers(0, 2**63 - 1)
positions = st.lists(st.builds(FetchPosition, names, st.integers(0, 9999), u63, u63, u63),
                     max_size=20)


@settings(max_examples=200, deadline=None)
@given(positions=positions, replica=st.sampled_from(["m", "s0", "s7", "s123"]),
       epoch=st.integers(0, 2**31), slots=st.integers(1, 64), wait=st.integers(0, 60_000),
       opaque=st.integers(-2**31, 2**31 - 1), split=st.integers(0, 10_000))
def test_requests_round_trip_whatever_the_chunking(positions, replica, epoch, slots, wait,
                                                   opaque, split):
    wire = encode_replicate(replica, epoch, slots - 1, slots, wait, 1 << 20, positions, opaque)
    decoder = RequestDecoder()
    split = min(split, len(wire))
    decoder.feed(wire[:split])
    got = decoder.read_commands()
    decoder.feed(wire[split:] + b"get t g 0 0 10 1\r\n")
    got += decoder.read_commands()
    assert len(got) == 2 and isinstance(got[1], GetCommand)
    cmd = got[0]
    assert isinstance(cmd, ReplicateCommand)
    assert (cmd.replica, cmd.epoch, cmd.slot, cmd.slots, cmd.max_wait_ms, cmd.opaque) == \
        (replica, epoch, slots - 1, slots, wait, opaque)
    assert cmd.positions() == positions


entries = st.one_of(
    st.builds(lambda t, p, o, s, e, end, d: ReplicaEntry("data", t, p, o, s, e, end, d),
              names, st.integers(0, 9999), u63, u63, u63, u63, st.binary(max_size=300)),
    st.builds(lambda t, p, e, o: ReplicaEntry("diverged", t, p, offset=o, epoch=e),
              names, st.integers(0, 9999), u63, u63),
    st.builds(lambda t, p, o, e: ReplicaEntry("reset", t, p, offset=o, epoch=e), names,
              st.integers(0, 9999), u63, u63),
    st.builds(lambda t, p: ReplicaEntry("missing", t, p), names, st.integers(0, 9999)),
    st.builds(lambda t, p, r: ReplicaEntry("failed", t, p, reason=r), names,
              st.integers(0, 9999), st.text("abc xyz:", min_size=1, max_size=40).filter(str.strip)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(entries, max_size=12))
def test_answers_round_trip(items):
    body = b"".join(bytes(b) for b in encode_replica_entries(items))
    got = parse_replica_entries(body)
    expected = [e if e.kind != "failed" else ReplicaEntry("failed", e.topic, e.partition,
                                                           reason=" ".join(e.reason.split()))
                for e in items]
    assert [(g.kind, g.topic, g.partition, g.offset, g.segment_start, g.epoch, g.log_end,
             bytes(g.data), g.reason) for g in got] == \
        [(e.kind, e.topic, e.partition, e.offset, e.segment_start, e.epoch, e.log_end,
          bytes(e.data), e.reason) for e in expected]


@pytest.mark.parametrize("body", [
    b"data t 0 0 0 1 10 5 123\nabcde",  # checksum wrong
    b"data t 0 0 0 1 10 50 0\nabcde",  # runs past the answer
    b"data t 0 0 0 1 10\n",  # fields missing
    b"diverged t 0 x 4\n",
    b"moved t 0 4\n",
    b"reset t 0 -4 1\n",
    b"reset t 0 4\n",  # no epoch
    b"missing t 0 %s\n" % (b"9" * 5000),
    b"missing t\n",
    b"reset t 0 4 1",  # no end of line
    b"\xff\xfe t 0 1\n",
])
def test_malformed_answers_are_protocol_errors(body):
    with pytest.raises(ProtocolError):
        parse_replica_entries(body)


@pytest.mark.parametrize("line", [
    b"replicate x 0 0 1 0 10 0 1\r\n",  # bad replica name
    b"replicate s0 0 1 1 0 10 0 1\r\n",  # slot >= slots
    b"replicate s0 0 0 1 0 0 0 1\r\n",  # maxBytes 0
    b"replicate s0 -1 0 1 0 10 0 1\r\n",
    b"replicate s0 0 0 1 0 10 0\r\n",
])
def test_malformed_requests_are_refused(line):
    """A bad replicate line loses the framing (only our own slaves send it): a fatal error."""
    decoder = RequestDecoder()
    decoder.feed(line)
    with pytest.raises(ProtocolError) as info:
        decoder.read_commands()
    assert info.value.fatal and "replicate" in str(info.value)


def test_a_request_with_a_bad_entry_fails_when_read_not_when_decoded():
    decoder = RequestDecoder()
    decoder.feed(b"replicate s0 0 0 1 0 10 8 1\r\nt 0 x 0\n")
    (cmd,) = decoder.read_commands()
    with pytest.raises(ProtocolError):
        cmd.positions()
