"""``metaq-server``: load the configuration, then run the supervisor (and, in local mode, a
ZooKeeper of its own). Imports: config, zk, broker.supervisor, broker.logs."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from ..config import load_config
from ..config_slave import SlaveConfig, load_slave_file
from ..errors import ConfigError
from ..zk.registry import BrokerRegistry
from ..zk.server import LocalZooKeeper, zookeeper_answers
from . import logs
from .supervisor import Supervisor

log = logging.getLogger(__name__)


LOCAL_ZK_CONNECT = "127.0.0.1:2181"  # local mode's ZooKeeper when the file names none


def load(args):
    """The configuration of ``args.config`` with the command line's overrides applied (the
    ZooKeeper ones before the file is checked: ``--zk-connect`` may supply what it lacks)."""
    zk_overrides = {}
    if args.zk_connect is not None:
        zk_overrides["connect"] = args.zk_connect
    if args.no_zk:
        zk_overrides["enabled"] = False
    zk_defaults = {"connect": LOCAL_ZK_CONNECT} if args.local else None
    config = load_config(args.config, zk_overrides, zk_defaults)
    overrides = {}
    if args.port is not None:
        overrides["server_port"] = args.port
    if args.broker_id is not None:
        overrides["broker_id"] = args.broker_id
    if args.workers is not None:
        overrides["worker_count"] = args.workers
    if args.data_path is not None:
        overrides["data_path"] = str(args.data_path.resolve())
    if args.log_level is not None:
        overrides["log_level"] = args.log_level
    if getattr(args, "dashboard_port", None) is not None:
        overrides["dashboard_http_port"] = args.dashboard_port
    if getattr(args, "log_file", None) is not None:
        overrides["log_file"] = str(args.log_file.resolve())
    slave_file, slave_id = getattr(args, "slave", None), getattr(args, "slave_id", None)
    if slave_file is not None:
        overrides["slave"] = load_slave_file(slave_file)
    if slave_id is not None:
        base = overrides.get("slave") or config.slave
        if slave_id < 0:
            overrides["slave"] = None
        else:
            overrides["slave"] = replace(base, slave_id=slave_id) if base is not None else \
                SlaveConfig(slave_id, f"meta-slave-group_{slave_id}")
    if overrides:
        config = config.with_overrides(**overrides)
    return config


def serve(args) -> int:
    config = load(args)
    logs.setup(config.log_level, config.log_file, role="supervisor")
    log.info("configuration %s:\n%s", config.path, config.summary())
    zookeeper = None
    if args.local:
        if not config.zk.enabled:
            raise ConfigError(f"{config.path}: --local needs zk.zkEnable=true")
        zookeeper = start_local_zookeeper(config)
    try:
        factory = registry_factory if config.zk.enabled else None
        supervisor = Supervisor(config, ready_file=args.ready_file, registry_factory=factory)
        return supervisor.run()
    finally:
        if zookeeper is not None:
            log.info("stopping the local ZooKeeper (pid %s)", zookeeper.pid)
            zookeeper.stop()


def registry_factory(config, url: str, replication) -> BrokerRegistry:
    """Register this broker in ZooKeeper (the supervisor calls this once workers serve), in the
    role ``replication`` (broker/replication.py) decides at every pass."""
    zk = config.zk

    def on_change(state: str) -> None:
        log.info("ZooKeeper session %s", state)
        replication.on_session(state)

    registry = BrokerRegistry(
        zk.connect, root=zk.root, broker_id=config.broker_id, url=url,
        session_timeout_ms=zk.session_timeout_ms, connection_timeout_ms=zk.connection_timeout_ms,
        sync_time_ms=zk.sync_time_ms, config_checksum=config.checksum, on_change=on_change,
        slave_id=config.slave.slave_id if config.slave is not None else None)
    replication.attach(registry)
    registry.start(timeout_s=max(10.0, zk.connection_timeout_ms / 1000))
    role = replication.role
    log.info("registered broker %d as %s (%s%s) in ZooKeeper %s%s", config.broker_id, url,
             role.role, f", epoch {role.epoch}" if role.epoch else "", zk.connect, zk.root)
    return registry


def start_local_zookeeper(config) -> LocalZooKeeper | None:
    """MetaQ's local mode: a real ZooKeeper for this broker, on the first address of
    zk.zkConnect, its data beside the broker's. An answering ZooKeeper there is used as is."""
    first = config.zk.connect.split(",")[0].split("/")[0]
    host, _, port_text = first.rpartition(":")
    if host in ("localhost", ""):
        host = "127.0.0.1"
    if not host.startswith("127.") or not port_text.isdigit():
        raise ConfigError(f"{config.path} [zookeeper] zk.zkConnect={config.zk.connect}: local mode "
                          "needs a loopback address such as 127.0.0.1:2181")
    port = int(port_text)
    if zookeeper_answers(host, port):
        log.info("local mode: a ZooKeeper already answers on %s:%d; using it", host, port)
        return None
    data_dir = Path(config.data_path).resolve().parent / "zookeeper"
    began = time.monotonic()
    server = LocalZooKeeper(data_dir, port=port, host=host)
    server.start(timeout_s=60)
    log.info("local mode: started ZooKeeper on %s:%d (pid %d, data %s) in %.1f s", host, port,
             server.pid, data_dir, time.monotonic() - began)
    return server
