"""Offset beyond int64."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = "bad offset '9223372036854775808' in offset, expected an int64"
after = []
