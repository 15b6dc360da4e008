"""Extensions: putm (framed, not validated), getm and admin."""

from metaq_fast.protocol import *  # noqa: F403

import struct

RECORDS = [b"one", b"two!"]
BODY = b"".join(struct.pack(">I", len(r)) for r in RECORDS) + b"".join(
    struct.pack(">iiqi", len(r), 0, 0, 0) + r for r in RECORDS
)
expected = [
    PutBatchCommand("topic", 2, 2, BODY, -1, 7),
    PutBatchCommand("topic", -1, 2, BODY, 18446744073709551615, 8),
    GetBatchCommand("topic", "grp", 2, 0, 65536, 9),
    AdminCommand("close-partitions", ("topic", "0", "3"), 10),
    AdminCommand("stop", (), 11),
    AdminCommand("x", ("", "y"), 12),
]
