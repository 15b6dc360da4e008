"""Bodies above copy_body_bytes_max come out as zero-copy memoryviews; equal all the same."""

from metaq_fast.protocol import *  # noqa: F403

options = {"copy_body_bytes_max": 16}
expected = [
    PutCommand("t", 0, b"01234567890123456789", 0, -1, None, 1),
    PutCommand("t", 0, b"0123456789abcdef", 0, -1, None, 2),
    PutCommand("t", 0, b"0123456789abcdefg", 1, 5, None, 3),
]
