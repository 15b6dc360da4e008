"""Get with 6 tokens."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = 'get needs at least 7 tokens, got 6'
after = []
