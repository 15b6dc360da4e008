"""Which worker of a broker owns a partition. Imports only stdlib.

Every process (and every client that wants to reach the owner directly) computes ownership from
the topic and the broker's worker count alone, so nothing has to be shared or kept in step:
``owner = (crc32(topic) + partition) % workers`` spreads a topic's partitions over the workers
round robin, starting at a topic-dependent worker. A broker tells its worker count and the
workers' own ports in its ``admin layout`` answer.
"""

from __future__ import annotations

import zlib

OWNER_RULE = "crc32-plus-partition"


def owner_of(topic: str, partition: int, workers: int) -> int:
    return (zlib.crc32(topic.encode("utf-8")) + partition) % workers
