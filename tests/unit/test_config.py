"""server.ini loading: MetaQ's real files, every validation error, expressions, topics, names."""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metaq_fast import limits
from metaq_fast.config import (
    Config,
    DeletePolicy,
    ZkConfig,
    is_valid_name,
    load_config,
    parse_config,
    validate_group_name,
    validate_topic_name,
)
from metaq_fast.errors import ConfigError, InvalidNameError

from tests.helpers import skip_or_fail

REPO_DIR = Path(__file__).resolve().parents[2]
REFERENCE_DIR = REPO_DIR / "tests" / "data" / "metaq-ini"  # MetaQ's own files, byte for byte
HOUR_MS = 3_600_000


def reference(name: str) -> Path:
    path = REFERENCE_DIR / name
    if not path.is_file():
        skip_or_fail(f"MetaQ reference ini files not available ({path} missing)")
    return path


# ---- a small valid file, edited per test ---------------------------------------------------

BASE = {
    "system": {
        "brokerId": "0",
        "numPartitions": "1",
        "unflushThreshold": "1000",
        "unflushInterval": "10000",
        "maxSegmentSize": "1073741824",
        "maxTransferSize": "1048576",
    },
    "zookeeper": {"zk.zkConnect": "localhost:2181"},
    "topic=test": {},
}


def render(sections: dict[str, dict[str, str | None]]) -> str:
    lines = []
    for name, entries in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key}={value}" for key, value in entries.items() if value is not None)
        lines.append("")
    return "\n".join(lines)


def ini(**changes: dict[str, str | None]) -> str:
    """BASE with keys changed per section (``topic_x`` = ``topic=x``; None removes a key)."""
    sections = {name: dict(entries) for name, entries in BASE.items()}
    for name, entries in changes.items():
        sections.setdefault(name.replace("topic_", "topic="), {}).update(entries)
    return render(sections)


def load(text: str, tmp_path: Path, name: str = "server.ini") -> Config:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return load_config(path)


def config_error(text: str | bytes, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load(text, tmp_path)
    return str(info.value)


# ---- MetaQ's real files (reference 9.6) ----------------------------------------------------

VALID_REFERENCE_FILES = [
    "integration-test_server1.ini",
    "integration-test_server2.ini",
    "integration-test_server3.ini",
    "integration-test_server4.ini",
    "integration-test_slave1-1.ini",
    "server-wrapper_sample.server.ini",
    "server-wrapper_server.ini",
]


@pytest.mark.parametrize("name", VALID_REFERENCE_FILES)
def test_reference_file_loads_with_checksum_and_raw_bytes(name):
    path = reference(name)
    config = load_config(path)
    raw = path.read_bytes()
    assert config.raw_bytes == raw
    assert config.checksum == zlib.crc32(raw)
    assert config.path == str(path)
    assert config.topics == sorted(config.topics)
    assert config.zk.enabled and config.zk.connect == "localhost:2181"


def test_reference_sample_server_ini(monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    config = load_config(reference("server-wrapper_sample.server.ini"))
    assert (config.broker_id, config.server_port, config.dashboard_http_port) == (0, 8123, 8120)
    assert config.host_name is None and config.listen_host == "127.0.0.1"
    assert config.data_path == Path("/home/someone/meta") == config.data_log_path
    assert (config.unflush_threshold, config.unflush_interval_ms) == (1000, 10000)
    assert (config.segment_bytes_max, config.transfer_bytes_max) == (1 << 30, 1 << 20)
    assert (config.get_process_thread_count, config.put_process_thread_count) == (80, 80)
    assert config.delete_policy == DeletePolicy("delete", 168 * HOUR_MS, False)
    assert config.delete_when == "0 0 6,18 * * ?"
    assert (config.checkpoints_max, config.checkpoint_interval_ms) == (3, 3_600_000)
    assert (config.tx_timeout_timer_capacity, config.tx_timeout_s_max) == (30000, 60)
    assert config.flush_tx_log_at_commit == 1
    assert config.accept_publish and config.accept_subscribe and config.stat
    assert not config.update_consumer_offsets and not config.load_message_stores_in_parallel
    assert config.zk == ZkConfig(True, "localhost:2181", 30000, 30000, 5000, "/meta")
    assert config.topics == ["test"]
    test = config.topic_config("test")
    assert test.stat and test.num_partitions == 10
    # blank deletePolicy / unflushInterval / unflushThreshold inherit from [system]
    assert test.delete_policy == config.delete_policy
    assert (test.unflush_interval_ms, test.unflush_threshold) == (10000, 1000)
    assert test.delete_when == "0 0 6,18 * * ?"
    assert test.explicit_keys == {"stat", "num_partitions", "delete_when"}


def test_reference_wrapper_server_ini_group_commit():
    config = load_config(reference("server-wrapper_server.ini"))
    assert config.unflush_threshold == 0
    assert config.update_consumer_offsets and config.stat
    assert config.topics == ["meta-test", "test"]
    for name in config.topics:
        topic = config.topic_config(name)
        assert topic.num_partitions == 1 and topic.unflush_threshold == 0 and topic.stat
    assert config.zk.sync_time_ms == 5000


def test_reference_server1_special_topic_and_filters(caplog):
    with caplog.at_level(logging.WARNING, logger="metaq_fast.config"):
        config = load_config(reference("integration-test_server1.ini"))
    assert config.app_class_path == Path("/tmp")
    assert (config.unflush_threshold, config.unflush_interval_ms) == (5, 2)
    assert config.topics == ["!@#$%", "filter-test", "meta-test", "meta-test2", "test"]
    # configured, loaded, but never accepted (MetaQ rejects puts to it too)
    assert not config.topic_configs["!@#$%"].is_valid_name
    assert config.topic_config("!@#$%") is None
    assert "'!@#$%' is not a valid topic name" in caplog.text
    assert config.topic_configs["filter-test"].group_filters == {
        "group1": "com.taobao.meta.test.filter.ModConsumerMessageFilter"
    }
    assert "filters are not supported" in caplog.text
    test = config.topic_config("test")
    assert (test.num_partitions, test.stat, test.delete_policy) == (10, True, config.delete_policy)
    meta_test = config.topic_config("meta-test")
    assert (meta_test.num_partitions, meta_test.stat, meta_test.unflush_threshold) == (1, False, 5)


def test_reference_server2_blank_topic_values_inherit():
    config = load_config(reference("integration-test_server2.ini"))
    assert (config.broker_id, config.server_port) == (1, 8124)
    test = config.topic_config("test")
    assert (test.unflush_interval_ms, test.unflush_threshold, test.num_partitions) == (2, 5, 10)
    assert test.explicit_keys == {"stat", "num_partitions"}


def test_reference_server3_wildcard_topic():
    config = load_config(reference("integration-test_server3.ini"))
    assert config.topics == ["*", "meta-test", "meta-test2", "test"]
    assert config.topic_config("test").num_partitions == 10  # exact section wins
    anything = config.topic_config("anything-else")
    assert anything.name == "anything-else" and anything.pattern == "*"
    assert anything.num_partitions == 1
    assert config.topic_config("bad/name") is None


def test_reference_server4_accept_publish_subscribe():
    config = load_config(reference("integration-test_server4.ini"))
    meta_test, meta_test2 = config.topic_config("meta-test"), config.topic_config("meta-test2")
    assert (meta_test.accept_publish, meta_test.accept_subscribe) == (True, True)
    assert (meta_test2.accept_publish, meta_test2.accept_subscribe) == (False, False)
    test = config.topic_config("test")
    assert (test.accept_publish, test.accept_subscribe) == (True, True)  # system defaults


def test_reference_slave_ini_is_a_plain_broker_config():
    config = load_config(reference("integration-test_slave1-1.ini"))
    assert (config.server_port, config.unflush_interval_ms) == (8111, 100)


def test_reference_bigmessageserver_fails_naming_diamond_key():
    path = reference("integration-test_bigmessageserver.ini")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "Invalid config key:diamondZKDataId,do you mean '" in message
    assert path.name in message and "[zookeeper]" in message and "(line " in message


# MetaQ's metamorphosis-server/src/test/resources/server.ini (GBK comments, brokerId=1111).
METAQ_TEST_SERVER_INI = """;
;   Metamorphosis服务器的参数配置文件 2.0 版本
;系统属性
[system]
;必须，服务器唯一标志
brokerId=1111
hostName=test.localhost
numPartitions=10
serverPort=8124
dataPath=/home/admin
dataLogPath=/home/datalog
unflushThreshold=10000
unflushInterval=100000
maxSegmentSize=1073741824
maxTransferSize=1048576
getProcessThreadCount=90
putProcessThreadCount=90
deletePolicy=delete,999

;zk配置
[zookeeper]
zk.zkConnect=127.0.0.1:2181
zk.zkSessionTimeoutMs=30000
zk.zkConnectionTimeoutMs=40000
zk.zkSyncTimeMs=5000
;diamondZKDataId=metamorphosis.test.zkConfig

;HA中的slave配置
[slave]
slaveId=-1
slaveGroup=meta-slave-group

[topic=test1]
stat=false
numPartitions=11
deletePolicy=delete,77

[topic=test2]
stat=true
numPartitions=13
deletePolicy=
dataPath=/test2
""".encode("gbk")


def test_metaq_broker_id_1111_fails_with_range(tmp_path):
    message = config_error(METAQ_TEST_SERVER_INI, tmp_path)
    assert "server.ini [system] brokerId=1111: must be 0..1023 (message ids have 10 bits" in message
    assert "(line 6)" in message


def test_metaq_test_server_ini_values_with_valid_broker_id(tmp_path):
    config = load(METAQ_TEST_SERVER_INI.replace(b"brokerId=1111", b"brokerId=1"), tmp_path)
    assert (config.broker_id, config.host_name, config.listen_host) == (
        1, "test.localhost", "test.localhost"
    )
    assert (config.num_partitions, config.server_port) == (10, 8124)
    assert (config.data_path, config.data_log_path) == (Path("/home/admin"), Path("/home/datalog"))
    assert (config.unflush_threshold, config.unflush_interval_ms) == (10000, 100000)
    assert config.get_process_thread_count == 90 == config.put_process_thread_count
    assert config.delete_policy == DeletePolicy("delete", 999 * HOUR_MS)
    assert (config.zk.connect, config.zk.connection_timeout_ms) == ("127.0.0.1:2181", 40000)
    test1, test2 = config.topic_config("test1"), config.topic_config("test2")
    assert (test1.stat, test1.num_partitions, test1.delete_policy.retention_ms) == (
        False, 11, 77 * HOUR_MS
    )
    assert (test2.stat, test2.num_partitions, test2.delete_policy) == (
        True, 13, config.delete_policy
    )
    assert test2.data_path == Path("/test2") and test1.data_path == Path("/home/admin")


# ---- conf/server.ini -------------------------------------------------------------------------


def test_repository_default_config_loads():
    config = load_config(REPO_DIR / "conf" / "server.ini")
    assert config.data_path == REPO_DIR / "run" / "data"
    assert (config.broker_id, config.server_port, config.num_partitions) == (0, 8123, 1)
    assert (config.unflush_threshold, config.unflush_interval_ms) == (1000, 10000)
    assert (config.zk.connect, config.zk.root) == ("127.0.0.1:2181", "/meta")
    assert config.topics == ["meta-test", "test"]
    assert config.topic_config("test").num_partitions == 4
    assert config.topic_config("meta-test").num_partitions == 1
    assert config.message_bytes_max == limits.MESSAGE_BYTES_MAX_DEFAULT
    assert config.batch_bytes_max == limits.BATCH_BYTES_MAX_DEFAULT
    assert (config.worker_count, config.log_level, config.log_file) == (0, "INFO", None)
    assert "broker 0 on 127.0.0.1:8123" in config.summary()


# ---- validation errors -----------------------------------------------------------------------

BAD_VALUES = [
    ("system", "brokerId", "abc", "expected an integer"),
    ("system", "brokerId", "-1", "must be 0..1023"),
    ("system", "brokerId", "1024", "must be 0..1023 (message ids have 10 bits for it)"),
    ("system", "brokerId", "1.5", "expected an integer"),
    ("system", "brokerId", "true", "expected an integer"),
    ("system", "serverPort", "65536", "must be 0..65535"),
    ("system", "dashboardHttpPort", "-2", "must be -1..65535"),
    ("system", "numPartitions", "0", "must be 1..10000"),
    ("system", "numPartitions", "10001", "must be 1..10000"),
    ("system", "unflushThreshold", "3000000000", "32-bit"),
    ("system", "unflushInterval", "-1", "must be >= 0"),
    ("system", "maxSegmentSize", "0", "must be >= 1"),
    ("system", "maxTransferSize", "20", "must be >= 21"),
    ("system", "maxTransferSize", "4096*1024*1024", "must be >= 21"),
    ("system", "flushTxLogAtCommit", "3", "must be 0..2"),
    ("system", "deletePolicy", "keep,3", "unknown delete policy 'keep'"),
    ("system", "deletePolicy", "delete", "needs a retention"),
    ("system", "deletePolicy", "delete,", "needs a retention"),
    ("system", "deletePolicy", "delete,3d", "optional s, m or h suffix"),
    ("system", "deletePolicy", "archive,3,maybe", "true or false"),
    ("system", "deleteWhen", "0 0 25 * * ?", "out of range 0..23"),
    ("system", "deleteWhen", "0 0 6 L * ?", "not supported"),
    ("system", "deleteWhen", "every day", "expected 6 or 7"),
    ("system", "acceptPublish", "yes", "must be true or false"),
    ("system", "stat", "1", "must be true or false"),
    ("system", "workerCount", "-1", "must be 0..1024"),
    ("system", "maxMessageSize", "1048557", "maxTransferSize - 20 = 1048556"),
    ("system", "maxMessageSize", "0", "must be >= 1"),
    ("system", "maxBatchBytes", "100", "must be >= maxMessageSize"),
    ("system", "logLevel", "LOUD", "DEBUG, INFO, WARNING, ERROR"),
    ("zookeeper", "zk.zkSessionTimeoutMs", "0", "must be >= 1"),
    ("zookeeper", "zk.zkConnectionTimeoutMs", "-5", "must be >= 1"),
    ("zookeeper", "zk.zkSyncTimeMs", "x", "expected an integer"),
    ("zookeeper", "zk.zkEnable", "maybe", "must be true or false"),
    ("zookeeper", "zk.zkRoot", "meta", "absolute ZooKeeper path"),
    ("zookeeper", "zk.zkRoot", "/meta/", "absolute ZooKeeper path"),
    ("topic=test", "numPartitions", "10001", "must be 1..10000"),
    ("topic=test", "numPartitions", "0", "must be 1..10000"),
    ("topic=test", "unflushInterval", "soon", "expected an integer"),
    ("topic=test", "deletePolicy", "drop,1", "unknown delete policy"),
    ("topic=test", "deleteWhen", "0 0 6 * * *", "exactly one of day-of-month and day-of-week"),
    ("topic=test", "acceptSubscribe", "no", "must be true or false"),
    ("topic=test", "stat", "yes", "must be true or false"),
]


@pytest.mark.parametrize(("section", "key", "value", "problem"), BAD_VALUES)
def test_bad_value_names_file_section_key_value_and_range(tmp_path, section, key, value, problem):
    text = ini(**{section.replace("=", "_"): {key: value}})
    message = config_error(text, tmp_path)
    assert f"server.ini [{section}] {key}={value}: " in message
    assert problem in message
    assert "(line " in message


@pytest.mark.parametrize(
    ("section", "key", "suggestion"),
    [
        ("system", "brokerID", "brokerId"),
        ("system", "maxSegmentsize", "maxSegmentSize"),
        ("system", "unflushThreshhold", "unflushThreshold"),
        ("zookeeper", "zk.zkConect", "zk.zkConnect"),
        ("zookeeper", "zkRoot", "zk.zkRoot"),
        ("topic=test", "numPartition", "numPartitions"),
        ("topic=test", "listenHost", "stat"),  # our [system]-only keys are not topic keys
    ],
)
def test_unknown_key_suggests_closest_valid_key(tmp_path, section, key, suggestion):
    message = config_error(ini(**{section.replace("=", "_"): {key: "1"}}), tmp_path)
    assert f"server.ini [{section}] {key}=1: " in message
    assert f"Invalid config key:{key},do you mean '{suggestion}'?" in message
    assert "(line " in message


def test_metaq_accepted_but_ignored_keys_load_with_a_warning(tmp_path, caplog):
    text = ini(
        system={"serialVersionUID": "1", "topics": "a,b"},
        zookeeper={"brokerId": "7", "serialVersionUID": "2"},
        topic_test={"topic": "x", "filterClassNames": "y"},
    )
    with caplog.at_level(logging.WARNING, logger="metaq_fast.config"):
        config = load(text, tmp_path)
    assert config.broker_id == 0  # MetaConfig names in [zookeeper] have no effect
    assert "[zookeeper] brokerId has no effect" in caplog.text


def test_missing_system_section(tmp_path):
    sections = {name: entries for name, entries in BASE.items() if name != "system"}
    message = config_error(render(sections), tmp_path)
    assert "server.ini: missing [system] section" in message


def test_missing_zookeeper_section_is_an_empty_one(tmp_path):
    sections = {name: entries for name, entries in BASE.items() if name != "zookeeper"}
    message = config_error(render(sections), tmp_path)
    assert "server.ini [zookeeper] zk.zkConnect: Null zookeeper config" in message
    assert "--zk-connect" in message
    path = tmp_path / "server.ini"
    config = load_config(path, zk_overrides={"connect": "127.0.0.1:2999"})
    assert config.zk == ZkConfig(connect="127.0.0.1:2999")
    assert load_config(path, zk_overrides={"enabled": False}).zk.enabled is False


def test_empty_zookeeper_section_is_null_zookeeper_config(tmp_path):
    message = config_error(ini(zookeeper={"zk.zkConnect": None}), tmp_path)
    assert "server.ini [zookeeper] zk.zkConnect: Null zookeeper config" in message


def test_no_topic_sections_is_empty_topics_list(tmp_path):
    sections = {name: entries for name, entries in BASE.items() if name != "topic=test"}
    assert "server.ini: Empty topics list" in config_error(render(sections), tmp_path)


def test_broker_id_absent_is_reported_absent_and_blank_blank(tmp_path):
    blank = config_error(ini(system={"brokerId": ""}), tmp_path)
    assert "server.ini [system] brokerId=: Blank value for brokerId (line " in blank
    missing = config_error(ini(system={"brokerId": None}), tmp_path)
    assert "server.ini [system] brokerId: brokerId is not set" in missing
    assert "Blank" not in missing


# MetaQ's loader demands these; MetaConfig has a field default for each (reference 9.2).
METACONFIG_DEFAULTS = {"numPartitions": ("num_partitions", 1),
                       "unflushThreshold": ("unflush_threshold", 1000),
                       "unflushInterval": ("unflush_interval_ms", 10_000),
                       "maxSegmentSize": ("segment_bytes_max", 1024 * 1024 * 1024),
                       "maxTransferSize": ("transfer_bytes_max", 1024 * 1024)}


@pytest.mark.parametrize("key", sorted(METACONFIG_DEFAULTS))
@pytest.mark.parametrize("how", ["absent", "blank"])
def test_metaq_required_key_takes_metaconfig_default(tmp_path, key, how):
    attr, default = METACONFIG_DEFAULTS[key]
    changed = {key: None if how == "absent" else "", "numPartitions": "4",
               "unflushThreshold": "7", "unflushInterval": "99", "maxSegmentSize": "4096",
               "maxTransferSize": "2048"}
    changed[key] = None if how == "absent" else ""
    config = load(ini(system=changed), tmp_path)
    assert getattr(config, attr) == default
    if attr in ("num_partitions", "unflush_threshold", "unflush_interval_ms"):
        assert getattr(config.topic_configs["test"], attr) == default  # topics inherit it


def test_minimal_file_brokerid_and_one_topic(tmp_path):
    path = tmp_path / "server.ini"
    path.write_text("[system]\nbrokerId=7\n\n[topic=orders]\n")
    config = load_config(path, zk_overrides={"connect": "127.0.0.1:2181"})
    assert config.broker_id == 7 and config.topics == ["orders"]
    assert (config.num_partitions, config.unflush_threshold, config.unflush_interval_ms,
            config.segment_bytes_max, config.transfer_bytes_max) == (
        1, 1000, 10_000, 1024 ** 3, 1024 ** 2)
    assert config.message_bytes_max == min(limits.MESSAGE_BYTES_MAX_DEFAULT,
                                           1024 ** 2 - limits.RECORD_HEADER_BYTES)
    topic = config.topic_configs["orders"]
    assert (topic.num_partitions, topic.unflush_threshold) == (1, 1000)


def test_zookeeper_enabled_needs_servers(tmp_path):
    message = config_error(ini(zookeeper={"zk.zkEnable": "true", "zk.zkConnect": ""}), tmp_path)
    assert "server.ini [zookeeper] zk.zkConnect=: Empty zookeeper servers" in message


def test_zookeeper_disabled_needs_no_servers(tmp_path):
    config = load(ini(zookeeper={"zk.zkEnable": "FALSE", "zk.zkConnect": None}), tmp_path)
    assert config.zk == ZkConfig(enabled=False, connect="")


def test_syntax_errors_name_the_line(tmp_path):
    assert "server.ini line 2: expected [section], key=value" in config_error(
        "[system]\nthis is not a key value line\n", tmp_path
    )
    assert "server.ini line 1: key 'brokerId' before any [section]" in config_error(
        "brokerId=0\n", tmp_path
    )
    assert "line 1: bad section header" in config_error("[system\n", tmp_path)
    assert "line 2: expected [section]" in config_error("[system]\n=5\n", tmp_path)


def test_gbk_comments_are_tolerated_but_not_gbk_values(tmp_path):
    comment = "; 服务器唯一标志\n# 注释\n".encode("gbk")
    config = load(comment + ini().encode(), tmp_path)
    assert config.broker_id == 0
    value_line = "[topic=测试]\n".encode("gbk")
    message = config_error(ini().encode() + value_line, tmp_path)
    assert "server.ini line " in message and "not UTF-8" in message


def test_crlf_bom_whitespace_and_values_with_spaces(tmp_path):
    text = "\ufeff" + ini(system={"deleteWhen": "0  0 6,18 *   * ?   "}).replace("\n", "\r\n")
    text = text.replace("brokerId=0", "   brokerId   =   3   ")
    config = load(text.encode(), tmp_path)
    assert config.broker_id == 3
    assert config.delete_when == "0  0 6,18 *   * ?"


def test_duplicate_key_last_wins_and_duplicate_section_continues(tmp_path, caplog):
    text = ini() + "\n[system]\nbrokerId=5\nbrokerId=6\n[topic=test]\nnumPartitions=3\n"
    with caplog.at_level(logging.WARNING, logger="metaq_fast.config"):
        config = load(text, tmp_path)
    assert config.broker_id == 6
    assert config.topic_config("test").num_partitions == 3
    assert "the last value wins" in caplog.text


def test_other_sections_are_ignored(tmp_path):
    config = load(ini(other={"anything": "goes"}), tmp_path)
    assert config.topics == ["test"] and config.slave is None


def test_slave_section_makes_a_slave_and_minus_one_or_blank_does_not(tmp_path):
    config = load(ini(slave={"slaveId": "2", "slaveMaxDelayInMills": "200"}), tmp_path)
    assert (config.slave.slave_id, config.slave.group, config.slave.max_delay_ms) == \
        (2, "meta-slave-group_2", 200)
    assert config.slave.replica == "s2"
    for value in ("-1", ""):
        assert load(ini(slave={"slaveId": value, "slaveGroup": "g"}), tmp_path).slave is None
    assert "unknown slave key" in config_error(ini(slave={"slaveId": "0", "x": "1"}), tmp_path)
    assert "slaveId=abc" in config_error(ini(slave={"slaveId": "abc"}), tmp_path)


def test_metaq_async_slave_properties_file(tmp_path):
    from metaq_fast.config_slave import load_slave_file
    path = tmp_path / "async_slave.properties"
    path.write_bytes("# 备机配置\nslaveId=1\nslaveGroup = meta-slave-group\n"
                     "slaveMaxDelayInMills=500\nautoSyncMasterConfig=false\n".encode("gbk"))
    slave = load_slave_file(path)
    assert (slave.slave_id, slave.group, slave.max_delay_ms) == (1, "meta-slave-group", 500)
    path.write_text("slaveId=\n")
    with pytest.raises(ConfigError, match="no slave"):
        load_slave_file(path)
    ini_path = tmp_path / "slave.ini"
    ini_path.write_text(ini(slave={"slaveId": "3"}))
    assert load_slave_file(ini_path).slave_id == 3


def test_replication_keys(tmp_path):
    config = load(ini(system={"minInSyncReplicas": "2", "replicaLagMaxMs": "3000",
                              "uncleanTakeover": "true"}), tmp_path)
    assert (config.min_in_sync_replicas, config.replica_lag_max_ms, config.unclean_takeover) == \
        (2, 3000, True)
    assert "minInSyncReplicas=0" in config_error(ini(system={"minInSyncReplicas": "0"}), tmp_path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.ini")


# ---- values: expressions, booleans, defaults -----------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1024*1024", 1048576),
        ("1024 * 1024 * 1024", 1 << 30),
        ("(2+3)*4", 20),
        ("7/2", 3),
        ("-7/2", -3),  # Java truncates toward zero
        ("7/-2", -3),
        ("10-2-3", 5),
        ("-(3)", -3),
        ("+5", 5),
        ("007", 7),
        ("2147483647", 2**31 - 1),
        ("-2147483648", -(2**31)),
    ],
)
def test_integer_expressions(tmp_path, text, value):
    config = load(ini(system={"unflushThreshold": text}), tmp_path)
    assert config.unflush_threshold == value


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2**3", "expected an integer"),
        ("__import__('os')", "expected an integer"),
        ("1.5", "expected an integer"),
        ("0x10", "expected an integer"),
        ("1_000", "expected an integer"),
        ("1/0", "division by zero"),
        ("(1", "expected an integer"),
        ("9223372036854775807*2", "overflows a 64-bit integer"),
        ("1" * 300, "expected an integer"),
    ],
)
def test_bad_integer_expressions(tmp_path, text, problem):
    message = config_error(ini(system={"unflushThreshold": text}), tmp_path)
    assert problem in message and "[system] unflushThreshold=" in message


@given(st.text(max_size=40))
def test_any_integer_text_loads_or_raises_config_error(value):
    text = ini(system={"unflushThreshold": value.replace("\n", " ").replace("\r", " ")})
    try:
        config = parse_config(text.encode("utf-8", "surrogatepass"), "/x/server.ini")
    except ConfigError:
        return
    assert isinstance(config.unflush_threshold, int)


@given(st.integers(0, limits.BROKER_ID_MAX))
def test_every_valid_broker_id_loads(broker_id):
    assert parse_config(ini(system={"brokerId": str(broker_id)})).broker_id == broker_id


def test_booleans_any_case(tmp_path):
    config = load(ini(system={"stat": "TRUE", "acceptPublish": "False"}), tmp_path)
    assert config.stat and not config.accept_publish
    assert config.topic_config("test").stat and not config.topic_config("test").accept_publish


def test_blank_optional_values_take_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    text = ini(system={"hostName": "", "serverPort": "", "dataPath": "", "deletePolicy": "",
                       "deleteWhen": "", "logLevel": "", "maxMessageSize": "", "listenHost": ""})
    config = load(text, tmp_path)
    assert config.host_name is None and config.server_port == 8123
    assert config.data_path == tmp_path / "home" / "meta" == config.data_log_path
    assert config.delete_policy == DeletePolicy("delete", 168 * HOUR_MS)
    assert config.delete_when == "0 0 6,18 * * ?"
    assert config.log_level == "INFO" and config.listen_host == "127.0.0.1"
    assert config.dashboard_http_port == 8120 and config.dashboard_host == "127.0.0.1"
    assert config.message_bytes_max == limits.MESSAGE_BYTES_MAX_DEFAULT


def test_our_keys(tmp_path):
    config = load(
        ini(system={"workerCount": "4", "listenHost": "0.0.0.0", "maxMessageSize": "1000",
                    "maxBatchBytes": "64*1024", "logLevel": "debug", "logFile": "logs/b.log",
                    "dashboardHost": "0.0.0.0", "dashboardHttpPort": "-1", "hostName": "h1"}),
        tmp_path,
    )
    assert (config.worker_count, config.listen_host, config.host_name) == (4, "0.0.0.0", "h1")
    assert (config.message_bytes_max, config.batch_bytes_max) == (1000, 65536)
    assert (config.log_level, config.log_file) == ("DEBUG", tmp_path / "logs" / "b.log")
    assert (config.dashboard_host, config.dashboard_http_port) == ("0.0.0.0", -1)
    assert "dashboard disabled" in config.summary()


def test_listen_host_defaults_to_host_name(tmp_path):
    assert load(ini(system={"hostName": "10.0.0.5"}), tmp_path).listen_host == "10.0.0.5"


def test_small_transfer_size_lowers_default_message_size(tmp_path):
    config = load(ini(system={"maxTransferSize": "1000"}), tmp_path)
    assert config.message_bytes_max == 1000 - limits.RECORD_HEADER_BYTES


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("delete,3", DeletePolicy("delete", 3 * HOUR_MS)),
        ("delete,72s", DeletePolicy("delete", 72_000)),
        ("delete,10m", DeletePolicy("delete", 600_000)),
        ("delete,10h", DeletePolicy("delete", 10 * HOUR_MS)),
        ("delete,12,24", DeletePolicy("delete", 12 * HOUR_MS)),  # extra argument ignored
        ("archive,3", DeletePolicy("archive", 3 * HOUR_MS, False)),
        ("archive,3,true", DeletePolicy("archive", 3 * HOUR_MS, True)),
        ("archive, 5m , false", DeletePolicy("archive", 300_000, False)),
    ],
)
def test_delete_policies(text, policy):
    assert DeletePolicy.parse(text) == policy
    assert DeletePolicy.parse(str(policy)) == policy


# ---- topics: inheritance, paths, matching ------------------------------------------------


def test_topic_overrides_and_inheritance(tmp_path):
    text = ini(
        system={"numPartitions": "2", "unflushThreshold": "7", "unflushInterval": "99",
                "deletePolicy": "delete,1", "deleteWhen": "0 30 3 * * ?", "stat": "true",
                "acceptSubscribe": "false", "dataPath": "data"},
        topic_test={"numPartitions": "4*2", "unflushThreshold": "",
                    "deletePolicy": "archive,2,true",
                    "dataPath": "/abs/topicdata", "acceptPublish": "false"},
        topic_other={},
    )
    config = load(text, tmp_path)
    test, other = config.topic_config("test"), config.topic_config("other")
    assert (test.num_partitions, test.unflush_threshold, test.unflush_interval_ms) == (8, 7, 99)
    assert test.delete_policy == DeletePolicy("archive", 2 * HOUR_MS, True)
    assert test.delete_when == "0 30 3 * * ?"
    assert (test.accept_publish, test.accept_subscribe, test.stat) == (False, False, True)
    assert test.data_path == Path("/abs/topicdata")
    assert (other.num_partitions, other.delete_policy.retention_ms) == (2, HOUR_MS)
    assert other.data_path == tmp_path / "data" == config.data_path


def test_relative_paths_resolve_against_the_ini_directory(tmp_path, monkeypatch):
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (conf_dir / "server.ini").write_text(
        ini(system={"dataPath": "../run/data", "dataLogPath": "txlog"},
            topic_test={"dataPath": "./t"})
    )
    config = load_config(os.path.relpath(conf_dir / "server.ini"))
    assert config.data_path == tmp_path / "run" / "data"
    assert config.data_log_path == conf_dir / "txlog"
    assert config.topic_config("test").data_path == conf_dir / "t"


def test_home_is_expanded_in_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", "/home/u")
    assert load(ini(system={"dataPath": "~/q"}), tmp_path).data_path == Path("/home/u/q")


def test_topic_matching_exact_then_sorted_patterns(tmp_path):
    text = ini(
        **{"topic_logs.*": {"numPartitions": "3"}, "topic_a.*": {"numPartitions": "5"},
           "topic_a.b*": {"numPartitions": "6"}, "topic_*-x": {"numPartitions": "7"},
           "topic_logs.app": {"numPartitions": "2"}}
    )
    config = load(text, tmp_path)
    assert config.topic_config("logs.app").num_partitions == 2  # exact wins
    logs_web = config.topic_config("logs.web")
    assert (logs_web.name, logs_web.pattern, logs_web.num_partitions) == ("logs.web", "logs.*", 3)
    assert config.topic_config("a.bc").pattern == "a.*"  # first pattern in name order
    assert config.topic_config("q-x").num_partitions == 7
    assert config.topic_config("logs") is None  # '.' is literal, '*' must match fully
    assert config.topic_config("xlogs.a") is None
    assert config.topic_config("test").pattern is None
    assert config.topic_config("nothing") is None
    assert config.topic_config("../x") is None
    assert config.topics == ["*-x", "a.*", "a.b*", "logs.*", "logs.app", "test"]


def test_regex_characters_in_patterns_are_literal(tmp_path):
    config = load(ini(**{"topic_a.c*": {}}), tmp_path)
    assert config.topic_config("a.c1") is not None
    assert config.topic_config("abc1") is None


# ---- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.b-c_1", "A", "x" * 249, "..a", "-"])
def test_valid_names(name):
    assert validate_topic_name(name) == name
    assert validate_group_name(name) == name
    assert is_valid_name(name)


@pytest.mark.parametrize("name", ["../x", ".", "..", "", "x" * 250, "a b", "a/b", "ü", "a*", None])
def test_invalid_names(name):
    with pytest.raises(InvalidNameError):
        validate_topic_name(name)
    with pytest.raises(InvalidNameError, match="invalid group name"):
        validate_group_name(name)
    assert not is_valid_name(name)


# ---- overrides and summary ---------------------------------------------------------------


def test_with_overrides(tmp_path):
    config = load(ini(topic_test={"numPartitions": "3"}, topic_other={}), tmp_path)
    assert config.with_overrides(serverPort=0).server_port == 0
    new = config.with_overrides(server_port=0, num_partitions=5, data_path=tmp_path / "d")
    assert (new.server_port, new.num_partitions) == (0, 5)
    assert new.data_path == tmp_path / "d" == new.data_log_path
    assert new.topic_config("other").num_partitions == 5  # follows [system]
    assert new.topic_config("test").num_partitions == 3  # set in its own section
    assert new.topic_config("other").data_path == tmp_path / "d"
    assert config.server_port == 8123  # unchanged
    assert config.with_overrides(unflushThreshold="2*3").unflush_threshold == 6
    with pytest.raises(ConfigError, match="override brokerId=2000: must be 0..1023"):
        config.with_overrides(brokerId=2000)
    with pytest.raises(ConfigError, match="maxTransferSize - 20"):
        config.with_overrides(transfer_bytes_max=100)
    with pytest.raises(ConfigError, match="Empty zookeeper servers"):
        config.with_overrides(zk=ZkConfig(connect=""))
    assert not config.with_overrides(zk=ZkConfig(enabled=False)).zk.enabled


def test_summary_mentions_the_important_settings(tmp_path):
    summary = load(ini(system={"unflushThreshold": "0"}), tmp_path).summary()
    for fragment in ("broker 0", "group commit", "retention delete,168", "zookeeper localhost:2181",
                     "topics test(1)", "crc32"):
        assert fragment in summary
    assert len(summary.splitlines()) <= 12
