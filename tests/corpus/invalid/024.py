"""Length beyond the framing limit."""

from metaq_fast.protocol import *  # noqa: F403

options = {"max_body_bytes": 100, "max_batch_bytes": 100, "frame_bytes_max": 1000}
before = []
fatal = True
match = 'length 2000 in put exceeds the framing limit 1000'
after = []
