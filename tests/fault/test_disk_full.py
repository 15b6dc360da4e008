"""A real full disk under a running broker (issue 11 item 8).

The test mounts a 40 MB tmpfs (tests run as root), fills most of it with a ballast file, points
the broker's dataPath at the rest, and puts until the storage's ``posix_fallocate`` finds no
space. Then: every refused put says "disk full", the log has one line for the change of state
(not one per put), the refusals are counted (``/metrics`` and ``stats storage``), gets go on, and
once the ballast is deleted puts succeed again by themselves, logged once.

A second test runs the partition log itself on the same kind of filesystem, at the edges a full
disk can meet it: a new segment that cannot be created (its sidecars reserved first), a data file
that cannot grow, an index that cannot grow half-way through an append. After each refusal the
log must hold exactly what it acknowledged, keep no descriptor per failed attempt, and append
again once space frees. Both skip when a tmpfs cannot be mounted here, unless ``$CI`` is true
(then they fail).
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest

from metaq_fast import message
from metaq_fast.errors import StorageError
from metaq_fast.message import MessageSet
from metaq_fast.protocol import ResultReply, ValueReply
from metaq_fast.storage import FlushPolicy, MessageIdAllocator, PartitionLog

from tests.brokers import WireClient
from tests.helpers import scrape, skip_or_fail

FS_BYTES = 40 * 1024 * 1024
BALLAST_BYTES = 26 * 1024 * 1024  # leaves ~14 MB: three 4 MiB segments and their sidecars
SEGMENT_BYTES = 4 * 1024 * 1024  # maxSegmentSize: each segment's blocks come in one fallocate
PAYLOAD_BYTES = 64 * 1024
PUTS_PER_SEND = 16  # about 1 MiB per send
FILL_SENDS_MAX = 64  # 64 MiB offered to a 40 MB filesystem: it fills long before


def unavailable(reason: str) -> NoReturn:
    skip_or_fail(f"cannot mount a small filesystem: {reason}")


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 40 MB tmpfs, unmounted at the end (after the brokers fixture stopped the broker)."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    if os.geteuid() != 0:
        unavailable("not root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES}", "tmpfs",
                           str(mount_point)], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        unavailable(done.stderr.strip())
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], timeout=30)


def put(opaque: int, data: bytes) -> bytes:
    return b"put test 0 %d 0 -1 %d\r\n" % (len(data), opaque) + data


def payload(i: int) -> bytes:
    return i.to_bytes(8, "big") * (PAYLOAD_BYTES // 8)


def log_lines(broker, text: str) -> list[str]:
    return [line for line in broker.log_text().splitlines() if text in line]


def storage_stats(client: WireClient) -> dict[str, str]:
    reply = client.request(b"stats storage 99\r\n")
    assert isinstance(reply, ResultReply) and reply.code == 200, reply
    lines = bytes(reply.body).decode().split("\r\n")[1:-2]
    return {k: v for k, _, v in (line.partition(" ") for line in lines)}


def test_a_full_disk_refuses_puts_once_logged_serves_gets_and_recovers(small_fs, brokers):
    ballast = small_fs / "ballast"
    with open(ballast, "wb") as f:
        for _ in range(BALLAST_BYTES // (1 << 20)):
            f.write(b"\xa5" * (1 << 20))
    broker = brokers(workers=2, topics={"test": {"numPartitions": 1}}, data_path=small_fs / "data",
                     system={"maxSegmentSize": SEGMENT_BYTES, "dashboardHttpPort": 0})
    port = broker.info["dashboard_port"]
    # one connection per worker: test-0 is appended by one, forwarded (putm) by the other
    clients = [WireClient(p) for p in broker.info["direct_ports"]]
    try:
        stored, refused, opaque = [], 0, 0
        for send in range(FILL_SENDS_MAX):
            client = clients[send % 2]
            batch = [payload(opaque + i) for i in range(PUTS_PER_SEND)]
            client.send(b"".join(put(opaque + i, data) for i, data in enumerate(batch)))
            replies = client.replies(PUTS_PER_SEND, timeout_s=30)
            assert [r.opaque for r in replies] == list(range(opaque, opaque + PUTS_PER_SEND))
            opaque += PUTS_PER_SEND
            for reply, data in zip(replies, batch):
                if reply.code == 200:
                    stored.append(data)
                    continue
                assert reply.code == 500 and "disk full" in bytes(reply.body).decode(), \
                    (reply.code, bytes(reply.body))
                refused += 1
            if refused:
                break
        assert refused, f"the filesystem never filled ({len(stored)} puts stored)"
        assert stored, "nothing was stored before the disk filled"

        # many more refusals: each answered and counted, none logged again
        for send in range(20):
            client = clients[send % 2]
            client.send(b"".join(put(opaque + i, b"y" * 100 + payload(i)) for i in range(10)))
            replies = client.replies(10, timeout_s=30)
            opaque += 10
            for reply in replies:
                assert reply.code == 500 and "disk full" in bytes(reply.body).decode()
                refused += 1
        single = clients[1].request(put(opaque, payload(0)))  # a put alone in its read
        assert single.code == 500 and b"disk full" in bytes(single.body)
        refused += 1
        opaque += 1

        full_lines = log_lines(broker, "puts to test-0 refused")
        assert len(full_lines) == 1, full_lines
        assert "disk full" in full_lines[0]
        assert len(log_lines(broker, "No space left on device")) == 1
        assert scrape(port)[("metaq_put_disk_full_refusals_total", frozenset())] == refused
        assert scrape(port)[("metaq_partition_disk_full_refusals_total", frozenset(
            {"topic": "test", "partition": "0"}.items()))] == refused
        assert storage_stats(clients[0])["disk_full_refusals"] == str(refused)

        # reads go on, from either worker
        for i, client in enumerate(clients):
            value = client.request(b"get test g 0 0 1048576 %d\r\n" % (9000 + i))
            assert isinstance(value, ValueReply), value
            got = MessageSet.decode(bytes(value.data)).payloads()
            assert got and got == stored[:len(got)]

        ballast.unlink()  # space frees: puts succeed again without anything else done
        for i, client in enumerate(clients):
            reply = client.request(put(opaque + i, payload(opaque + i)))
            assert reply.code == 200, bytes(reply.body)
            stored.append(payload(opaque + i))
        back = log_lines(broker, "puts to test-0 are stored again")
        assert len(back) == 1, back
        assert len(log_lines(broker, "puts to test-0 refused")) == 1

        # everything acknowledged is there, in order, and nothing refused slipped in
        offset, got = 0, []
        while len(got) < len(stored):
            value = clients[0].request(b"get test g 0 %d 1048576 9100\r\n" % offset)
            assert isinstance(value, ValueReply), value
            decoded = MessageSet.decode(bytes(value.data))
            assert decoded.payloads(), f"no whole message at offset {offset}"
            got += decoded.payloads()
            offset += decoded.consumed
        assert got == stored
    finally:
        for client in clients:
            client.close()


# ---- the partition log on a full disk --------------------------------------------------------

# name, maxSegmentSize, data bytes of a record (min, max), records per append, bytes left free,
# and the failures the case must meet: for each group, a refused allocation in a file of it
STORAGE_CASES = (
    ("small segments: new segments and their data meet the full disk", 64 * 1024, (100, 3000),
     (1, 40), 2 * 1024 * 1024, ({".meta"}, {".idx", ".chk", ".sum"})),
    ("tiny records: an index cannot grow half-way through an append", 8 * 1024 * 1024, (1, 16),
     (200, 800), 10 * 1024 * 1024, ({".idx", ".chk"},)),
)
BALLAST_PIECE_BYTES = 32 * 1024  # freed one at a time: each allocation fails more than once
ROUNDS_MAX = 60


def open_log(directory: Path, segment_bytes: int) -> PartitionLog:
    return PartitionLog(directory, "full", 0, segment_bytes_max=segment_bytes,
                        flush_policy=FlushPolicy(1000, 10_000), ids=MessageIdAllocator(0))


def append(log: PartitionLog, datas: list[bytes], how: int) -> None:
    if len(datas) == 1 and how == 0:
        log.append_one(datas[0])
    elif how == 1:
        lengths = np.array([len(d) for d in datas], dtype=np.int64)
        records = message.encode_records(datas, 0, 0, message.crc32_many(datas), lengths)
        log.append_message_set(records, lengths, verify_crcs=True)
    else:
        log.append_datas(datas)


def stored_payloads(log: PartitionLog) -> list[bytes]:
    got, offset = [], log.first_offset
    while offset < log.visible_end:
        part = log.read(offset, 1 << 20)
        decoded = MessageSet.decode(bytes(part.view))
        assert decoded.consumed, f"no whole record at {offset}"
        got += decoded.payloads()
        offset += decoded.consumed
    return got


def index_matches_data(log: PartitionLog) -> bool:
    """Every segment's index holds exactly one entry per stored record: its position (the
    length chain of the data) and its id/flag check. A half-published append would leave one
    table longer than the other or an entry that does not start a record."""
    starts = log.segment_starts()
    for i, start in enumerate(starts):
        segment = log._open_segment(i)  # white box: the index is what reads and recovery trust
        end = (log.visible_end if i == len(starts) - 1 else starts[i + 1]) - start
        index = segment.index
        positions = index.position_array().astype(np.int64)
        checks = index.checks.entries()
        if len(checks) != len(positions) or (len(positions) == 0) != (end == 0):
            return False
        if not len(positions):
            continue
        headers = message.gather_headers(segment.data_view(0, end), positions)
        ends = positions + message.HEADER_BYTES + headers["length"].astype(np.int64)
        if positions[0] != 0 or ends[-1] != end or not (positions[1:] == ends[:-1]).all():
            return False
        if not (checks == message.header_checks(headers["msg_id"], headers["flag"])).all():
            return False
    return True


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("case", STORAGE_CASES, ids=[c[0] for c in STORAGE_CASES])
def test_the_log_on_a_full_disk_keeps_what_it_acknowledged_and_goes_on(small_fs, case):
    _name, segment_bytes, (low, high), (fewest, most), free_bytes, must_meet = case
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    stat = os.statvfs(small_fs)
    pieces = []
    for i in range(max(0, stat.f_bavail * stat.f_frsize - free_bytes) // BALLAST_PIECE_BYTES):
        pieces.append(small_fs / f"ballast-{i}")
        pieces[-1].write_bytes(b"\x5a" * BALLAST_PIECE_BYTES)
    directory = small_fs / "data"
    log = open_log(directory, segment_bytes)
    acked: list[bytes] = []
    met: set[str] = set()
    counter = 0

    def batch() -> list[bytes]:
        nonlocal counter
        datas = []
        for _ in range(rng.randint(fewest, most)):
            counter += 1
            size = rng.randint(low, high)
            datas.append((counter.to_bytes(8, "big") * (size // 8 + 1))[:size])
        return datas

    def attempt() -> bool:
        datas = batch()
        try:
            append(log, datas, rng.randrange(3))
        except StorageError as exc:
            text = str(exc)
            assert text.startswith("disk full") and "No space left" in text, (seed, text)
            met.add(Path(text.split(" in ", 1)[1].split(":", 1)[0]).suffix)
            return False
        acked.extend(datas)  # a smaller batch may fit where a larger one did not
        return True

    try:
        for round_ in range(ROUNDS_MAX):
            for _ in range(200_000):  # bounded: the disk fills long before
                if not attempt():
                    break
            else:
                raise AssertionError(f"seed {seed}: the filesystem never filled")
            fds = open_fds()
            for _ in range(10):  # refused again and again: nothing leaks, nothing half-stored
                attempt()
            assert open_fds() <= fds, f"seed {seed}: descriptors left by failed appends"
            assert stored_payloads(log) == acked, f"seed {seed}, round {round_}"
            assert index_matches_data(log), f"seed {seed}, round {round_}: index != data"
            if all(group & met for group in must_meet) or not pieces:
                break
            pieces.pop().unlink()  # a little space frees
        assert all(group & met for group in must_meet), (seed, met)

        for piece in pieces:  # space frees: appends go on by themselves
            piece.unlink()
        for _ in range(50):
            datas = batch()
            append(log, datas, rng.randrange(3))
            acked += datas
        assert stored_payloads(log) == acked, f"seed {seed}"
        log.close()
        log = open_log(directory, segment_bytes)  # and a reopen keeps exactly the same
        assert log.recovered_bytes_dropped == 0, f"seed {seed}"
        assert stored_payloads(log) == acked, f"seed {seed}"
        assert index_matches_data(log), f"seed {seed}: index != data after the reopen"
    finally:
        log.close()
