"""Put with 5 tokens."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = 'Invalid put command: 5 tokens'
after = []
