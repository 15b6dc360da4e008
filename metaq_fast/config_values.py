"""The value syntax of server.ini, and its line reader (config.py turns the result into a
typed ``Config``).

Imports: the standard library and metaq_fast.cron / errors only.

* lines: ``[section]`` headers, ``key=value`` split at the first ``=``, full-line comments in any
  encoding (``_read_ini``);
* integers with Aviator's arithmetic (``1024*1024``, ``/`` truncating like Java; parsed with
  ``ast`` and walked by hand, never ``eval``'d), booleans, paths relative to the ini file,
  ``deletePolicy`` (``DeletePolicy``), Quartz cron, log levels, ZooKeeper roots (``_convert``);
* the range each integer key accepts, said in the error (``_Key``, ``_check_range``).
"""

from __future__ import annotations

import ast
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from metaq_fast.cron import CronSchedule
from metaq_fast.errors import ConfigError

log = logging.getLogger("metaq_fast.config")  # its warnings are the config loader's

INT_MAX = 2**31 - 1  # MetaQ keeps these values in Java ints
INT_MIN = -(2**31)
LONG_MAX = 2**63 - 1
PORT_MAX = 65535
PARTITIONS_MAX = 10_000
WORKERS_MAX = 1024
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_HOUR_MS = 3_600_000
_RETENTION_UNIT_MS = {"s": 1000, "m": 60_000, "h": _HOUR_MS}


@dataclass(frozen=True)
class DeletePolicy:
    """What happens to a closed segment older than ``retention_ms`` (reference 5.7)."""

    name: str  # "delete" (remove the file) or "archive" (rename to .arc, or zip if compress)
    retention_ms: int
    compress: bool = False

    @classmethod
    def parse(cls, text: str) -> DeletePolicy:
        """``delete,N`` or ``archive,N[,true]``; N in hours, or with an s/m/h suffix.

        Raises ValueError. Extra arguments are ignored, as MetaQ does.
        """
        name, *args = (part.strip() for part in text.split(","))
        if name not in ("delete", "archive"):
            raise ValueError(
                f"unknown delete policy {name!r}, expected delete,N or archive,N[,true]"
            )
        if not args or not args[0]:
            raise ValueError(f"{name} needs a retention, e.g. {name},168 (hours) or {name},10m")
        match = re.fullmatch(r"([0-9]+)([smh]?)", args[0])
        if match is None:
            raise ValueError(
                f"retention {args[0]!r} must be a whole number with an optional s, m or h "
                "suffix (no suffix = hours)"
            )
        retention_ms = int(match[1]) * _RETENTION_UNIT_MS[match[2] or "h"]
        if retention_ms > LONG_MAX:
            raise ValueError(f"retention {args[0]!r} is too long")
        compress = False
        if name == "archive" and len(args) > 1:
            compress = _parse_bool(args[1])
        return cls(name, retention_ms, compress)

    def __str__(self) -> str:
        for suffix, unit_ms in (("", _HOUR_MS), ("m", 60_000), ("s", 1000)):
            if self.retention_ms % unit_ms == 0:
                text = f"{self.name},{self.retention_ms // unit_ms}{suffix}"
                return text + (",true" if self.compress else "")
        return f"{self.name},{self.retention_ms}ms"  # not expressible in server.ini


DEFAULT_DELETE_POLICY = DeletePolicy("delete", 168 * _HOUR_MS)


# ---- keys and values -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Key:
    attr: str
    kind: str  # int, bool, str, path, policy, cron, level, zkroot
    lo: int = INT_MIN
    hi: int = INT_MAX
    why: str = ""


def _ints(attr: str, lo: int = INT_MIN, hi: int = INT_MAX, why: str = "") -> _Key:
    return _Key(attr, "int", lo, hi, why)


@dataclass
class _Section:
    name: str
    line: int
    entries: dict[str, tuple[str, int]]  # key -> (value, line)


def _read_ini(raw: bytes, path: str) -> dict[str, _Section]:
    sections: dict[str, _Section] = {}
    current: _Section | None = None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    for number, line_bytes in enumerate(raw.split(b"\n"), 1):
        stripped = line_bytes.strip()
        if not stripped or stripped[:1] in (b";", b"#"):
            continue  # comments may be in any encoding
        try:
            line = stripped.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(
                f"{path} line {number}: not UTF-8 (only comment lines, starting with ';' or "
                f"'#', may use another encoding): {stripped[:64]!r}"
            ) from None
        if line.startswith("["):
            name = line[1:-1].strip()
            if not line.endswith("]") or not name:
                raise ConfigError(f"{path} line {number}: bad section header {line[:64]!r}")
            current = sections.get(name)
            if current is None:
                current = sections[name] = _Section(name, number, {})
            else:
                log.warning("%s line %d: [%s] again, continuing it", path, number, name)
            continue
        key, equals, value = line.partition("=")
        key = key.strip()
        if not equals or not key:
            raise ConfigError(
                f"{path} line {number}: expected [section], key=value or a comment starting "
                f"with ';' or '#', got {line[:64]!r}"
            )
        if current is None:
            raise ConfigError(f"{path} line {number}: key {key!r} before any [section]")
        if key in current.entries:
            log.warning(
                "%s line %d: [%s] %s set again (line %d); the last value wins",
                path, number, current.name, key, current.entries[key][1],
            )
        current.entries[key] = (value.strip(), number)
    return sections


# ---- values --------------------------------------------------------------------------------


def _convert(spec: _Key, text: str, base_dir: Path) -> object:
    """Non-blank text of one key -> its value; raises ValueError saying what is accepted."""
    if spec.kind == "int":
        return _check_range(spec, _eval_int(text))
    if spec.kind == "bool":
        return _parse_bool(text)
    if spec.kind == "path":
        return _resolve_path(text, base_dir)
    if spec.kind == "policy":
        return DeletePolicy.parse(text)
    if spec.kind == "cron":
        CronSchedule.parse(text)
        return text
    if spec.kind == "level":
        if text.upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return text.upper()
    if spec.kind == "zkroot":
        if not text.startswith("/") or text == "/" or text.endswith("/") or "//" in text:
            raise ValueError("must be an absolute ZooKeeper path such as /meta (no trailing '/')")
        return text
    assert spec.kind == "str", spec
    return text


def _check_override(spec: _Key, value: object, base_dir: Path) -> object:
    """Text goes through the file's conversion; a typed value is checked for type and range."""
    if isinstance(value, str):
        return _convert(spec, value, base_dir)
    if value is None and spec.attr in ("host_name", "app_class_path", "log_file"):
        return None
    if spec.kind == "int" and type(value) is int:
        return _check_range(spec, value)
    if spec.kind == "bool" and type(value) is bool:
        return value
    if spec.kind == "path" and isinstance(value, os.PathLike):
        return _resolve_path(os.fspath(value), base_dir)
    if spec.kind == "policy" and isinstance(value, DeletePolicy):
        return value
    raise ValueError(f"expected a {spec.kind} value, got {type(value).__name__}")


def _check_range(spec: _Key, value: int) -> int:
    if spec.lo <= value <= spec.hi:
        return value
    if spec.lo == INT_MIN and spec.hi == INT_MAX:
        accepted = f"must fit a 32-bit signed integer ({INT_MIN}..{INT_MAX})"
    elif spec.hi in (INT_MAX, LONG_MAX):
        accepted = f"must be >= {spec.lo}"
    else:
        accepted = f"must be {spec.lo}..{spec.hi}"
    raise ValueError(accepted + (f" ({spec.why})" if spec.why else ""))


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError("must be true or false")
    return lowered == "true"


def _resolve_path(text: str, base_dir: Path) -> Path:
    """``~`` expanded; relative to the ini file's directory, never the working directory."""
    return Path(os.path.normpath(base_dir / os.path.expanduser(text)))


_EXPRESSION_RE = re.compile(r"[0-9+\-*/()\s]{1,256}")
_BINARY_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div)


def _eval_int(text: str) -> int:
    """An integer, or integer arithmetic (+ - * / parentheses) as Aviator evaluates it.

    Parsed with ``ast`` and walked by hand: nothing is ever ``eval``'d.
    """
    expected = "expected an integer (arithmetic with + - * / and parentheses is allowed)"
    if not _EXPRESSION_RE.fullmatch(text):
        raise ValueError(expected)
    try:
        tree = ast.parse(re.sub(r"\b0+(\d)", r"\1", text.strip()), mode="eval")
    except SyntaxError:
        raise ValueError(expected) from None
    return _eval_node(tree.body, expected)


def _eval_node(node: ast.expr, expected: str) -> int:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        value = node.value
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        operand = _eval_node(node.operand, expected)
        value = -operand if isinstance(node.op, ast.USub) else operand
    elif isinstance(node, ast.BinOp) and isinstance(node.op, _BINARY_OPS):
        left, right = _eval_node(node.left, expected), _eval_node(node.right, expected)
        if isinstance(node.op, ast.Add):
            value = left + right
        elif isinstance(node.op, ast.Sub):
            value = left - right
        elif isinstance(node.op, ast.Mult):
            value = left * right
        elif right == 0:
            raise ValueError("division by zero")
        else:  # Java's long division truncates toward zero
            value = abs(left) // abs(right) * (1 if (left < 0) == (right < 0) else -1)
    else:
        raise ValueError(expected)
    if not -LONG_MAX - 1 <= value <= LONG_MAX:
        raise ValueError("overflows a 64-bit integer")
    return value


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]
