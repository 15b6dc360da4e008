"""Negative body length."""

from metaq_fast.protocol import *  # noqa: F403

before = []
fatal = True
match = "bad length '-5' in put"
after = []
