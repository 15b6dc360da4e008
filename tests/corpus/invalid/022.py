"""putm whose length cannot hold its count: consumed, not fatal."""

from metaq_fast.protocol import *  # noqa: F403

opaque = 5
before = []
fatal = False
match = 'too short for 2 records'
after = [GetBatchCommand("t", "g", 0, 0, 1, 6)]
