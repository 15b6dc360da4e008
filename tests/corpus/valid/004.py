"""Bodies are opaque bytes: CRLF, command text, NUL and 0xff inside bodies; empty bodies."""

from metaq_fast.protocol import *  # noqa: F403

expected = [
    PutCommand("t", 0, b"put\r\nput t 1 1 0 2\r\n", 0, -1, None, 1),
    PutCommand("t", 0, b"\r\n", 0, -1, None, 2),
    PutCommand("t", 0, b"", 0, -1, None, 3),
    GetCommand("t", "g", 0, 0, 1, 4),
    PutCommand("t", 0, b"\x00\xff\r", 0, -1, None, 5),
]
