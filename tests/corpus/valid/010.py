"""Integer tokens: signs, leading zeros, the int32 and int64 extremes."""

from metaq_fast.protocol import *  # noqa: F403

expected = [
    PutCommand("t", 1, b"hello", 0, -3, None, 9),
    PutCommand("t", 1, b"hello", 0, 0, None, 9),
    GetCommand("t", "g", 2147483647, 9223372036854775807, -2147483648, 2147483647),
    GetCommand("t", "g", -2147483648, -9223372036854775808, 1, -2147483648),
    PutCommand("t", 0, b"abc", -2147483648, 2147483647, None, -2147483648),
]
