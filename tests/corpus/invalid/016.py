"""Leading space: empty first token."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = 'starts with a space'
after = []
