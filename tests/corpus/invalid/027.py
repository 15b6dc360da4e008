"""values whose index disagrees with its data length."""

from metaq_fast.protocol import *  # noqa: F403

decoder = "response"
before = []
fatal = True
match = 'index describes 26 bytes'
after = []
