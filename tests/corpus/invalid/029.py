"""admin without opaque."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = 'admin needs at least 3 tokens'
after = []
