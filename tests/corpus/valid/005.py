"""Java Pattern.split semantics and MetaQ's first-character dispatch."""

from metaq_fast.protocol import *  # noqa: F403

expected = [
    StatsCommand("", -1000),
    StatsCommand("", 2147483647),
    StatsCommand("", 2147483647),
    VersionCommand(5),
    PutCommand("", 1, b"hello", 0, -1, None, 7),
    VersionCommand(2147483647),
    VersionCommand(3),
    VersionCommand(10),
    QuitCommand(),
    QuitCommand(),
    QuitCommand(),  # (byte) U+0171 == 'q'
    VersionCommand(12),  # (byte) U+0176 == 'v'
    GetCommand("t", "g", 1, 2, 3, 4),
    OffsetCommand("t", "g", 1, 2, 3),
    StatsCommand("a\nb", 5),
]
