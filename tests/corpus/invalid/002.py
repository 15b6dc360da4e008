"""Put with 9 tokens (16.2 step 42)."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = 'Invalid put command: 9 tokens'
after = []
