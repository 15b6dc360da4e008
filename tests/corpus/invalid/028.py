"""NUL command."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = "unknown command '\\\\x00'"
after = []
