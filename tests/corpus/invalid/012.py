"""Transaction type is case-sensitive."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = "bad transaction type 'begin'"
after = []
