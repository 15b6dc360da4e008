"""Spaces only."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = 'blank command line'
after = []
