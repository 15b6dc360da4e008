"""The body of a refused ``get``/``getm`` (500): written by the broker, read by our consumer.

Imports: stdlib only.

A put refused by the broker keeps MetaQ's text byte for byte ("Put message to [broker ...]
[partition ...] failed.Detail:..."; broker/handler.py). A get names the get, in the same shape:

    Get message from [broker 'meta://10.0.0.1:8123'] [partition 'test-0'] failed.Detail:<reason>

When the reason is a damaged record at the offset asked for, a metaq_fast broker appends where
the next record starts (its record index knows, the damaged bytes do not have to be read):

    ...failed.Detail:corrupt record in .../00000000000000000000.meta at position 500: checksum
    failure; next record at offset 600

so that a consumer told to skip damaged records (``Consumer(skip_corrupt=True)``) can go on at a
record boundary. MetaQ clients show the text as it is.
"""

from __future__ import annotations

import re

_NEXT_RECORD = "; next record at offset {}"
_NEXT_RECORD_RE = re.compile(rb"; next record at offset ([0-9]{1,19})\Z")


def get_failure_body(broker_url: str, topic: str, partition: int, detail: str,
                     next_record: int | None = None) -> bytes:
    text = (f"Get message from [broker '{broker_url}'] [partition '{topic}-{partition}'] "
            f"failed.Detail:{detail}")
    if next_record is not None:
        text += _NEXT_RECORD.format(next_record)
    return text.encode("utf-8")


def next_record_offset(body: bytes | bytearray | memoryview) -> int | None:
    """The offset a get failure body names as the next record's start, or None."""
    found = _NEXT_RECORD_RE.search(bytes(body))
    return int(found.group(1)) if found else None
