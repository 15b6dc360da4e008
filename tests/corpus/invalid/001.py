"""Unknown command (16.2 step 41)."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = "unknown command 'hello'"
after = []
