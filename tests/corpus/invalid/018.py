"""Non-numeric version opaque."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = "bad opaque 'x' in version"
after = []
