"""Replies as a client receives them (ResponseDecoder)."""

from metaq_fast.protocol import *  # noqa: F403

import struct

decoder = "response"
RECORDS = [b"hello", b"", b"world!"]
INDEX = b"".join(struct.pack(">I", len(r)) for r in RECORDS)
DATA = b"".join(struct.pack(">iiqi", len(r), 7, 99, 0) + r for r in RECORDS)
expected = [
    ResultReply(200, b"1234 0 1000", 1),
    ResultReply(404, b"not found", 99),
    ResultReply(404, b"", 99),
    ValueReply(b"hello", 99),
    ValueReply(b"", 3),
    ValuesReply(len(DATA), 3, 12345, INDEX, DATA, 4),
    ResultReply(301, b"113", 13),
]
