"""``metaq-server``: load the configuration, then run the supervisor (and, in local mode, a
ZooKeeper of its own). Imports: config, zk, broker.supervisor, broker.logs."""

from __future__ import annotations

import logging
from dataclasses import replace

from ..config import load_config
from . import logs
from .supervisor import Supervisor

log = logging.getLogger(__name__)


def load(args):
    config = load_config(args.config)
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
    if overrides:
        config = config.with_overrides(**overrides)
    zk = config.zk
    if args.zk_connect is not None:
        zk = replace(zk, connect=args.zk_connect)
    if args.no_zk:
        zk = replace(zk, enabled=False)
    return replace(config, zk=zk)


def serve(args) -> int:
    config = load(args)
    logs.setup(config.log_level, config.log_file, role="supervisor")
    log.info("configuration %s:\n%s", config.path, config.summary())
    supervisor = Supervisor(config, ready_file=args.ready_file)
    return supervisor.run()
