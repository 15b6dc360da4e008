"""7-token put: a 6th token starting with '+' is a (bad) transaction key."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = "bad transaction key '\\+5'"
after = []
