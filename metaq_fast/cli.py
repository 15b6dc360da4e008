"""Command lines of the entry points; the logic lives in broker/, client/ and bench/.

``python -m metaq_fast.cli ARGS`` runs metaq-server, ``python -m metaq_fast.cli admin ARGS``
metaq-admin (for environments without the console scripts).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import ConfigError


def server_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="metaq-server",
        description="Run a metaq_fast broker (MetaQ-compatible) from a MetaQ server.ini.")
    parser.add_argument("-f", "--config", required=True, type=Path, metavar="PATH",
                        help="server.ini (MetaQ's format)")
    parser.add_argument("-l", "--local", action="store_true",
                        help="local mode: start a ZooKeeper for this broker (as MetaQ's -l)")
    parser.add_argument("--port", type=int, help="override serverPort (0 = a free port)")
    parser.add_argument("--broker-id", type=int, help="override brokerId")
    parser.add_argument("--workers", type=int, help="override workerCount")
    parser.add_argument("--data-path", type=Path, help="override dataPath")
    parser.add_argument("--zk-connect", help="override zk.zkConnect")
    parser.add_argument("--no-zk", action="store_true", help="run without ZooKeeper (zk.zkEnable=false)")
    parser.add_argument("--log-level", help="override logLevel")
    parser.add_argument("--log-file", type=Path, metavar="PATH",
                        help="override logFile (supervisor and workers log there)")
    parser.add_argument("--dashboard-port", type=int, metavar="PORT",
                        help="override dashboardHttpPort (0 = a free port, -1 = no dashboard)")
    parser.add_argument("--ready-file", type=Path,
                        help="write {pid, port, url} as JSON here once serving (for scripts); "
                             "with --brokers, the cluster's pids and addresses")
    parser.add_argument("--slave", type=Path, metavar="FILE",
                        help="run as a slave of brokerId's master: MetaQ's async_slave.properties "
                             "(slaveId, slaveGroup, slaveMaxDelayInMills) or an ini with [slave]")
    parser.add_argument("--slave-id", type=int, metavar="N",
                        help="run as slave N of brokerId's master (as slaveId=N)")
    parser.add_argument("--brokers", type=int, metavar="N",
                        help="with --local: run N brokers (2..32) in the foreground, ids brokerId+i "
                             "on serverPort+i, data in <dataPath>/../broker-<id>; Ctrl-C stops "
                             "all (README: 'A local cluster')")
    parser.add_argument("--slaves", type=int, metavar="M",
                        help="with --local: also run M slaves (0..4) of each broker, on the "
                             "ports after the brokers' (README: 'Replication')")
    args = parser.parse_args(argv)
    try:
        if (args.brokers is not None and args.brokers != 1) or args.slaves:
            from .local_cluster import run_local_cluster
            return run_local_cluster(args)
        from .broker.server import serve
        return serve(args)
    except ConfigError as exc:
        print(f"metaq-server: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"metaq-server: {exc}", file=sys.stderr)
        return 1


def admin_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metaq-admin",
        description="Inspect and operate a MetaQ cluster (brokers, topics, consumer groups) "
                    "through ZooKeeper and the brokers.",
        epilog="Exit codes: 0 done, 1 a broker refused or failed, 2 bad arguments, 3 ZooKeeper "
               "unreachable, 4 unknown group/topic/broker/partition, 5 the group has live "
               "members, 6 a broker unreachable.")
    where = parser.add_argument_group("where the cluster is")
    where.add_argument("-z", "--zk-connect", metavar="HOSTS",
                       help="ZooKeeper connect string host:port[,...][/chroot] (default: "
                            "$METAQ_ZK_CONNECT, else zk.zkConnect of -f, else 127.0.0.1:2181)")
    where.add_argument("--zk-root", metavar="PATH",
                       help="MetaQ's root in ZooKeeper (default: zk.zkRoot of -f, else /meta)")
    where.add_argument("-f", "--config", type=Path, metavar="PATH",
                       help="a broker's server.ini to take zk.zkConnect and zk.zkRoot from")
    where.add_argument("--broker-url", metavar="URL",
                       help="meta://host:port of one broker, for peek/close/open without "
                            "ZooKeeper")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S",
                        help="seconds to wait for ZooKeeper and brokers (default 10)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("brokers", help="list brokers (ids, master and slave urls)")
    sub.add_parser("replication", help="each broker id's replicas: role, epoch, in-sync set, "
                                       "lag (slaves)")
    sub.add_parser("topics", help="list topics with their brokers and partition counts")
    cmd = sub.add_parser("partitions", help="list a topic's partitions with first/end offsets")
    cmd.add_argument("topic")
    sub.add_parser("groups", help="list consumer groups")
    cmd = sub.add_parser("group", help="describe a consumer group: members, owners, committed "
                                       "offsets, end offsets, lag in bytes and messages")
    cmd.add_argument("group")
    cmd.add_argument("--topic", help="only this topic")
    cmd.add_argument("--no-count", action="store_true",
                     help="do not read records to count the lag in messages")
    cmd.add_argument("--count-bytes-max", type=int, default=256 * 1024 * 1024, metavar="N",
                     help="count messages only where the lag is at most N bytes (default 256 MiB)")
    cmd = sub.add_parser("reset-offsets", help="set a stopped group's committed offsets")
    cmd.add_argument("group")
    cmd.add_argument("topic")
    target = cmd.add_mutually_exclusive_group(required=True)
    target.add_argument("--earliest", action="store_const", dest="to", const="earliest",
                        help="to the first offset of each partition")
    target.add_argument("--latest", action="store_const", dest="to", const="latest",
                        help="to the end offset of each partition (skip everything)")
    target.add_argument("--to-offset", type=int, dest="to", metavar="OFFSET",
                        help="to this byte offset (a record start)")
    cmd.add_argument("--partition", action="append", metavar="B-P",
                     help="only this partition (<brokerId>-<partition>); repeatable")
    cmd.add_argument("--force", action="store_true",
                     help="even if the group has live members or is unknown; no offset check")
    cmd = sub.add_parser("peek", help="show messages of a partition from an offset")
    cmd.add_argument("topic")
    cmd.add_argument("partition", help="<brokerId>-<partition>, or <partition> with --broker")
    cmd.add_argument("--offset", type=int, help="start here (default: the first offset)")
    cmd.add_argument("--limit", type=int, default=10, help="messages to show (default 10)")
    cmd.add_argument("--broker", type=int, metavar="ID", help="broker id")
    cmd.add_argument("--payload-bytes", type=int, default=100, metavar="N",
                     help="payload bytes shown per message (default 100)")
    cmd = sub.add_parser("close-partitions",
                         help="close partitions START..END of a topic on a broker (puts and "
                              "gets answer 403)")
    cmd.add_argument("topic")
    cmd.add_argument("start", type=int)
    cmd.add_argument("end", type=int, nargs="?", help="last partition (default START)")
    cmd.add_argument("--broker", type=int, metavar="ID", help="broker id (needed when the "
                                                              "topic is on several brokers)")
    cmd = sub.add_parser("open-partitions", help="open every closed partition of a topic again")
    cmd.add_argument("topic")
    cmd.add_argument("--broker", type=int, metavar="ID", help="broker id")
    return parser


def admin_main(argv: list[str] | None = None) -> int:
    import json
    import logging
    import os

    from .client.admin import Admin, AdminError
    from .client.admin_render import render
    from .errors import MetaqError

    parser = admin_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="metaq-admin: %(levelname)s %(message)s")
    logging.getLogger("kazoo").setLevel(logging.CRITICAL)  # we report ZooKeeper errors ourselves
    zk_connect, root = args.zk_connect or os.environ.get("METAQ_ZK_CONNECT"), args.zk_root
    if args.config is not None:
        from .config import load_config
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(f"metaq-admin: {exc}", file=sys.stderr)
            return 2
        zk_connect = zk_connect or config.zk.connect
        root = root or config.zk.root
    broker_only = args.command in ("peek", "close-partitions", "open-partitions")
    if not zk_connect and not (broker_only and args.broker_url):
        zk_connect = "127.0.0.1:2181"
    if broker_only and args.broker_url and not args.zk_connect and args.config is None:
        zk_connect = None  # a broker named directly: no ZooKeeper needed
    try:
        with Admin(zk_connect, root=root or "/meta", broker_url=args.broker_url,
                   timeout_s=args.timeout) as admin:
            code = 0
            if args.command == "brokers":
                result = admin.brokers()
            elif args.command == "replication":
                from .client.admin_replication import replication_status
                result = replication_status(admin)
            elif args.command == "topics":
                result = admin.topics()
            elif args.command == "partitions":
                result = admin.partitions(args.topic)
            elif args.command == "groups":
                result = admin.groups()
            elif args.command == "group":
                result = admin.describe_group(args.group, args.topic,
                                              count_messages=not args.no_count,
                                              count_bytes_max=args.count_bytes_max)
                for error in result["errors"]:
                    print(f"metaq-admin: {error}", file=sys.stderr)
                code = 6 if result["errors"] else 0
            elif args.command == "reset-offsets":
                result = admin.reset_offsets(args.group, args.topic, args.to,
                                             partitions=args.partition, force=args.force)
            elif args.command == "peek":
                result = admin.peek(args.topic, args.partition, offset=args.offset,
                                    limit=args.limit, broker_id=args.broker,
                                    payload_bytes=args.payload_bytes)
            elif args.command == "close-partitions":
                end = args.start if args.end is None else args.end
                result = admin.close_partitions(args.topic, args.start, end, args.broker)
            else:
                result = admin.open_partitions(args.topic, args.broker)
    except AdminError as exc:
        print(f"metaq-admin: {exc}", file=sys.stderr)
        return exc.exit_code
    except MetaqError as exc:  # bad names and arguments (InvalidNameError, ...)
        print(f"metaq-admin: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1) if args.json else render(args.command, result))
    return code


BENCH_EPILOG = """\
scenarios:
  produce    producers send (client library), then everything is read back and verified
  consume    producers fill the topic, then consumers read it all (the timed figure)
  e2e        producers and consumers at once; latency = consumer poll - send timestamp
  metaq-put  MetaQ's single put pipelined on one connection per producer, then read back

examples:
  metaq-bench e2e --local --messages 200000 --json e2e.json --plot e2e.png
  metaq-bench produce --local --config conf/server.ini --set unflushThreshold=0 --size 1024
  metaq-bench consume --zk 10.0.0.5:2181 --topic bench --duration 30 --consumers 2
  metaq-bench --compare before.json after.json

Every run checks what it consumed (each payload carries a sequence number, a send time, a run id
and an xxh3 of itself) and exits with 1 if anything was missing, duplicated or corrupt.
Exit codes: 0 verified, 1 verification failed, 2 bad arguments or configuration, 3 the run
could not be carried out, 130 interrupted.
"""


def bench_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="metaq-bench", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Load-test a metaq_fast cluster, or a throw-away local one, and verify "
                    "every message.", epilog=BENCH_EPILOG)
    parser.add_argument("scenario", nargs="?", choices=("produce", "consume", "e2e", "metaq-put"))
    where = parser.add_argument_group("cluster")
    where.add_argument("--zk", metavar="CONNECT", help="ZooKeeper of a running cluster (host:port[/chroot])")
    where.add_argument("--zk-root", default="/meta", help="MetaQ's root in ZooKeeper (default /meta)")
    where.add_argument("--local", action="store_true",
                       help="start a throw-away ZooKeeper and brokers, stop and delete them at the end")
    where.add_argument("--config", type=Path, metavar="FILE",
                       help="local mode: the brokers' server.ini (default: built-in defaults)")
    where.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="local mode: override a server.ini key (repeatable), e.g. unflushThreshold=0")
    where.add_argument("--brokers", type=int, default=1, help="local mode: number of brokers (default 1)")
    where.add_argument("--slaves", type=int, default=0, metavar="N",
                       help="local mode: N slaves per broker (replication; with --set "
                            "minInSyncReplicas=N+1 for synchronous mode); their lag is reported")
    where.add_argument("--workers", type=int, help="local mode: workerCount of each broker")
    where.add_argument("--data-dir", type=Path, metavar="DIR",
                       help="local mode: parent directory of the cluster's files (the disk under test)")
    where.add_argument("--keep", action="store_true", help="local mode: keep the cluster's files")
    where.add_argument("--topic", default="bench", help="topic (default bench; must exist on a --zk cluster)")
    load = parser.add_argument_group("workload")
    amount = load.add_mutually_exclusive_group()
    amount.add_argument("--messages", type=int, default=100_000, metavar="N",
                        help="messages to send in total (default 100000)")
    amount.add_argument("--duration", type=float, metavar="S", help="send for S seconds instead")
    load.add_argument("--size", type=int, default=100, metavar="BYTES", help="payload size (default 100, min 28)")
    load.add_argument("--random-payload", action="store_true", help="random payload bytes (default: a fixed filler)")
    load.add_argument("--partitions", type=int,
                      help="local mode: partitions of the topic per broker (default 2, or the config's)")
    load.add_argument("--producers", type=int, default=1, help="producer processes (default 1)")
    load.add_argument("--consumers", type=int, default=1, help="consumer processes, one group (default 1)")
    load.add_argument("--batch-size", type=int, default=1000, help="messages per batch (default 1000)")
    load.add_argument("--linger-ms", type=float, default=5.0,
                      help="with --api send: how long the producer waits to fill a batch (default 5)")
    load.add_argument("--api", choices=("batch", "send"), default="batch",
                      help="batch: Producer.send_batch per batch (default); send: Producer.send per "
                           "message, batched by the producer (batch size, linger)")
    load.add_argument("--rate", type=float, metavar="MSG_PER_S",
                      help="pace the producers to this many messages/s in total, batch by batch "
                           "(latency below saturation); default: as fast as they can")
    load.add_argument("--in-flight", type=int, default=8,
                      help="batches a producer process has outstanding (default 8)")
    load.add_argument("--put-window", type=int, default=2000, help="metaq-put: puts in flight (default 2000)")
    load.add_argument("--put-chunk", type=int, default=500, help="metaq-put: puts per send (default 500)")
    load.add_argument("--fetch-bytes", type=int, default=1 << 20, help="consumer fetch size (default 1 MiB)")
    load.add_argument("--max-fetch-delay-ms", type=float, default=10.0,
                      help="consumer back-off cap when a partition is empty (default 10)")
    load.add_argument("--idle-timeout", type=float, default=15.0, metavar="S",
                      help="stop consuming after S seconds without a new message (default 15)")
    load.add_argument("--runs", type=int, default=1, help="repeat the run; figures are medians (default 1)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    out.add_argument("--plot", type=Path, metavar="FILE.png", help="draw throughput and latency")
    out.add_argument("--progress", action="store_true", help="live progress on stderr even if not a terminal")
    out.add_argument("--quiet", action="store_true", help="only the table")
    out.add_argument("--verbose", action="store_true", help="debug logging from the clients")
    out.add_argument("--inject-fault", metavar="KIND:N", help=argparse.SUPPRESS)  # tests only:
    # the first consumer drops, repeats or damages N records of its first batch (drop/dup/corrupt)
    out.add_argument("--compare", nargs=2, type=Path, metavar=("A.json", "B.json"),
                     help="print B/A for every metric of two results and exit")
    args = parser.parse_args(argv)

    from .benchtool import report
    if args.compare:
        try:
            a, b = (report.load(p) for p in args.compare)
        except (OSError, ValueError) as exc:
            print(f"metaq-bench: {exc}", file=sys.stderr)
            return 2
        print(report.compare(a, b, str(args.compare[0]), str(args.compare[1])))
        return 0
    problems = []
    if args.scenario is None:
        problems.append("give a scenario (produce, consume, e2e, metaq-put) or --compare A B")
    if bool(args.local) == bool(args.zk):
        problems.append("give either --zk CONNECT (a running cluster) or --local")
    if not args.local and (args.config or args.set or args.workers is not None or args.partitions
                           or args.brokers != 1 or args.data_dir or args.keep):
        problems.append("--config, --set, --brokers, --workers, --partitions, --data-dir and --keep "
                        "need --local")
    from .benchtool.payload import HEADER_BYTES
    if args.size < HEADER_BYTES:
        problems.append(f"--size must be at least {HEADER_BYTES} (the self-check header)")
    for name in ("messages", "producers", "consumers", "batch_size", "in_flight", "runs",
                 "put_window", "put_chunk", "brokers", "fetch_bytes"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be at least 1")
    if args.duration is not None and args.duration <= 0:
        problems.append("--duration must be positive")
    if args.rate is not None and args.rate <= 0:
        problems.append("--rate must be positive")
    if args.inject_fault and args.inject_fault.partition(":")[0] not in ("drop", "dup", "corrupt"):
        problems.append("--inject-fault must be drop:N, dup:N or corrupt:N")
    if args.config is not None and not args.config.is_file():
        problems.append(f"--config {args.config}: no such file")
    if problems:
        parser.error("; ".join(problems))
    import logging
    import signal

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .benchtool.runner import BenchError, RunAborted, Runner

    aborted = []

    def abort(signum, _frame):
        # the first signal unwinds the run (every finally block stops what it started); later
        # ones must not interrupt that clean-up
        if aborted:
            print("metaq-bench: still stopping what it started...", file=sys.stderr)
            return
        aborted.append(signum)
        raise RunAborted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, abort) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        doc = Runner(args).run()
    except (RunAborted, KeyboardInterrupt):
        print("\nmetaq-bench: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except (ConfigError, ValueError) as exc:
        print(f"metaq-bench: {exc}", file=sys.stderr)
        return 2
    except (BenchError, OSError, RuntimeError) as exc:
        print(f"metaq-bench: {exc}", file=sys.stderr)
        return 3
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(report.table(doc), flush=True)
    if args.json:
        report.write_json(doc, args.json)
        if not args.quiet:
            print(f"results: {args.json}")
    if args.plot:
        from .benchtool.plot import plot
        plot(doc, args.plot)
        if not args.quiet:
            print(f"plot: {args.plot}")
    return 0 if doc["verification"]["ok"] else 1


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:2] == ["admin"]:
        sys.exit(admin_main(sys.argv[2:]))
    sys.exit(server_main())
