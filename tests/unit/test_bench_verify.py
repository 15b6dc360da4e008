"""metaq-bench's self-checking payloads and verifier: a wrong delivery (missing, duplicated,
corrupt, never sent) must be counted and fail the run; plus the pure helpers of the tool (latency
histogram, ini rewriting, report and compare). No sockets, no processes."""

from __future__ import annotations

import argparse
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metaq_fast import message
from metaq_fast.benchtool import report
from metaq_fast.benchtool.cluster import DEFAULT_INI, parse_settings, rewrite_ini
from metaq_fast.benchtool.payload import (
    HEADER_BYTES,
    SEQ_BITS,
    LatencyHistogram,
    PayloadFactory,
    Verifier,
    payload_check,
    payload_checks,
    verdict,
)
from metaq_fast.config import parse_config
from metaq_fast.message import MessageSet

SIZE = 100
RUN = 0x1234ABCD


def message_set(payloads) -> MessageSet:
    """Payloads as a consumer sees them: MetaQ records in one buffer, decoded."""
    return MessageSet.decode(bytes(message.encode_records(list(payloads), 0, 0)), 0)


def payloads(first: int, count: int, producer: int = 0, run: int = RUN, size: int = SIZE,
             sent_ns: int | None = None) -> list[bytes]:
    factory = PayloadFactory(size, run, producer, seed=1)
    batch = factory.make(first, count, time.monotonic_ns() if sent_ns is None else sent_ns)
    return factory.split(batch)


def feed(verifier: Verifier, datas) -> int:
    ms = message_set(datas)
    return verifier.add(ms.buf, ms.positions, ms.lengths, time.monotonic_ns(), ("0-0", 0))


def new_verifier(producers: int = 1, expected=(1000,)) -> Verifier:
    return Verifier(SIZE, RUN, producers, list(expected))


# ---- payloads ------------------------------------------------------------------------------


def test_payload_layout():
    sent = 123_456_789
    batch = PayloadFactory(SIZE, RUN, 3, seed=0).make(10, 4, sent)
    assert batch.shape == (4, SIZE)
    for i, row in enumerate(batch):
        raw = row.tobytes()
        assert int.from_bytes(raw[0:8], "little") == payload_check(raw[8:])
        assert int.from_bytes(raw[8:16], "little") == (3 << SEQ_BITS) + 10 + i
        assert int.from_bytes(raw[16:24], "little") == sent
        assert int.from_bytes(raw[24:28], "little") == RUN


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=1, max_size=300), at=st.integers(min_value=0), flip=st.integers(1, 255))
def test_payload_check_catches_any_change_within_one_lane(data, at, flip):
    at %= len(data)
    damaged = bytearray(data)
    damaged[at] ^= flip
    assert payload_check(data) != payload_check(bytes(damaged))


@settings(max_examples=50, deadline=None)
@given(rows=st.integers(1, 20), size=st.integers(1, 200), seed=st.integers(0, 2**32 - 1))
def test_payload_checks_of_a_batch_equal_the_checks_of_each_row(rows, size, seed):
    batch = np.random.default_rng(seed).integers(0, 256, (rows, size + 7), dtype=np.uint8)
    strided = batch[:, 3 : 3 + size]  # not contiguous: rows are size + 7 apart
    expected = [payload_check(row.tobytes()) for row in strided]
    assert payload_checks(strided).tolist() == expected
    assert payload_check(bytes(size)) != payload_check(bytes(size + 1))  # the length counts


def test_random_payloads_differ_and_fixed_ones_share_the_filler():
    rand = PayloadFactory(200, RUN, 0, random_payload=True, seed=5).make(0, 50, 0)
    fixed = PayloadFactory(200, RUN, 0, random_payload=False).make(0, 50, 0)
    assert len({r[HEADER_BYTES:].tobytes() for r in rand}) == 50
    assert len({r[HEADER_BYTES:].tobytes() for r in fixed}) == 1


def test_payload_needs_room_for_the_header():
    with pytest.raises(ValueError, match="at least 28"):
        PayloadFactory(HEADER_BYTES - 1, RUN, 0)
    assert PayloadFactory(HEADER_BYTES, RUN, 0).make(0, 3, 0).shape == (3, HEADER_BYTES)


# ---- the verifier ---------------------------------------------------------------------------


def test_everything_delivered_once_passes():
    v = new_verifier()
    assert feed(v, payloads(0, 600)) == 600
    assert feed(v, payloads(600, 400)) == 400
    check = verdict({0: 1000}, {}, [v.state])
    assert check.ok
    assert (check.acked, check.unique, check.delivered, check.missing, check.duplicates,
            check.corrupt) == (1000, 1000, 1000, 0, 0, 0)
    assert v.latency.total == 1000


def test_missing_messages_fail():
    v = new_verifier()
    datas = payloads(0, 1000)
    feed(v, datas[:10] + datas[13:500] + datas[501:])  # 10, 11, 12 and 500 lost
    check = verdict({0: 1000}, {}, [v.state])
    assert not check.ok
    assert check.missing == 4 and check.unique == 996 and check.duplicates == 0


def test_duplicates_fail_within_a_batch_and_across_batches():
    v = new_verifier()
    datas = payloads(0, 1000)
    feed(v, datas + datas[5:7])  # repeated inside one answer
    feed(v, datas[900:903])  # delivered again later
    check = verdict({0: 1000}, {}, [v.state])
    assert not check.ok
    assert check.duplicates == 5 and check.missing == 0 and check.delivered == 1005


def test_out_of_order_delivery_is_fine():
    v = new_verifier()
    datas = payloads(0, 1000)
    feed(v, datas[500:])
    feed(v, datas[:500][::-1])
    assert verdict({0: 1000}, {}, [v.state]).ok


def test_a_damaged_payload_is_corrupt_and_its_message_missing():
    v = new_verifier()
    datas = payloads(0, 100)
    damaged = bytearray(datas[42])
    damaged[-1] ^= 1
    feed(v, datas[:42] + [bytes(damaged)] + datas[43:])
    check = verdict({0: 100}, {}, [v.state])
    assert not check.ok
    assert check.corrupt == 1 and check.missing == 1 and check.unique == 99
    assert "check mismatch at partition 0-0 offset" in check.examples[0]


def test_a_damaged_sequence_number_is_caught_by_the_check():
    v = new_verifier()
    datas = payloads(0, 10)
    damaged = bytearray(datas[3])
    damaged[8] ^= 0x10  # seq field: would turn message 3 into another number
    feed(v, datas[:3] + [bytes(damaged)] + datas[4:])
    check = verdict({0: 10}, {}, [v.state])
    assert (check.corrupt, check.missing, check.duplicates) == (1, 1, 0)


def test_wrong_size_records_are_corrupt():
    v = new_verifier()
    datas = payloads(0, 10)
    feed(v, datas[:5] + [datas[5][:60], b""] + datas[6:])
    check = verdict({0: 10}, {}, [v.state])
    assert check.corrupt == 2 and check.missing == 1
    assert any("record of 60 bytes, expected 100" in e for e in check.examples)


def test_records_of_another_run_are_foreign_not_errors():
    v = new_verifier()
    feed(v, payloads(0, 50) + payloads(0, 20, run=RUN + 1) + payloads(50, 50))
    feed(v, payloads(0, 5, run=RUN + 1, size=64))  # another run with another size
    check = verdict({0: 100}, {}, [v.state])
    assert check.ok and check.foreign == 25 and check.unique == 100


def test_a_message_that_was_never_sent_is_a_phantom():
    v = new_verifier()
    feed(v, payloads(0, 12))
    check = verdict({0: 10}, {}, [v.state])  # the producer says it used numbers 0..9 only
    assert not check.ok and check.phantom == 2 and check.duplicates == 0


def test_an_unknown_producer_index_is_corrupt():
    v = new_verifier(producers=1)
    feed(v, payloads(0, 3, producer=7))
    check = verdict({0: 0}, {}, [v.state])
    assert check.corrupt == 3 and not check.ok


def test_failed_sends_are_not_missing_but_fail_the_run():
    v = new_verifier()
    datas = payloads(0, 100)
    feed(v, datas[:90] + datas[95:])  # 90..94 failed; 95..99 failed too but were stored
    failed = np.zeros(100, dtype=bool)
    failed[90:] = True
    check = verdict({0: 100}, {0: failed}, [v.state])
    assert (check.acked, check.failed, check.missing, check.unacked_delivered) == (90, 10, 0, 5)
    assert not check.ok


def test_several_producers_and_consumers_merge():
    a, b = new_verifier(2, (100, 100)), new_verifier(2, (100, 100))
    feed(a, payloads(0, 100, producer=0) + payloads(0, 50, producer=1))
    feed(b, payloads(50, 50, producer=1))
    check = verdict({0: 100, 1: 100}, {}, [a.state, b.state])
    assert check.ok and check.unique == 200
    feed(b, payloads(10, 1, producer=0))  # the same message at two consumers: a duplicate
    check = verdict({0: 100, 1: 100}, {}, [a.state, b.state])
    assert check.duplicates == 1 and not check.ok


def test_bitmaps_grow_when_the_count_is_not_known():
    v = Verifier(SIZE, RUN, 1, None)  # --duration: no count in advance
    feed(v, payloads(200_000, 10))
    check = verdict({0: 200_010}, {}, [v.state])
    assert check.unique == 10 and check.missing == 200_000


def test_latency_is_receive_time_minus_send_stamp():
    v = new_verifier()
    ms = message_set(payloads(0, 100, sent_ns=1_000_000_000))
    v.add(ms.buf, ms.positions, ms.lengths, 1_005_000_000)  # 5 ms later
    summary = v.latency.summary_ms()
    assert summary["count"] == 100
    assert summary["max"] == pytest.approx(5.0)
    assert summary["p50"] == pytest.approx(5.0, rel=0.024)


# ---- latency histogram -------------------------------------------------------------------------


def test_histogram_percentiles_within_the_bin_width():
    rng = np.random.default_rng(3)
    latencies_ns = rng.lognormal(mean=np.log(2e6), sigma=1.0, size=50_000)
    hist = LatencyHistogram()
    hist.add_ns(latencies_ns[:20_000])
    other = LatencyHistogram()
    other.add_ns(latencies_ns[20_000:])
    hist.merge(other)
    assert hist.total == 50_000
    for q in (50, 90, 99, 99.9):
        exact_us = np.percentile(latencies_ns, q) / 1000
        assert hist.percentile_us(q) == pytest.approx(exact_us, rel=0.03)
    assert hist.max_us == pytest.approx(latencies_ns.max() / 1000)
    restored = LatencyHistogram.from_json(hist.to_json(), hist.summary_ms())
    assert restored.percentile_us(99) == pytest.approx(hist.percentile_us(99))


def test_histogram_weights_and_edges():
    hist = LatencyHistogram()
    hist.add_ns(np.array([1_000_000]), weight=1000)  # one batch of 1000 acked after 1 ms
    hist.add_ns(np.array([0, 500]))  # below 1 us: the first bin
    assert hist.total == 1002 and hist.counts[0] == 2
    assert hist.percentile_us(50) == pytest.approx(1000, rel=0.024)
    assert len(hist.edges_us()) == len(hist.counts) + 1


@settings(max_examples=100, deadline=None)
@given(latency_ns=st.integers(0, 10**12), weight=st.integers(1, 10_000))
def test_histogram_scalar_add_matches_the_array_add(latency_ns, weight):
    one, many = LatencyHistogram(), LatencyHistogram()
    one.add_one_ns(latency_ns, weight)
    many.add_ns(np.array([latency_ns]), weight)
    assert one.counts.tolist() == many.counts.tolist()
    assert (one.total, one.min_us, one.max_us) == (many.total, many.min_us, many.max_us)
    assert one.sum_us == pytest.approx(many.sum_us)


# ---- the local cluster's configuration ---------------------------------------------------------


def test_rewrite_ini_replaces_appends_and_adds_sections():
    text = ("; comment\n[system]\nbrokerId=0\nunflushThreshold=1000\n; note\nunflushThreshold=5\n\n"
            "[zookeeper]\nzk.zkConnect=127.0.0.1:2181\n[topic=other]\nnumPartitions=3\n")
    out = rewrite_ini(text, {"system": {"unflushThreshold": "0", "workerCount": "2"},
                             "zookeeper": {"zk.zkConnect": "127.0.0.1:9999"},
                             "topic=bench": {"numPartitions": "4"}})
    assert out.count("unflushThreshold") == 1 and "unflushThreshold=0\n" in out
    assert "; comment" in out and "; note" in out
    system = out.split("[zookeeper]")[0]
    assert "workerCount=2" in system
    assert "zk.zkConnect=127.0.0.1:9999" in out and "2181" not in out
    assert out.rstrip().endswith("[topic=bench]\nnumPartitions=4")
    assert "[topic=other]\nnumPartitions=3" in out


def test_rewritten_default_ini_loads(tmp_path):
    out = rewrite_ini(DEFAULT_INI, {"system": {"dataPath": str(tmp_path), "serverPort": "0"},
                                    "zookeeper": {"zk.zkConnect": "127.0.0.1:1"},
                                    "topic=bench": {"numPartitions": "3"}})
    config = parse_config(out, str(tmp_path / "server.ini"))
    assert config.topic_config("bench").num_partitions == 3 and config.server_port == 0


def test_parse_settings():
    assert parse_settings(["unflushThreshold=0", " zk.zkSyncTimeMs = 50 "]) == {
        "unflushThreshold": "0", "zk.zkSyncTimeMs": "50"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_settings(["unflushThreshold"])


# ---- report and compare ----------------------------------------------------------------------


def fake_run(msgs_per_s: float, p99_ms: float, ok: bool = True) -> dict:
    hist = LatencyHistogram()
    hist.add_ns(np.array([p99_ms * 1e6 / 2] * 98 + [p99_ms * 1e6] * 2))
    phase = {"messages": 1000, "bytes": 100_000, "seconds": 1000 / msgs_per_s,
             "msgs_per_s": msgs_per_s, "mb_per_s": msgs_per_s * 100 / 1e6}
    check = verdict({0: 1000}, {}, [])
    check_json = check.to_json()
    check_json["ok"] = ok
    return {"run_id": "0", "produce": phase, "consume": dict(phase),
            "ack_latency": {"summary_ms": hist.summary_ms(), "histogram": hist.to_json()},
            "e2e_latency": {"summary_ms": hist.summary_ms(), "histogram": hist.to_json()},
            "samples": {"interval_s": 0.01, "produce": {"start_s": 0.0, "counts": [10] * 150},
                        "consume": {"start_s": 0.0, "counts": [10] * 150}},
            "verification": check_json, "send_errors": []}


def fake_doc(runs, unflush=1000) -> dict:
    args = argparse.Namespace(scenario="e2e", messages=1000, duration=None, size=100,
                              random_payload=False, producers=1, consumers=1, partitions=None,
                              batch_size=1000, linger_ms=5.0, api="batch", rate=None, in_flight=8,
                              put_window=2000, put_chunk=500, fetch_bytes=1 << 20,
                              max_fetch_delay_ms=10.0, topic="bench", runs=len(runs), local=True,
                              brokers=1, workers=None, set=None, zk=None, zk_root="/meta", config=None)
    cluster = {"brokers": 1, "numPartitions": 2, "workerCount": 2, "unflushThreshold": unflush,
               "unflushInterval": 10000, "settings": {}}
    return report.assemble(args, runs, cluster, {"cpu_count": 2}, "now")


def test_report_takes_medians_and_prints_the_table():
    doc = fake_doc([fake_run(100.0, 4.0), fake_run(300.0, 2.0), fake_run(200.0, 8.0)])
    assert doc["results"]["consume"]["msgs_per_s"] == 200.0
    assert doc["latency_ms"]["end_to_end"]["p99"] == pytest.approx(4.0, rel=0.03)
    assert doc["runs"][0]["per_second"]["produce"] == [1000, 500]
    text = report.table(doc)
    assert "medians of 3 runs" in text and "verify: OK" in text
    for word in ("msg/s", "MB/s", "p50", "p90", "p99", "p999", "max"):
        assert word in text


def test_report_says_failed_when_one_run_failed():
    doc = fake_doc([fake_run(100.0, 1.0), fake_run(100.0, 1.0, ok=False)])
    assert not doc["verification"]["ok"]
    assert "verify: FAILED" in report.table(doc)


def test_compare_prints_ratios_and_differences():
    a = fake_doc([fake_run(100.0, 4.0)])
    b = fake_doc([fake_run(250.0, 2.0)], unflush=0)
    text = report.compare(a, b, "a.json", "b.json")
    assert "unflushThreshold: 1000 -> 0" in text
    line = next(l for l in text.splitlines() if l.startswith("consume msg/s"))
    assert "2.50x" in line and "better" in line
    line = next(l for l in text.splitlines() if l.startswith("end-to-end latency p99"))
    assert "0.50x" in line and "better" in line
