"""What a producer's send resolves to: ``SendResult`` (one message) and ``BatchResult`` (a
batch: one partition, consecutive records). Built by the sender from the broker's answer;
importable from ``metaq_fast.client.producer`` as well.

Imports: numpy (the batch's offsets and ids) and zk.paths (Partition).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..zk.paths import Partition


@dataclass(frozen=True, slots=True)
class SendResult:
    """Where a message went: MetaQ's SendResult (partition ``"<brokerId>-<partition>"``)."""

    topic: str
    partition: Partition
    offset: int
    msg_id: int


class BatchResult:
    """Where a batch went: one partition, consecutive records."""

    __slots__ = ("topic", "partition", "offsets", "msg_ids")

    def __init__(self, topic: str, partition: Partition, offsets: np.ndarray, msg_ids: np.ndarray):
        self.topic = topic
        self.partition = partition
        self.offsets = offsets
        self.msg_ids = msg_ids

    def __len__(self) -> int:
        return len(self.msg_ids)

    def __getitem__(self, i: int) -> SendResult:
        return SendResult(self.topic, self.partition, int(self.offsets[i]), int(self.msg_ids[i]))

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]
