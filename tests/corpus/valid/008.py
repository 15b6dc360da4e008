"""Transaction quirks: 6-token slot rules, canonical keys (TX counter, XID hex)."""

from metaq_fast.protocol import *  # noqa: F403

expected = [
    TransactionCommand("TX:a:1", "s", "BEGIN", 0, "-5", 1),
    TransactionCommand("TX:a:1", "s", "BEGIN", -5, "q", 2),
    TransactionCommand("TX:a:1", "s", "BEGIN", 7, None, 3),
    TransactionCommand("TX:a:1", "s", "BEGIN", 3, "", 4),
    TransactionCommand("XID:7:ab:cd:q", "s", "PREPARE", 0, None, 5),
    TransactionCommand("null", "s", "RECOVER", 0, "qual", 6),
    PutCommand("t", 0, b"x", 0, -1, "TX:a:5", 7),
    PutCommand("t", 0, b"y", 0, -1, "XID:1:ff:0f:", 8),
]
