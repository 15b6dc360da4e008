"""Operations against real brokers (and a real ZooKeeper where marked): MetaQ's ``stats`` items
after a known workload, the HTTP endpoint (/metrics, /health, /stats), ``metaq-admin`` run as a
subprocess (lists, group lag, offset reset, peek, close/open partitions, errors) and logging.

Workloads go through each worker's direct port (``ready.json`` ``direct_ports``), so both
workers of a broker count something and every figure checked is a sum over processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from metaq_fast.protocol import ResultReply, ValueReply

from tests.brokers import REPO, WireClient
from tests.helpers import free_port, http_get, scrape, skip_or_fail, wait_until

LONG_MAX = 2**63 - 1
PAYLOAD = b"0123456789"  # 10 bytes: every record is 30 bytes
RECORD = 20 + len(PAYLOAD)
REALTIME = re.compile(r"Count=(\d+),Value=(\d+),Value/Count=([0-9.]+|invalid),"
                      r"Count/Duration=([0-9.]+|invalid),Duration=(\d+)")


# ---- helpers -----------------------------------------------------------------------------------


def stats(client: WireClient, item: str = "") -> list[str]:
    reply = client.request(f"stats {item} 7\r\n".encode() if item else b"stats  7\r\n")
    assert isinstance(reply, ResultReply) and reply.code == 200, reply
    body = bytes(reply.body).decode()
    assert body.startswith("STATS\r\n") and body.endswith("END\r\n"), body
    return body.split("\r\n")[1:-2]


def as_dict(lines: list[str]) -> dict[str, str]:
    return {k: v for k, _, v in (line.partition(" ") for line in lines)}


def put(client: WireClient, topic: str, partition: int, payload: bytes = PAYLOAD,
        checksum: int = -1, flag: int = 0) -> ResultReply:
    return client.request(b"put %s %d %d %d %d 1\r\n" % (topic.encode(), partition, len(payload),
                                                        flag, checksum) + payload)


def put_ok(client, topic, partition, payload=PAYLOAD, flag=0) -> tuple[int, int]:
    reply = put(client, topic, partition, payload, flag=flag)
    assert reply.code == 200, bytes(reply.body)
    msg_id, _partition, offset = bytes(reply.body).split(b" ")
    return int(msg_id), int(offset)


def check_realtime(value: str, count: int, total: int | None = None) -> None:
    match = REALTIME.fullmatch(value)
    assert match, value
    got_count, got_value, per, per_s, duration = match.groups()
    total = count if total is None else total
    assert (int(got_count), int(got_value)) == (count, total), value
    if count:
        expected = total / count
        assert float(per) == pytest.approx(expected, abs=0.006), value
    else:
        assert per == "invalid"
    if int(duration) == 0:
        assert per_s == "invalid"
    else:
        assert float(per_s) == pytest.approx(count / int(duration), abs=0.006)


def admin(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    """metaq-admin as a real subprocess (``python -m metaq_fast.cli admin``)."""
    return subprocess.run([sys.executable, "-m", "metaq_fast.cli", "admin", *args],
                          capture_output=True, text=True, timeout=timeout_s, cwd=REPO,
                          stdin=subprocess.DEVNULL)


def admin_json(*args: str):
    done = admin("--json", *args)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    return json.loads(done.stdout)


def part(topic: str, partition: int) -> frozenset:
    return frozenset({"topic": topic, "partition": str(partition)}.items())


def worker_clients(broker) -> list[WireClient]:
    """One connection to each worker (its direct port)."""
    return [WireClient(port) for port in broker.info["direct_ports"]]


TOPICS = {"test": {"numPartitions": 2, "stat": "true"}, "other": {"numPartitions": 1},
          "empty": {"numPartitions": 1, "stat": "true"}}


def workload(clients: list[WireClient]) -> dict:
    """6 puts to test-0 and 4 to test-1 (spread over both workers), a refused put, 2 puts to
    other, 4 gets and a miss and a 301 on test, a get on other, 2 offset requests."""
    a, b = clients
    for i in range(6):
        put_ok((a, b)[i % 2], "test", 0)
    for i in range(4):
        put_ok((b, a)[i % 2], "test", 1)
    assert put(a, "test", 0, checksum=12345).code == 500  # checksum failure: put_failed
    put_ok(b, "other", 0)
    put_ok(a, "other", 0)
    served = 0
    for i, (client, offset) in enumerate(((a, 0), (b, 30), (a, 60), (b, 0))):
        reply = client.request(b"get test g %d %d 1048576 2\r\n" % (i % 2, offset))
        assert isinstance(reply, ValueReply)
        served += len(reply.data)
    assert a.request(b"get test g 0 180 1024 3\r\n").code == 404  # at the end: get_miss
    assert b.request(b"get test g 1 %d 1024 4\r\n" % LONG_MAX).code == 301  # miss + offset
    assert isinstance(b.request(b"get other g 0 0 1024 5\r\n"), ValueReply)
    assert bytes(a.request(b"offset test g 0 45 6\r\n").body) == b"0"
    assert bytes(b.request(b"offset test g 1 999 6\r\n").body) == b"120"
    return {"served_test": served}


# ---- stats ---------------------------------------------------------------------------------------


def test_stats_items_are_metaqs_with_the_broker_wide_counts(brokers):
    broker = brokers(workers=2, topics=TOPICS)
    clients = worker_clients(broker)
    workload(clients)
    a, b = clients

    system = stats(a)
    assert [line.split(" ")[0] for line in system] == [
        "pid", "broker_id", "port", "uptime", "version", "slave", "curr_connections", "threads",
        "cmd_put", "cmd_get", "cmd_offset", "tx_begin", "tx_xa_begin", "tx_commit",
        "tx_rollback", "get_miss", "put_failed", "total_messages", "topics", "config_checksum"]
    values = as_dict(system)
    assert values["pid"] == str(broker.pid) and values["port"] == str(broker.port)
    assert (values["cmd_put"], values["put_failed"], values["total_messages"]) == ("13", "1", "12")
    assert (values["cmd_get"], values["get_miss"], values["cmd_offset"]) == ("7", "2", "3")
    assert values["topics"] == "3" and int(values["curr_connections"]) >= 2
    # the same broker-wide figures whichever worker answers
    assert {k: v for k, v in as_dict(stats(b)).items() if k not in ("uptime", "threads")} == \
        {k: v for k, v in values.items() if k not in ("uptime", "threads")}

    assert stats(b, "topics") == [
        "other partitions 1 message_count 2 message_bytes 60 accept_publish true "
        "accept_subscribe true",
        "test partitions 2 message_count 10 message_bytes 300 accept_publish true "
        "accept_subscribe true",
        "empty *Empty*"]
    assert stats(a, "offsets") == ["other part 0 min_offset 0 max_offset 60",
                                   "test part 0 min_offset 0 max_offset 180",
                                   "test part 1 min_offset 0 max_offset 120"]

    # realtime: only stat=true topics (test), MetaQ's Count/Value format
    realtime = as_dict(stats(a, "realtime"))
    assert list(realtime) == ["realtime_put", "realtime_get", "realtime_offset",
                              "realtime_get_miss", "realtime_put_failed", "realtime_message_size"]
    check_realtime(realtime["realtime_put"], 11)
    check_realtime(realtime["realtime_get"], 6)
    check_realtime(realtime["realtime_offset"], 3)
    check_realtime(realtime["realtime_get_miss"], 2)
    check_realtime(realtime["realtime_put_failed"], 1)
    check_realtime(realtime["realtime_message_size"], 10, 10 * len(PAYLOAD))

    topic = stats(b, "test")
    assert topic[0] == "test"
    figures = as_dict(topic[1:])
    assert [figures[k] for k in ("resultCode", "partitions", "message_count", "bytes")] == \
        ["0", "2", "10", "300"]
    check_realtime(figures["topic_realtime_put"], 11)
    check_realtime(figures["topic_realtime_get"], 6)
    check_realtime(figures["topic_realtime_message_size"], 10, 100)
    other = as_dict(stats(a, "other")[1:])
    assert [other[k] for k in ("resultCode", "partitions", "message_count", "bytes")] == \
        ["0", "1", "2", "60"]
    assert other["topic_realtime_put"] == "Invalid keyTwo:other"  # stat=false: not recorded
    empty = as_dict(stats(a, "empty")[1:])
    assert (empty["resultCode"], empty["partitions"]) == ("2", "0")
    assert as_dict(stats(a, "nope")[1:])["resultCode"] == "1"

    assert stats(a, "reset") == ["reset ok"]
    realtime = as_dict(stats(b, "realtime"))
    check_realtime(realtime["realtime_put"], 0)
    put_ok(b, "test", 1)
    check_realtime(as_dict(stats(a, "realtime"))["realtime_put"], 1)
    check_realtime(as_dict(stats(a, "test")[1:])["topic_realtime_put"], 1)
    assert stats(a, "help")[0] == "*EMPTY* Returns broker info."
    config = a.request(b"stats config 8\r\n")
    assert bytes(config.body) == broker.config_path.read_bytes()
    for client in clients:
        client.close()


# ---- HTTP endpoint -------------------------------------------------------------------------------


def test_metrics_health_and_stats_over_http(brokers):
    broker = brokers(workers=2, topics=TOPICS, system={"dashboardHttpPort": 0})
    port = broker.info["dashboard_port"]
    assert isinstance(port, int) and port > 0
    clients = worker_clients(broker)
    served = workload(clients)["served_test"]

    samples = scrape(port)
    for partition, count in ((0, 6), (1, 4)):
        key = part("test", partition)
        assert samples[("metaq_partition_messages_put_total", key)] == count
        assert samples[("metaq_partition_bytes_put_total", key)] == count * RECORD
        assert samples[("metaq_partition_end_offset", key)] == count * RECORD
        assert samples[("metaq_partition_first_offset", key)] == 0
        assert samples[("metaq_partition_stored_bytes", key)] == count * RECORD
        assert samples[("metaq_partition_closed", key)] == 0
    assert samples[("metaq_partition_put_requests_total", part("test", 0))] == 7  # + refused
    assert samples[("metaq_partition_put_failures_total", part("test", 0))] == 1
    assert samples[("metaq_partition_get_requests_total", part("test", 0))] == 3
    assert samples[("metaq_partition_get_requests_total", part("test", 1))] == 3
    assert samples[("metaq_partition_get_misses_total", part("test", 0))] == 1
    assert samples[("metaq_partition_get_misses_total", part("test", 1))] == 1
    assert samples[("metaq_partition_offset_requests_total", part("test", 1))] == 2
    assert (samples[("metaq_partition_bytes_served_total", part("test", 0))]
            + samples[("metaq_partition_bytes_served_total", part("test", 1))]) == served
    assert samples[("metaq_partition_messages_put_total", part("other", 0))] == 2
    assert samples[("metaq_partition_end_offset", part("other", 0))] == 60
    system = as_dict(stats(clients[0]))
    for metric, key in (("metaq_put_requests_total", "cmd_put"),
                        ("metaq_get_requests_total", "cmd_get"),
                        ("metaq_put_failures_total", "put_failed"),
                        ("metaq_get_misses_total", "get_miss"),
                        ("metaq_offset_requests_total", "cmd_offset")):
        assert samples[(metric, frozenset())] == int(system[key]), metric
    assert samples[("metaq_messages_put_total", frozenset())] == 12
    assert sum(samples[("metaq_connections", frozenset({"worker": str(w)}.items()))]
               for w in (0, 1)) >= 2
    for worker in ("0", "1"):
        label = frozenset({"worker": worker}.items())
        assert samples[("metaq_worker_up", label)] == 1
        assert samples[("metaq_worker_restarts_total", label)] == 0
        assert samples[("metaq_flush_seconds_count", label)] >= 1  # group commit: flushed

    status, body = http_get(port, "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body = http_get(port, "/stats")
    assert status == 200
    answer = json.loads(body)
    assert answer["item"] == "system" and answer["stats"]["cmd_put"] == 13
    status, body = http_get(port, "/stats/offsets")
    assert json.loads(body)["offsets"][1] == {"topic": "test", "partition": 0, "min_offset": 0,
                                              "max_offset": 180}
    status, body = http_get(port, "/stats/test")
    answer = json.loads(body)
    assert answer["topic"] == "test" and answer["stats"]["message_count"] == 10
    assert http_get(port, "/nothing")[0] == 404
    # a second command smuggled into the stats item is refused, and never reaches the broker
    smuggled = "/stats/x%0D%0Aadmin%20closePartitions%20test%200%201%201"
    status, body = http_get(port, smuggled)
    assert status == 400 and "one word" in json.loads(body)["error"]
    assert scrape(port)[("metaq_partition_closed", part("test", 0))] == 0

    # a dying worker: /health says 503 while it is away, restarts are counted, figures stay
    victim = broker.info["workers"]["1"]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: scrape(port)[("metaq_worker_restarts_total",
                                     frozenset({"worker": "1"}.items()))] == 1, timeout_s=20)
    wait_until(lambda: http_get(port, "/health")[0] == 200, timeout_s=20)
    # killed again right after its start, it comes back after a back-off: 503 meanwhile
    restarted = json.loads(http_get(port, "/health")[1])["workers"]["1"]["pid"]
    os.kill(restarted, signal.SIGKILL)
    status, body = wait_until(lambda: (lambda s: s if s[0] == 503 else None)(
        http_get(port, "/health")), timeout_s=10, interval_s=0.01)
    assert json.loads(body)["workers"]["1"]["state"] in ("restarting", "starting")
    wait_until(lambda: http_get(port, "/health")[0] == 200, timeout_s=20)
    samples = scrape(port)
    assert samples[("metaq_worker_restarts_total", frozenset({"worker": "1"}.items()))] == 2
    assert samples[("metaq_partition_messages_put_total", part("test", 0))] == 6
    for client in clients:
        client.close()


def test_dashboard_disabled_and_port_in_ready_file(brokers):
    broker = brokers(workers=1)  # tests.brokers writes dashboardHttpPort=-1
    assert broker.info["dashboard_port"] is None


# ---- logging -------------------------------------------------------------------------------------


def test_log_file_flag_gets_one_format_from_every_process(brokers, tmp_path):
    log_file = tmp_path / "logs" / "metaq.log"
    broker = brokers(workers=2, start_now=False, system={"dashboardHttpPort": 0})
    broker.start(extra_args=["--log-file", str(log_file), "--log-level", "DEBUG"])
    client = WireClient(broker.port)
    put_ok(client, "test", 0)
    client.close()
    assert broker.stop() == 0
    text = log_file.read_text()
    line = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR)\s* "
                      r"\[(supervisor|worker-\d+) (\d+)\] [\w.]+: ")
    starts = [l for l in text.splitlines() if line.match(l)]
    roles = {line.match(l).group(2) for l in starts}
    assert roles == {"supervisor", "worker-0", "worker-1"}
    assert f"[supervisor {broker.pid}]" in text
    for expected in ("configuration ", "log DEBUG to " + str(log_file), "recovered 0 partition(s)",
                     f"listening on 127.0.0.1:{broker.port}", "dashboard listening on http://",
                     "metaq-server stopped (exit 0)"):
        assert expected in text, expected


# ---- metaq-admin (ZooKeeper) ---------------------------------------------------------------------


def zk_broker(brokers, zk_connect, **ini):
    ini.setdefault("topics", {"test": {"numPartitions": 2}})
    return brokers(workers=2, zk_connect=zk_connect, **ini)


def produce(broker, counts: dict[int, int]) -> dict[int, list[int]]:
    """Put ``counts[p]`` messages to test-p; the msg ids per partition."""
    clients = worker_clients(broker)
    ids: dict[int, list[int]] = {}
    for partition, count in counts.items():
        for i in range(count):
            msg_id, offset = put_ok(clients[i % 2], "test", partition,
                                    b"m-%d-%05d" % (partition, i) + b"x" * (len(PAYLOAD) - 9))
            assert offset == i * RECORD
            ids.setdefault(partition, []).append(msg_id)
    for client in clients:
        client.close()
    return ids


@pytest.mark.zk
def test_admin_lists_brokers_topics_and_partitions(brokers, zk_connect):
    broker = zk_broker(brokers, zk_connect)
    produce(broker, {0: 3, 1: 1})
    [row] = admin_json("-z", zk_connect, "brokers")
    assert row == {"broker_id": 0, "master": broker.url, "slaves": {}}
    [topic] = admin_json("-z", zk_connect, "topics")
    assert (topic["topic"], topic["partitions"]) == ("test", 2)
    assert topic["brokers"][0]["broker"] == "0-m" and topic["brokers"][0]["subscribe"]
    rows = admin_json("-z", zk_connect, "partitions", "test")
    assert [(r["partition"], r["first_offset"], r["end_offset"]) for r in rows] == \
        [("0-0", 0, 3 * RECORD), ("0-1", 0, RECORD)]
    text = admin("-z", zk_connect, "partitions", "test")
    assert text.returncode == 0 and "END_OFFSET" in text.stdout and broker.url in text.stdout
    done = admin("-z", zk_connect, "partitions", "nope")
    assert done.returncode == 4 and "unknown topic 'nope'" in done.stderr
    done = admin("-z", zk_connect, "group", "nobody")
    assert done.returncode == 4 and "unknown group 'nobody'" in done.stderr


@pytest.mark.zk
def test_admin_group_lag_is_produced_minus_consumed(brokers, zk_connect, zk_client):
    from metaq_fast.client.consumer import Consumer

    broker = zk_broker(brokers, zk_connect)
    produce(broker, {0: 8, 1: 5})
    # fetches of 3 records: consume exactly one batch, then close (commits what was consumed)
    consumer = Consumer(zk_connect, group="g1", topics=["test"], fetch_bytes=3 * RECORD,
                        commit_interval_ms=60_000)
    try:
        batches = wait_until(lambda: consumer.poll(timeout_s=0.5, max_batches=1), timeout_s=30)
        [batch] = batches
        consumed = {batch.partition: len(batch)}
        assert len(batch) == 3
        live = admin_json("-z", zk_connect, "group", "g1")
        assert [m["id"] for m in live["members"]] == [consumer.consumer_id]
        assert {r["owner"] for r in live["partitions"]} == {consumer.consumer_id}
    finally:
        consumer.close()  # commits what was consumed; on failure, leaves no session behind

    report = admin_json("-z", zk_connect, "group", "g1")
    assert report["members"] == [] and report["errors"] == []
    produced = {"0-0": 8, "0-1": 5}
    rows = {r["partition"]: r for r in report["partitions"]}
    assert set(rows) == {"0-0", "0-1"}
    for name, count in produced.items():
        row = rows[name]
        done = consumed.get(name, 0)
        assert row["owner"] is None and row["end_offset"] == count * RECORD
        assert row["committed_offset"] == (done * RECORD if done else None)
        assert row["lag_messages"] == count - done
        assert row["lag_bytes"] == (count - done) * RECORD
    assert report["total_lag_messages"] == 13 - 3
    assert report["total_lag_bytes"] == (13 - 3) * RECORD
    node, _ = zk_client.get(f"/meta/consumers/g1/offsets/test/{batch.partition}")
    assert node.decode().endswith(f"-{3 * RECORD}")

    text = admin("-z", zk_connect, "group", "g1")
    assert text.returncode == 0, text.stderr
    assert "LAG_MESSAGES" in text.stdout
    assert f"total lag: 10 message(s), {10 * RECORD} byte(s)" in text.stdout


@pytest.mark.zk
def test_admin_resets_a_stopped_groups_offsets(brokers, zk_connect, zk_client):
    from metaq_fast.client.consumer import Consumer

    broker = zk_broker(brokers, zk_connect)
    ids = produce(broker, {0: 8, 1: 5})
    consumer = Consumer(zk_connect, group="g2", topics=["test"], commit_interval_ms=60_000)
    try:
        consumer.wait_assignment(lambda a: len(a.get("test", [])) == 2)
        done = admin("-z", zk_connect, "reset-offsets", "g2", "test", "--earliest")
        assert done.returncode == 5 and "live member" in done.stderr
        assert consumer.consumer_id in done.stderr
    finally:
        consumer.close()

    def node(name):
        return zk_client.get(f"/meta/consumers/g2/offsets/test/{name}")[0].decode()

    rows = admin_json("-z", zk_connect, "reset-offsets", "g2", "test", "--latest")
    assert [(r["partition"], r["new_offset"]) for r in rows] == [("0-0", 8 * RECORD),
                                                               ("0-1", 5 * RECORD)]
    assert (node("0-0"), node("0-1")) == (f"-1-{8 * RECORD}", f"-1-{5 * RECORD}")
    rows = admin_json("-z", zk_connect, "reset-offsets", "g2", "test", "--earliest")
    assert [r["old_offset"] for r in rows] == [8 * RECORD, 5 * RECORD]
    assert (node("0-0"), node("0-1")) == ("-1-0", "-1-0")
    done = admin("-z", zk_connect, "reset-offsets", "g2", "test", "--to-offset",
                 str(2 * RECORD + 5), "--partition", "0-0")
    assert done.returncode == 2 and f"starts at {2 * RECORD}" in done.stderr
    done = admin("-z", zk_connect, "reset-offsets", "g2", "test", "--to-offset", "99999")
    assert done.returncode == 2 and "outside" in done.stderr
    admin_json("-z", zk_connect, "reset-offsets", "g2", "test", "--to-offset", str(2 * RECORD),
               "--partition", "0-0")
    admin_json("-z", zk_connect, "reset-offsets", "g2", "test", "--latest", "--partition", "0-1")
    assert (node("0-0"), node("0-1")) == (f"-1-{2 * RECORD}", f"-1-{5 * RECORD}")
    text = admin("-z", zk_connect, "reset-offsets", "g2", "test", "--latest", "--partition", "0-9")
    assert text.returncode == 4

    # a new consumer of the group starts where the reset put it
    consumer = Consumer(zk_connect, group="g2", topics=["test"], commit_interval_ms=60_000)
    try:
        got: dict[str, list] = {"0-0": [], "0-1": []}
        wait_until(lambda: [got[b.partition].extend(zip(b.offsets.tolist(), b.msg_ids.tolist()))
                            for b in consumer.poll(timeout_s=0.2)] is not None
                   and len(got["0-0"]) >= 6, timeout_s=30)
        assert got["0-0"] == [(i * RECORD, ids[0][i]) for i in range(2, 8)]
        assert got["0-1"] == []
        client = WireClient(broker.port)
        put_ok(client, "test", 1)
        client.close()
        wait_until(lambda: [got[b.partition].extend(zip(b.offsets.tolist(), b.msg_ids.tolist()))
                            for b in consumer.poll(timeout_s=0.2)] is not None
                   and got["0-1"], timeout_s=30)
        assert got["0-1"][0][0] == 5 * RECORD
    finally:
        consumer.close()


@pytest.mark.zk
def test_admin_closes_and_reopens_a_partition_and_peeks(brokers, zk_connect):
    broker = zk_broker(brokers, zk_connect)
    ids = produce(broker, {0: 3})
    client = WireClient(broker.port)
    attr_body = bytes.fromhex("00000009617474726962757465") + b"hello"
    msg_id, offset = put_ok(client, "test", 0, attr_body, flag=1)

    peek = admin_json("-z", zk_connect, "peek", "test", "0-0", "--offset", str(RECORD),
                      "--limit", "5")
    assert [(m["offset"], m["msg_id"]) for m in peek["messages"]] == \
        [(RECORD, ids[0][1]), (2 * RECORD, ids[0][2]), (offset, msg_id)]
    assert peek["messages"][0]["payload"] == repr(b"m-0-00001x") and \
        peek["messages"][0]["attribute"] is None
    assert (peek["messages"][2]["attribute"], peek["messages"][2]["payload"]) == \
        ("attribute", "b'hello'")
    assert peek["next_offset"] == offset + 20 + len(attr_body)
    limited = admin_json("-z", zk_connect, "peek", "test", "0", "--limit", "1")
    assert [m["offset"] for m in limited["messages"]] == [0] and limited["next_offset"] == RECORD
    text = admin("--broker-url", broker.url, "peek", "test", "0", "--limit", "2")
    assert text.returncode == 0 and "MSG_ID" in text.stdout and str(ids[0][1]) in text.stdout

    done = admin("-z", zk_connect, "close-partitions", "test", "0")
    assert done.returncode == 0 and "closed test partitions 0..0" in done.stdout
    refused = put(client, "test", 0)
    assert refused.code == 403 and bytes(refused.body).decode() == (
        f"Put message to [broker '{broker.url}'] [partition 'test-0'] failed."
        "Detail:partition[0-0] has been closed")
    assert client.request(b"get test g 0 0 1024 3\r\n").code == 403
    put_ok(client, "test", 1)  # other partitions go on
    done = admin("-z", zk_connect, "peek", "test", "0-0")
    assert done.returncode == 1 and "closed" in done.stderr
    done = admin("-z", zk_connect, "open-partitions", "test")
    assert done.returncode == 0 and "opened 1 partition(s) of test" in done.stdout
    assert put_ok(client, "test", 0)[1] == offset + 20 + len(attr_body)
    client.close()


@pytest.mark.zk
def test_admin_reports_unreachable_zookeeper_and_brokers(brokers, zk_connect):
    done = admin("-z", f"127.0.0.1:{free_port()}", "--timeout", "2", "brokers")
    assert done.returncode == 3 and "cannot connect to ZooKeeper" in done.stderr
    done = admin("--broker-url", f"meta://127.0.0.1:{free_port()}", "peek", "test", "0")
    assert done.returncode == 6 and "cannot connect to broker" in done.stderr
    broker = zk_broker(brokers, zk_connect)
    produce(broker, {0: 2})
    broker.kill()  # its master node goes with its session; its topic nodes too
    wait_until(lambda: admin_json("-z", zk_connect, "brokers") in ([], [{
        "broker_id": 0, "master": None, "slaves": {}}]), timeout_s=30)
    done = admin("-z", zk_connect, "close-partitions", "test", "0", "--broker", "0")
    assert done.returncode == 4 and "no live master" in done.stderr


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "metaq-admin"
    if not script.exists():
        skip_or_fail("metaq-admin is not installed in this environment (run scripts/install.sh)")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "reset-offsets" in done.stdout


def test_made_up_names_of_a_pattern_topic_take_no_counter_entries(brokers):
    broker = brokers(workers=1, topics={"logs.*": {"numPartitions": 1}},
                     system={"dashboardHttpPort": 0})
    port = broker.info["dashboard_port"]
    client = WireClient(broker.port)
    try:
        for i in range(50):  # gets and offsets for names nobody ever put to
            assert client.request(b"get logs.x%d g 0 0 1024 %d\r\n" % (i, i)).code == 404
            assert client.request(b"offset logs.x%d g 0 0 %d\r\n" % (i, i)).code == 404
        put_ok(client, "logs.real", 0)
        put_ok(client, "logs.real", 0)
        samples = scrape(port)
        topics = {dict(labels).get("topic") for _name, labels in samples}
        assert not any(t and t.startswith("logs.x") for t in topics), sorted(t for t in topics if t)
        # the real one is counted from its first put on (the store it created)
        assert samples[("metaq_partition_messages_put_total", part("logs.real", 0))] == 2
        assert samples[("metaq_partition_end_offset", part("logs.real", 0))] == 2 * RECORD
    finally:
        client.close()
