"""A failed fdatasync in a real broker (issue 11 item 4): never forgotten, never acknowledged.

This kernel has no device-mapper (no ``error``/``flakey`` target), so the fault is injected one
level up: a small ``LD_PRELOAD`` library, compiled here with gcc, makes ``fdatasync``/``fsync``
return EIO for files under one partition's directory while a trigger file exists. The broker
process takes a real failing syscall; as on Linux after a write-back error, the next fdatasync
(trigger removed) succeeds again, which is exactly when the old broker acknowledged the puts of
the failed flush. Skipped when gcc cannot build the library, unless ``$CI`` is true (then it
fails).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

from metaq_fast.message import MessageSet
from metaq_fast.protocol import ResultReply, ValueReply

from tests.brokers import WireClient
from tests.helpers import http_get, scrape, skip_or_fail, wait_until

SHIM_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* fdatasync/fsync fail with EIO on files under $METAQ_TEST_FSYNC_FAIL_DIR while the file
   $METAQ_TEST_FSYNC_FAIL_TRIGGER exists (only the call named by $METAQ_TEST_FSYNC_FAIL_ONLY,
   "fsync" or "fdatasync", if set); everything else goes to libc. */
static int failing(int fd, const char *call) {
    const char *dir = getenv("METAQ_TEST_FSYNC_FAIL_DIR");
    const char *trigger = getenv("METAQ_TEST_FSYNC_FAIL_TRIGGER");
    const char *only = getenv("METAQ_TEST_FSYNC_FAIL_ONLY");
    char link[64], path[4096];
    ssize_t n;
    size_t len;
    if (dir == NULL || trigger == NULL || access(trigger, F_OK) != 0)
        return 0;
    if (only != NULL && *only && strcmp(only, call) != 0)
        return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n < 0)
        return 0;
    path[n] = 0;
    len = strlen(dir);
    return strncmp(path, dir, len) == 0 && (path[len] == '/' || path[len] == 0);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (failing(fd, "fdatasync")) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (failing(fd, "fsync")) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}
"""


def unavailable(reason: str) -> NoReturn:
    skip_or_fail(f"fsync fault injection unavailable: {reason}")


@pytest.fixture(scope="module")
def fsync_shim(tmp_path_factory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        unavailable("no gcc")
    directory = tmp_path_factory.mktemp("fsync-shim")
    source = directory / "fail_fsync.c"
    source.write_text(SHIM_SOURCE)
    library = directory / "fail_fsync.so"
    built = subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-o", str(library), str(source),
                            "-ldl"], capture_output=True, text=True, timeout=120)
    if built.returncode != 0:
        unavailable(f"gcc failed: {built.stderr[-2000:]}")
    return library


def put(partition: int, opaque: int, data: bytes) -> bytes:
    return b"put test %d %d 0 -1 %d\r\n" % (partition, len(data), opaque) + data


def part(partition: int) -> frozenset:
    return frozenset({"topic": "test", "partition": str(partition)}.items())


def stats_lines(client: WireClient, item: str) -> dict[str, str]:
    reply = client.request(b"stats %s 77\r\n" % item.encode())
    assert isinstance(reply, ResultReply) and reply.code == 200, reply
    lines = bytes(reply.body).decode().split("\r\n")[1:-2]
    return {k: v for k, _, v in (line.partition(" ") for line in lines)}


def preloaded(pid: int, library: Path) -> bool:
    try:
        return str(library) in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def test_a_failed_fdatasync_fails_its_waiters_and_takes_the_partition_offline(
        brokers, fsync_shim, monkeypatch):
    # group commit (tests.brokers writes unflushThreshold=0): replies wait for the fdatasync
    broker = brokers(start_now=False, workers=2, topics={"test": {"numPartitions": 2}},
                     system={"dashboardHttpPort": 0})
    broker.data_path.mkdir(parents=True)
    trigger = broker.directory / "fail-fsync-now"
    monkeypatch.setenv("LD_PRELOAD", str(fsync_shim))
    monkeypatch.setenv("METAQ_TEST_FSYNC_FAIL_DIR", str(broker.data_path.resolve() / "test-0"))
    monkeypatch.setenv("METAQ_TEST_FSYNC_FAIL_TRIGGER", str(trigger))
    broker.start()
    workers = list(broker.info["workers"].values())
    if not all(preloaded(pid, fsync_shim) for pid in workers):
        unavailable("the library is not mapped in the broker's workers")
    port = broker.info["dashboard_port"]
    client = WireClient(broker.port)
    try:
        first = b"acknowledged before the fault"
        reply = client.request(put(0, 1, first))
        assert reply.code == 200, bytes(reply.body)
        assert client.request(put(1, 2, b"other partition")).code == 200

        trigger.touch()  # from now on fdatasync under test-0 fails with EIO
        client.send(put(0, 3, b"written while the disk fails"))
        wait_until(lambda: "Input/output error" in broker.log_text(), timeout_s=10,
                   message="the broker never called the failing fdatasync")
        trigger.unlink()  # the next fdatasync succeeds: it must not vouch for the failed one
        reply = client.reply(timeout_s=10)
        assert (reply.opaque, reply.code) == (3, 500), bytes(reply.body)
        body = bytes(reply.body).decode()
        assert "flush failed" in body and "Input/output error" in body, body

        for opaque in (4, 5):  # refused, whatever the disk does now
            reply = client.request(put(0, opaque, b"after the fault"))
            assert (reply.opaque, reply.code) == (opaque, 503), bytes(reply.body)
            assert "offline" in bytes(reply.body).decode()
        assert client.request(put(1, 6, b"other partition again")).code == 200

        value = client.request(b"get test g 0 0 1048576 7\r\n")  # reads go on
        assert isinstance(value, ValueReply), value
        assert MessageSet.decode(bytes(value.data)).payloads()[0] == first

        status, health = http_get(port, "/health")
        assert status == 503, health
        health = json.loads(health)
        assert [(o["topic"], o["partition"]) for o in health["offline_partitions"]] == \
            [("test", 0)]
        assert "Input/output error" in health["offline_partitions"][0]["reason"]
        assert "test-0" in health["detail"] and "restart" in health["detail"]
        samples = scrape(port)
        assert samples[("metaq_partition_offline", part(0))] == 1
        assert samples[("metaq_partition_offline", part(1))] == 0
        assert samples[("metaq_fsync_failures_total", frozenset())] == 1
        assert samples[("metaq_partition_fsync_failures_total", part(0))] == 1
        storage = stats_lines(client, "storage")
        assert (storage["fsync_failures"], storage["offline_partitions"]) == ("1", "1")
        assert "Input/output error" in storage["offline_test-0"]
        offline_lines = [line for line in broker.log_text().splitlines()
                         if "test-0 is offline" in line]
        assert len(offline_lines) == 1, offline_lines
        assert set(broker.worker_pids()) == set(workers)
    finally:
        client.close()

    # a restart while the disk still fails: the open's flush fails again and the partition is
    # offline from the start (not only once a put finds out)
    broker.stop()
    trigger.touch()
    broker.start()
    status, health = http_get(broker.info["dashboard_port"], "/health")
    assert status == 503 and "test-0" in json.loads(health)["detail"], health
    client = WireClient(broker.port)
    try:
        assert client.request(put(0, 10, b"refused")).code == 503
        assert client.request(put(1, 11, b"other partition")).code == 200
    finally:
        client.close()

    # recovery is a broker restart: the put answered 500 is not there (a producer retrying it
    # must not make a second copy), what was acknowledged is, and puts are taken again
    broker.stop()
    trigger.unlink()
    broker.start()
    assert "dropped the" in broker.log_text() and "never acknowledged" in broker.log_text()
    client = WireClient(broker.port)
    try:
        reply = client.request(put(0, 8, b"after the restart"))
        assert reply.code == 200, bytes(reply.body)
        wait_until(lambda: http_get(broker.info["dashboard_port"], "/health")[0] == 200,
                   timeout_s=10)
        value = client.request(b"get test g 0 0 1048576 9\r\n")
        payloads = MessageSet.decode(bytes(value.data)).payloads()
        assert payloads == [first, b"after the restart"], payloads
    finally:
        client.close()
