"""One log format for the supervisor and every worker: time, level, role and pid, logger, text.

Imports: stdlib only.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)-7s [%(role)s %(process)d] %(name)s: %(message)s"
_state = {"role": "main"}


class _RoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.role = _state["role"]
        return True


def setup(level: str = "INFO", log_file: Path | None = None, role: str = "supervisor") -> None:
    """(Re)configure the root logger; call again in a forked worker to change the role."""
    _state["role"] = role
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_metaq", False):
            root.removeHandler(handler)
            handler.close()
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler._metaq = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_RoleFilter())
    root.addHandler(handler)
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    logging.getLogger("kazoo").setLevel(max(root.level, logging.WARNING))


def set_role(role: str) -> None:
    _state["role"] = role


def pid_role() -> str:
    return f"{_state['role']} {os.getpid()}"
