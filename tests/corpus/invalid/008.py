"""Line longer than max_line_bytes without CRLF."""

from metaq_fast.protocol import *  # noqa: F403

options = {"max_line_bytes": 64}
before = []
fatal = True
match = 'longer than 64 bytes'
after = []
