"""Bad transaction key (2 parts)."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = "bad transaction key 'TX:bad' in put"
after = []
