"""Stats opaque beyond int32."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = "bad opaque '99999999999' in stats"
after = []
