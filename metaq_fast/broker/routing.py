"""How workers reach each other; which one owns a partition is ``metaq_fast.layout``.

Workers forward puts for partitions they do not own over a local stream socket to the owner
(an abstract unix socket, so there is no file to clean up after a crash), speaking the same
MetaQ protocol the clients speak.
"""

from __future__ import annotations

from ..layout import owner_of  # noqa: F401  (re-exported for the broker's modules)


def worker_socket_name(instance: str, slot: int) -> str:
    """Abstract unix socket address of worker ``slot`` of a broker instance."""
    return f"\0metaq-fast-{instance}-worker-{slot}"
