"""What a producer and a consumer both hold: a ZooKeeper client (their own, or one lent to
them), the live cluster view on it, and a pool of broker connections; opened and let go the
same way by both.

Imports: metaq_fast.errors, metaq_fast.zk (session, cluster) and client.connection.
"""

from __future__ import annotations

from ..errors import InvalidArgumentError
from ..zk.cluster import ClusterView
from ..zk.session import open_client
from .connection import ConnectionPool


class ClusterClient:
    """Base of ``Producer`` and ``Consumer``: ``_open_cluster`` in the constructor,
    ``_close_cluster`` last in ``close``; a context manager that closes."""

    def _open_cluster(self, kind: str, zk_connect, zk_client, zk_root: str, zk_timeout_s: float,
                      zk_session_timeout_s: float) -> None:
        self._own_zk = zk_client is None
        if zk_client is None:
            if not zk_connect:
                raise InvalidArgumentError(f"{kind} needs zk_connect (or zk_client)")
            zk_client = open_client(zk_connect, timeout_s=zk_timeout_s,
                                    session_timeout_s=zk_session_timeout_s)
        self.zk = zk_client
        self.cluster = ClusterView(zk_client, zk_root)
        self.pool = ConnectionPool()

    def _close_cluster(self) -> None:
        self.pool.close()
        self.cluster.close()
        if self._own_zk:
            self.zk.stop()
            self.zk.close()

    def close(self) -> None:  # pragma: no cover - each subclass has its own
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
