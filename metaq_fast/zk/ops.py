"""ZooKeeper operations bound by a deadline, for the broker's registry (zk/registry.py).

Imports: stdlib (time) and kazoo only, plus metaq_fast.errors.

Every call is asynchronous underneath and waits at most the operation timeout, or what is left
of the caller's deadline, whichever is shorter; a timeout or any kazoo error becomes a
``ZooKeeperError`` naming the operation and the path. "Already exists" and "no such node" are
answers (False, None), not errors.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import ZnodeStat

from metaq_fast.errors import ZooKeeperError


class DeadlineOps:
    """get / create / set / delete on a kazoo client, each within ``op_timeout_s``."""

    def __init__(self, op_timeout_s: float):
        self._op_timeout_s = op_timeout_s

    @staticmethod
    def is_ours(client: KazooClient, stat: ZnodeStat) -> bool:
        client_id = client.client_id
        return client_id is not None and stat.ephemeralOwner == client_id[0]

    def timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self._op_timeout_s
        return max(0.0, min(self._op_timeout_s, deadline - time.monotonic()))

    def result(self, async_result, op: str, path: str, deadline: float | None = None):
        timeout = self.timeout(deadline)
        try:
            return async_result.get(timeout=timeout)
        except KazooTimeoutError:
            raise ZooKeeperError(f"ZooKeeper {op} {path} timed out after {timeout:g} s") from None

    def get(
        self, client: KazooClient, path: str, deadline: float | None = None
    ) -> tuple[bytes, ZnodeStat] | None:
        return self.get_many(client, [path], deadline)[path]

    def get_many(
        self, client: KazooClient, node_paths: Iterable[str], deadline: float | None = None
    ) -> dict[str, tuple[bytes, ZnodeStat] | None]:
        """Read many nodes in one pipelined round; None for a missing node."""
        pending = [(path, client.get_async(path)) for path in node_paths]
        result: dict[str, tuple[bytes, ZnodeStat] | None] = {}
        for path, async_result in pending:
            try:
                result[path] = self.result(async_result, "get", path, deadline)
            except NoNodeError:
                result[path] = None
            except KazooException as e:
                raise ZooKeeperError(f"get {path}: {type(e).__name__}: {e}") from e
        return result

    def create(
        self,
        client: KazooClient,
        path: str,
        data: bytes,
        *,
        ephemeral: bool,
        deadline: float | None = None,
    ) -> bool:
        """Create ``path`` (persistent parents as needed); False if it already exists."""
        try:
            self.result(
                client.create_async(path, data, ephemeral=ephemeral, makepath=True),
                "create", path, deadline,
            )
        except NodeExistsError:
            return False
        except KazooException as e:
            raise ZooKeeperError(f"create {path}: {type(e).__name__}: {e}") from e
        return True

    def set(
        self, client: KazooClient, path: str, data: bytes, deadline: float | None = None
    ) -> None:
        try:
            self.result(client.set_async(path, data), "set", path, deadline)
        except KazooException as e:
            raise ZooKeeperError(f"set {path}: {type(e).__name__}: {e}") from e

    def delete(
        self, client: KazooClient, path: str, deadline: float | None = None, version: int = -1
    ) -> bool:
        """Delete ``path``; False if it did not exist."""
        try:
            self.result(client.delete_async(path, version), "delete", path, deadline)
        except NoNodeError:
            return False
        except KazooException as e:
            raise ZooKeeperError(f"delete {path}: {type(e).__name__}: {e}") from e
        return True

    def reconcile_ephemeral(self, client: KazooClient,
                            nodes: list[tuple[str, bytes | None]]) -> None:
        """Make each ephemeral ``path`` hold ``data`` in our session (or be absent if None):
        one pipelined read, then only the nodes that differ are deleted and created."""
        current = self.get_many(client, [path for path, _ in nodes])
        for path, data in nodes:
            got = current[path]
            if got is not None and data is not None and got[0] == data and self.is_ours(
                client, got[1]
            ):
                continue
            if got is not None:
                self.delete(client, path)
            if data is not None and not self.create(client, path, data, ephemeral=True):
                raise ZooKeeperError(f"{path} was created by someone else meanwhile")

