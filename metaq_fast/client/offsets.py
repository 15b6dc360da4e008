"""Reading a group's committed positions from ZooKeeper (split out of consumer.py).

Imports: kazoo, metaq_fast.zk.paths.

``offsets/<topic>/<brokerId>-<partition>`` holds ``<msgId>-<offset>`` (MetaQ's
``ZkOffsetStorage``). A node that holds anything else (written by hand, by a broken tool, cut
short) must not stop the partition: it is taken as no offset, so the consumer starts at its
configured start offset, and it is logged once per node and content, not on every claim.
"""

from __future__ import annotations

import logging

from kazoo.exceptions import NoNodeError

from ..zk import paths

log = logging.getLogger(__name__)

BAD_NODES_REMEMBERED_MAX = 1024  # so a long-lived consumer's memory of warnings stays bounded


class OffsetReader:
    def __init__(self, zk, start_offset: int, start_name: str):
        self.zk = zk
        self.start_offset = start_offset  # where a partition without a usable node starts
        self.start_name = start_name  # "earliest" or "latest", for the log
        self._warned: set[tuple[str, bytes]] = set()

    def load(self, path: str) -> tuple[int, int]:
        """``(offset, msg_id)`` committed at ``path``; the start offset (and -1) when the node
        is missing or does not hold a valid offset. Raises what kazoo raises otherwise."""
        try:
            data, _ = self.zk.get(path)
        except NoNodeError:
            return self.start_offset, -1
        try:
            msg_id, offset = paths.parse_offset(data if data is not None else b"")
            if offset < 0:
                raise ValueError(f"negative offset {offset}")
            return offset, msg_id
        except ValueError as exc:  # UnicodeDecodeError included
            self._warn(path, bytes(data or b""), exc)
            return self.start_offset, -1

    def _warn(self, path: str, data: bytes, exc: ValueError) -> None:
        key = (path, data)
        if key in self._warned:
            return
        if len(self._warned) >= BAD_NODES_REMEMBERED_MAX:
            self._warned.clear()
        self._warned.add(key)
        log.warning("offsets node %s holds %r, not <msgId>-<offset> (%s): taken as no offset, "
                    "starting at the %s offset", path, data[:200], exc, self.start_name)
