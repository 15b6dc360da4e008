"""putm with a bad checksum token."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = "bad checksum 'x' in putm"
after = []
