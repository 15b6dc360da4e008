"""``die_with_parent()``: SIGTERM this process when its parent dies, even by SIGKILL.

Imports: stdlib only. Linux ``prctl(PR_SET_PDEATHSIG)``; elsewhere a no-op. Used as the
``preexec_fn`` of every child a metaq_fast process, tool or test starts (brokers, ZooKeeper,
bench workers) and by broker workers, so that a killed parent never leaves an orphan behind.
Caveat: the "parent" is the thread that forked the child.
"""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int | None = None) -> None:
    """Ask for SIGTERM on the parent's death. With ``expected_parent``, a parent that already
    died before this took effect (this process was re-parented) means SIGTERM now."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux
        return
    if expected_parent is not None and os.getppid() != expected_parent:
        os.kill(os.getpid(), signal.SIGTERM)
