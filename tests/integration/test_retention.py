"""Retention runs on its deleteWhen schedule inside a live broker and removes only closed,
expired segments; readers are moved on (301) to the new first offset."""


from tests.brokers import WireClient
from tests.helpers import wait_until


def segment_files(broker, partition=0):
    return sorted(p.name for p in (broker.data_path / f"test-{partition}").glob("*.meta"))


def test_scheduled_delete_policy_removes_only_closed_expired_segments(brokers):
    broker = brokers(workers=1, system={"maxSegmentSize": 200, "unflushThreshold": 1000},
                     topics={"test": {"numPartitions": 1, "deletePolicy": "delete,1s",
                                      "deleteWhen": "* * * * * ?"}})
    client = WireClient(broker.port)
    for i in range(10):  # 100-byte records, two per segment
        assert client.request(b"put test 0 80 0 -1 %d\r\n" % i + b"x" * 80).code == 200
    written = segment_files(broker)
    assert len(written) == 6  # five full segments and the empty active one
    wait_until(lambda: segment_files(broker) == written[-1:], timeout_s=15,
               message=lambda: f"segments left: {segment_files(broker)}")
    reply = client.request(b"get test g 0 0 1024 1\r\n")
    assert reply.code == 301 and bytes(reply.body) == b"1000"
    assert client.request(b"put test 0 80 0 -1 99\r\n" + b"y" * 80).code == 200
    assert client.request(b"offset test g 0 0 2\r\n").body == b"1000"
    assert "retention (delete) deleted" in broker.log_text()


def test_archive_policy_on_schedule_keeps_zips(brokers):
    broker = brokers(workers=1, system={"maxSegmentSize": 200, "unflushThreshold": 1000},
                     topics={"test": {"numPartitions": 1, "deletePolicy": "archive,1s,true",
                                      "deleteWhen": "* * * * * ?"}})
    client = WireClient(broker.port)
    for i in range(4):
        assert client.request(b"put test 0 80 0 -1 %d\r\n" % i + b"x" * 80).code == 200
    directory = broker.data_path / "test-0"
    wait_until(lambda: len(list(directory.glob("*.meta.zip"))) == 2, timeout_s=15)
    assert segment_files(broker) == ["00000000000000000400.meta"]
