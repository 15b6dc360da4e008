"""Decoder corpus, gunicorn style: every ``{valid,invalid}/NNN.txt`` is replayed whole, byte by
byte and in random chunks, through ``read_commands`` and through ``next_command``; every replay
must give the same sequence of commands and errors, equal to the sidecar ``NNN.py``.

``NNN.txt``: the wire bytes as text with Python escapes (``\\r\\n``, ``\\xff``, ``\\\\``);
physical newlines are ignored (one command line per physical line, for reading).

``NNN.py`` (executed with the names of ``metaq_fast.protocol``) sets:
  decoder   "request" (default) or "response"
  options   keyword arguments of the decoder (default none)
  valid:    expected = [commands...]
  invalid:  before = [commands decoded before the error]; fatal = bool; match = regex the
            message must contain; after = [commands decoded after a non-fatal error];
            optional error_type (class name) and opaque (the error's opaque).
"""

from __future__ import annotations

import codecs
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import metaq_fast.protocol as protocol
from metaq_fast.errors import ProtocolError
from metaq_fast.protocol import NEED_DATA, RequestDecoder, ResponseDecoder

HERE = Path(__file__).parent
SEEDS = range(6)


@dataclass(frozen=True)
class Error:
    """An error as seen by a replay (compared across replays)."""

    type_name: str
    fatal: bool
    message: str
    opaque: Any
    position: Any


def load(path: Path) -> tuple[bytes, dict[str, Any]]:
    text = path.read_text(encoding="ascii").replace("\n", "")
    data = codecs.escape_decode(text.encode("ascii"))[0]
    namespace: dict[str, Any] = {name: getattr(protocol, name) for name in protocol.__all__}
    exec(compile(path.with_suffix(".py").read_text(), str(path.with_suffix(".py")), "exec"), namespace)  # noqa: S102
    return data, namespace


def make_decoder(spec: dict[str, Any]):
    cls = ResponseDecoder if spec.get("decoder", "request") == "response" else RequestDecoder
    return cls(**spec.get("options", {}))


def chunkings(data: bytes) -> dict[str, list[bytes]]:
    ways = {"whole": [data], "bytes": [data[i : i + 1] for i in range(len(data))]}
    for seed in SEEDS:
        rng = random.Random(seed)
        chunks, i = [], 0
        while i < len(data):
            step = rng.randint(1, max(1, min(len(data) // 2, 64)))
            chunks.append(data[i : i + step])
            i += step
        ways[f"random{seed}"] = chunks
    return ways


def replay(spec: dict[str, Any], chunks: list[bytes], *, use_next: bool) -> list[Any]:
    dec = make_decoder(spec)
    events: list[Any] = []
    for chunk in chunks:
        dec.feed(chunk)
        while True:
            try:
                if use_next:
                    cmd = dec.next_command()
                    if cmd is NEED_DATA:
                        break
                    events.append(cmd)
                else:
                    cmds = dec.read_commands()
                    if not cmds:
                        break
                    events.extend(cmds)
            except ProtocolError as exc:
                events.append(Error(type(exc).__name__, exc.fatal, str(exc), exc.opaque, exc.position))
                if exc.fatal:
                    return events
    return events


def corpus(kind: str) -> list[Path]:
    return sorted((HERE / kind).glob("*.txt"))


def test_corpus_is_not_empty():
    assert len(corpus("valid")) >= 10
    assert len(corpus("invalid")) >= 30


def all_replays(data: bytes, spec: dict[str, Any]) -> dict[str, list[Any]]:
    results = {}
    for name, chunks in chunkings(data).items():
        assert b"".join(chunks) == data
        results[f"{name}/read_commands"] = replay(spec, chunks, use_next=False)
        results[f"{name}/next_command"] = replay(spec, chunks, use_next=True)
    return results


@pytest.mark.parametrize("path", corpus("valid"), ids=lambda p: p.stem)
def test_valid(path: Path):
    data, spec = load(path)
    for name, events in all_replays(data, spec).items():
        assert events == spec["expected"], name


@pytest.mark.parametrize("path", corpus("invalid"), ids=lambda p: p.stem)
def test_invalid(path: Path):
    data, spec = load(path)
    replays = all_replays(data, spec)
    first = replays["whole/read_commands"]
    for name, events in replays.items():
        assert events == first, name
    errors = [i for i, e in enumerate(first) if isinstance(e, Error)]
    assert errors, "no error raised"
    at = errors[0]
    error = first[at]
    assert first[:at] == spec.get("before", [])
    assert error.fatal is spec["fatal"]
    assert re.search(spec["match"], error.message), error.message
    if "error_type" in spec:
        assert error.type_name == spec["error_type"]
    if "opaque" in spec:
        assert error.opaque == spec["opaque"]
    if error.fatal:
        assert at == len(first) - 1
    else:
        assert first[at + 1 :] == spec.get("after", [])
