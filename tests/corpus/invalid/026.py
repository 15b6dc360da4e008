"""A broker never sends requests."""

from metaq_fast.protocol import *  # noqa: F403

decoder = "response"
before = [ResultReply(200, b'', 1)]
fatal = True
match = 'expected a result, value or values reply'
after = []
