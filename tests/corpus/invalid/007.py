"""Empty line."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = 'empty command line'
after = []
