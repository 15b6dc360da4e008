"""The master's and the follower's halves of replication in one process, on real partition logs
(broker/replica_leader.py, broker/replica_follower.py): the master answers, the follower
applies, until they agree. Each case is a defect found in review; each fails on the code before
its fix.

* a slave whose copy starts after retention deleted the master's first epoch entry converges
  (it looped on ``diverged`` answers it could not apply);
* a follower holding records of an epoch the master never had is cut back, even when its end
  is below the master's (it kept them, then failed on the next epoch);
* a follower whose last epoch began at its end, with no record in it, is not answered
  ``diverged`` forever (a case of the fix for the one before, not of the old code);
* in sync mode a follower's listed offset counts for acknowledgements only once the answer
  finds it the master's (a divergent follower released acknowledgements);
* a fetch that only meets partitions the master lacks waits instead of being answered at once
  (the follower asked again at once, in a loop);
* a replica name outside the progress block is refused, not a traceback in the worker.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from metaq_fast.broker.connection import Pending
from metaq_fast.broker.replica_control import ReplicaProgress, ReplicaRole
from metaq_fast.broker.replica_follower import ReplicaFollower
from metaq_fast.broker.replica_leader import ReplicaLeader
from metaq_fast.protocol import (FetchPosition, ReplicateCommand, ResponseDecoder,
                                 parse_replica_entries)
from metaq_fast.protocol.replication import encode_fetch_positions
from metaq_fast.storage import FlushPolicy, MessageIdAllocator, PartitionLog

LAZY = FlushPolicy(10**9, 10**9)


class Table:
    """What the leader and follower use of a PartitionTable: one owned log per partition."""

    def __init__(self, logs):
        self.logs = {(log_.topic, log_.partition): log_ for log_ in logs}

    def view(self, topic, partition):
        return self.logs.get((topic, partition))

    def log_for(self, topic, partition, create):
        return self.logs[(topic, partition)]


class Out:
    """A connection's reply queue, as the leader writes to it."""

    def __init__(self):
        self.queue, self.queued_bytes, self.closed = [], 0, False

    def write(self, data):
        self.queue.append(bytes(data))

    def write_many(self, buffers):
        self.queue.append(b"".join(bytes(b) for b in buffers))

    def _flush(self):
        pass

    def replies(self):
        decoder = ResponseDecoder()
        for item in self.queue:
            data = item.data if isinstance(item, Pending) else item
            if data is not None:
                decoder.feed(data)
        return decoder.read_commands()


def open_log(path, segment_bytes_max=1 << 20):
    return PartitionLog(path, "t", 0, segment_bytes_max=segment_bytes_max, flush_policy=LAZY,
                        ids=MessageIdAllocator(1))


def pair(tmp_path, master_log, follower_log, isr=("m", "s0"), min_isr=1):
    loop = asyncio.new_event_loop()
    leader = ReplicaLeader(loop, Table([master_log]), 0, 1, ReplicaProgress(1), "meta://m:1",
                           ack_timeout_s=30)
    leader.set_role(ReplicaRole("master", 9, "m", None, isr, min_isr))
    config = SimpleNamespace(replica_fetch_bytes_max=1 << 20, transfer_bytes_max=1 << 20,
                             slave=None)
    flusher = SimpleNamespace(appended=lambda log_: None)
    follower = ReplicaFollower(loop, Table([follower_log]), flusher, 0, 1, None, config)
    return loop, leader, follower


def fetch(leader, follower_log, wait_ms=0, replica="s0"):
    """One fetch of ``follower_log``'s position; the answer's entries (None: parked)."""
    position = FetchPosition("t", 0, follower_log.end_offset, follower_log.epochs.latest_epoch,
                             follower_log.active.start_offset)
    out = Out()
    leader.fetch(out, ReplicateCommand(replica, 9, 0, 1, wait_ms, 1 << 20,
                                       encode_fetch_positions([position]), 1))
    replies = out.replies()
    if not replies:
        return None
    assert replies[0].code == 200, replies[0]
    return parse_replica_entries(replies[0].body)


def copy_until_equal(leader, follower, master_log, follower_log, rounds=50):
    for _ in range(rounds):
        entries = fetch(leader, follower_log)
        if not entries:
            return
        follower._apply(entries)
    raise AssertionError(f"no agreement after {rounds} rounds: last answer {entries}")


def payloads(log_):
    out, offset = [], log_.first_offset
    from metaq_fast.message import MessageSet
    while offset < log_.visible_end:
        part = log_.read(offset, 1 << 20)
        decoded = MessageSet.decode(part.view, offset)
        out.extend(decoded.payloads())
        offset = decoded.next_offset
    return out


def test_a_new_slave_copies_a_log_whose_first_epoch_retention_deleted(tmp_path):
    master = open_log(tmp_path / "m", segment_bytes_max=100)
    master.epochs.assign(1, 0)
    for i in range(12):
        master.append_datas([b"m%02d" % i + b"x" * 27])
    master.epochs.assign(2, master.end_offset)
    for i in range(4):
        master.append_datas([b"n%02d" % i + b"y" * 27])
    while len(master.segment_starts()) > 3:
        master.drop_oldest_segment()
    follower_log = open_log(tmp_path / "s")
    _, leader, follower = pair(tmp_path, master, follower_log)
    copy_until_equal(leader, follower, master, follower_log)
    assert payloads(follower_log) == payloads(master)
    assert follower_log.first_offset == master.first_offset
    assert follower_log.epochs.entries[-1] == (2, master.epochs.entries[-1][1])


def test_records_of_an_epoch_the_master_never_had_are_cut_even_below_its_end(tmp_path):
    """Epoch 1 went further on the master than on the follower, which then led epoch 2
    alone; the master leads epoch 3. The follower's epoch-2 records end before the master's
    epoch 1 does, so the offset alone shows no divergence."""
    common = [b"c%02d" % i for i in range(5)]
    master = open_log(tmp_path / "m")
    master.epochs.assign(1, 0)
    master.append_datas(common + [b"one-more-%02d" % i for i in range(6)])
    master.epochs.assign(3, master.end_offset)  # epoch 2 was someone else's, never here
    master.append_datas([b"three-%02d" % i for i in range(10)])
    follower_log = open_log(tmp_path / "s")
    follower_log.epochs.assign(1, 0)
    follower_log.append_datas(common)
    follower_log.epochs.assign(2, follower_log.end_offset)
    follower_log.append_datas([b"two-more-%02d" % i for i in range(3)])  # same sizes
    assert follower_log.end_offset < master.epochs.entries[-1][1]  # below epoch 1's end
    _, leader, follower = pair(tmp_path, master, follower_log)
    copy_until_equal(leader, follower, master, follower_log)
    assert payloads(follower_log) == payloads(master)
    assert [e for e, _ in follower_log.epochs.entries] == [1, 3]


def test_an_empty_last_epoch_is_dropped_not_answered_diverged_forever(tmp_path):
    master = open_log(tmp_path / "m")
    master.epochs.assign(1, 0)
    master.append_datas([b"a", b"b"])
    follower_log = open_log(tmp_path / "s")
    follower_log.epochs.assign(1, 0)
    follower_log.append_datas([b"a", b"b"])
    follower_log.epochs.assign(5, follower_log.end_offset)  # claimed once, wrote nothing
    master.epochs.assign(6, master.end_offset)
    master.append_datas([b"c"])
    _, leader, follower = pair(tmp_path, master, follower_log)
    copy_until_equal(leader, follower, master, follower_log)
    assert payloads(follower_log) == [b"a", b"b", b"c"]


def test_a_divergent_follower_does_not_release_acknowledgements(tmp_path):
    master = open_log(tmp_path / "m")
    master.epochs.assign(1, 0)
    master.append_datas([b"x" * 10] * 10)
    follower_log = open_log(tmp_path / "s")
    follower_log.epochs.assign(1, 0)
    follower_log.append_datas([b"x" * 10] * 10)
    follower_log.append_datas([b"tail-nobody-has"] * 20)  # epoch 1, beyond the master's end
    loop, leader, follower = pair(tmp_path, master, follower_log, min_isr=2)
    result = master.append_datas([b"put"])
    ack = leader.ack_future(master, result.end_offset)
    assert ack is not None
    entries = fetch(leader, follower_log)  # lists an offset past the put's end
    assert [e.kind for e in entries] == ["diverged"]
    assert not ack.done()  # the follower does not hold our records up to there
    follower._apply(entries)
    follower._apply(fetch(leader, follower_log))  # copies the put
    fetch(leader, follower_log, wait_ms=500)  # now it says it holds it
    assert ack.done() and ack.exception() is None
    loop.close()


def test_a_fetch_meeting_only_missing_partitions_waits(tmp_path):
    master = open_log(tmp_path / "m")
    follower_log = PartitionLog(tmp_path / "s", "gone", 0, segment_bytes_max=1 << 20,
                                flush_policy=LAZY, ids=MessageIdAllocator(1))
    follower_log.append_datas([b"x"])
    loop, leader, follower = pair(tmp_path, master, follower_log)
    positions = [FetchPosition("gone", 0, follower_log.end_offset, 0, 0),
                 FetchPosition("t", 0, 0, 0, 0)]  # and caught up on the master's partition
    out = Out()
    leader.fetch(out, ReplicateCommand("s0", 9, 0, 1, 500, 1 << 20,
                                       encode_fetch_positions(positions), 1))
    assert out.replies() == []  # parked: the follower would ask again at once otherwise
    loop.close()


@pytest.mark.parametrize("replica", ["s63", "s100"])
def test_a_replica_outside_the_progress_block_is_refused(tmp_path, replica):
    master = open_log(tmp_path / "m")
    _, leader, _ = pair(tmp_path, master, open_log(tmp_path / "s"))
    out = Out()
    leader.fetch(out, ReplicateCommand(replica, 9, 0, 1, 0, 1 << 20, b"", 1))
    (reply,) = out.replies()
    assert reply.code == 503 and b"out of range" in bytes(reply.body)
