"""Which worker owns a partition, and how workers reach each other. Imports only stdlib.

Every process computes ownership from the same two numbers (the topic and the worker count), so
no table has to be shared or kept in step, and a topic created by its first put needs no
coordination: ``owner = (crc32(topic) + partition) % workers`` spreads a topic's partitions
over the workers round robin, starting at a topic-dependent worker.

Workers forward puts for partitions they do not own over a local stream socket to the owner
(an abstract unix socket, so there is no file to clean up after a crash), speaking the same
MetaQ protocol the clients speak.
"""

from __future__ import annotations

import zlib


def owner_of(topic: str, partition: int, workers: int) -> int:
    return (zlib.crc32(topic.encode("utf-8")) + partition) % workers


def worker_socket_name(instance: str, slot: int) -> str:
    """Abstract unix socket address of worker ``slot`` of a broker instance."""
    return f"\0metaq-fast-{instance}-worker-{slot}"
