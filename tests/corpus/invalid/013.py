"""Transaction with 8 tokens."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = 'Invalid transaction command: 8 tokens'
after = []
