"""An error after good commands: they come out first."""

from metaq_fast.protocol import *  # noqa: F403

before = [VersionCommand(1)]
fatal = True
match = 'get needs at least 7 tokens, got 2'
after = []
