"""Sync with 6 tokens."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = 'Invalid Sync command: 6 tokens'
after = []
