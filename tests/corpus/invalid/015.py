"""Command name must equal put."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = "Expect put,but was 'puts'"
after = []
