"""Non-numeric partition."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = "bad partition 'x' in put, expected an int32"
after = []
