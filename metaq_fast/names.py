"""Validation of topic and group names. Imports only metaq_fast.errors / limits.

A name must match ``[A-Za-z0-9._-]{1,249}`` and not be ``.`` or ``..``: it becomes a directory
name under ``dataPath`` and a ZooKeeper node name, so nothing else may reach a path.
"""

from __future__ import annotations

import re

from .errors import InvalidNameError
from .limits import NAME_CHARS_MAX

_NAME = re.compile(r"[A-Za-z0-9._-]{1,%d}" % NAME_CHARS_MAX)


def validate_name(name, kind: str = "topic") -> str:
    """Return ``name`` if valid for a ``kind`` ("topic", "group", ...); InvalidNameError if not."""
    return _validate(kind, name)


def _validate(kind: str, name) -> str:
    if not isinstance(name, str):
        raise InvalidNameError(f"invalid {kind} name: must be a string, got {type(name).__name__}")
    if not _NAME.fullmatch(name) or name in (".", ".."):
        shown = name if len(name) <= 64 else name[:64] + "..."
        raise InvalidNameError(
            f"invalid {kind} name {shown!r}: use 1-{NAME_CHARS_MAX} of [A-Za-z0-9._-], not '.' or '..'"
        )
    return name


def validate_topic_name(name) -> str:
    return _validate("topic", name)


def validate_group_name(name) -> str:
    return _validate("group", name)


def is_valid_name(name) -> bool:
    return isinstance(name, str) and bool(_NAME.fullmatch(name)) and name not in (".", "..")


NAME_PATTERN = _NAME
