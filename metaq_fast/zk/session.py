"""Opening a ZooKeeper session for clients, with one clear error when it cannot be had.

Imports: kazoo, metaq_fast.errors.
"""

from __future__ import annotations

import logging

from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError

from ..errors import ZooKeeperError

log = logging.getLogger(__name__)


def open_client(connect: str, *, timeout_s: float = 10.0,
                session_timeout_s: float = 30.0) -> KazooClient:
    """A started KazooClient on ``connect`` (``host:port[,host:port][/chroot]``)."""
    try:
        client = KazooClient(hosts=connect, timeout=session_timeout_s)
    except ValueError as exc:  # kazoo's own check of the connect string
        raise ZooKeeperError(f"bad ZooKeeper connect string {connect!r}: {exc}") from exc
    try:
        client.start(timeout=timeout_s)
    except (KazooTimeoutError, Exception) as exc:
        try:
            client.stop()
            client.close()
        except Exception:
            pass
        raise ZooKeeperError(f"cannot connect to ZooKeeper at {connect} within {timeout_s} s "
                             f"({type(exc).__name__}: {exc})") from exc
    return client
