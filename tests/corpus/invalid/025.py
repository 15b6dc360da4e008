"""XA key with 4 parts."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = 'XA transaction key needs 5'
after = []
