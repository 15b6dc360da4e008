"""Reference 16.1: the requests produced by the Java encoders, on one connection."""

from metaq_fast.protocol import *  # noqa: F403

expected = [
    GetCommand("test", "boyan-group", 1, 1000, 1048576, -3),
    OffsetCommand("test", "boyan-test", 1, 1000, -1),
    PutCommand("test", 1, b"hello", 0, -1, None, 0),
    PutCommand("test", 1, b"hello", 0, -1, "TX:test:1", 0),
    SyncCommand("test", 1, b"hello", 0, 9999, 777, 0),
    StatsCommand("", -1000),
    StatsCommand("topics", -1000),
    VersionCommand(999),
    QuitCommand(),
    TransactionCommand("TX:sessionId:99", "sessionId", "COMMIT_ONE_PHASE", 0, None, 100),
    TransactionCommand("TX:sessionId:99", "sessionId", "BEGIN", 3, None, 100),
    TransactionCommand("TX:sessionId:99", "sessionId", "BEGIN", 0, "unique-qualifier", 100),
    TransactionCommand("TX:sessionId:99", "sessionId", "BEGIN", 3, "unique-qualifier", 100),
]
