"""Reference 16.1: the decoder vectors (MetaCodecFactoryUnitTest), all put forms."""

from metaq_fast.protocol import *  # noqa: F403

expected = [
    PutCommand("test", 1, b"hello", 0, -1, None, 0),
    PutCommand("test", 1, b"hello", 0, 100, None, 0),
    PutCommand("test", 1, b"hello", 0, -1, "TX:test:100", 0),
    PutCommand("test", 1, b"hello", 0, 9999, "TX:test:100", 0),
    SyncCommand("test", 1, b"hello", 0, 9999, 0, -1),
    GetCommand("test", "boyan", 1, 1000, 1048576, -3),
    OffsetCommand("test", "boyan", 1, 1000, -1),
    VersionCommand(2147483647),
    VersionCommand(-1),
    TransactionCommand("TX:sessionId:99", "sessionId", "COMMIT_ONE_PHASE", 0, None, 100),
    TransactionCommand("TX:sessionId:99", "sessionId", "COMMIT_ONE_PHASE", 3, None, 100),
    TransactionCommand("TX:sessionId:99", "sessionId", "COMMIT_ONE_PHASE", 0, "unique-qualifier", 100),
    TransactionCommand("TX:sessionId:99", "sessionId", "COMMIT_ONE_PHASE", 3, "unique-qualifier", 100),
    PutCommand("test", 1, b"hello", 0, -1, None, 10),
]
