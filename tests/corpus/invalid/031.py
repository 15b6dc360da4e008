"""value from a client is decoded, but a body over the limit is fatal."""

from metaq_fast.protocol import *  # noqa: F403

options = {"max_body_bytes": 4}
before = []
fatal = True
match = 'value of 5 bytes exceeds the limit 4'
after = []
