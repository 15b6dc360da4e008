"""Command lines of the entry points; the logic lives in broker/, client/ and bench/."""

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
    parser.add_argument("--ready-file", type=Path,
                        help="write {pid, port, url} as JSON here once serving (for scripts)")
    args = parser.parse_args(argv)
    from .broker.server import serve
    try:
        return serve(args)
    except ConfigError as exc:
        print(f"metaq-server: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"metaq-server: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(server_main())
