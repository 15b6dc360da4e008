"""The partition log: memory-mapped segments, flush policy, recovery and retention.

Knows nothing of the network, the protocol or ZooKeeper.
"""

from .ids import MessageIdAllocator
from .log import PartitionLog, PartitionReader
from .results import AppendResult, FlushPolicy, NotRecordBoundaryError, ReadSlice, RecordSlice
from .retention import RetentionPolicy, apply_retention, dispose, expire

__all__ = [
    "AppendResult", "FlushPolicy", "MessageIdAllocator", "NotRecordBoundaryError",
    "PartitionLog", "PartitionReader", "ReadSlice", "RecordSlice", "RetentionPolicy",
    "apply_retention", "dispose", "expire",
]
