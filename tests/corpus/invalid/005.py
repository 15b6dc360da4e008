"""Partition beyond int32."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = "bad partition '2147483648' in put"
after = []
