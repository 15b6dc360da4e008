"""Body above the maximum message size: skipped, not fatal."""

from metaq_fast.protocol import *  # noqa: F403

options = {"max_body_bytes": 4}
error_type = "MessageTooLargeError"
opaque = 77
before = [VersionCommand(1)]
fatal = False
match = 'put body of 20 bytes exceeds the maximum message size 4'
after = [VersionCommand(2)]
