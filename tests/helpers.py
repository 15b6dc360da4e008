"""Test helpers shared by all test suites: polling instead of sleeps, free ports, real
ZooKeeper session faults, and the one way to skip a test (``skip_or_fail``).

Import as ``from tests.helpers import wait_until`` (tests/conftest.py puts the repository root
on ``sys.path``). kazoo is imported lazily, so unit tests can use ``wait_until`` without it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import pytest

T = TypeVar("T")


def in_ci() -> bool:
    """True when $CI is "true", "1" or "yes" (any case), as CI services and ``.ci/run`` set it."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the calling test (or fixture) for ``reason``; fail it instead when ``in_ci()``.

    Every test skip goes through here. Locally a missing tool (java, gcc, root for a mount, an
    installed console script) is a reason to skip; in CI it means a broken install step, and a
    skipped test would let that pass unnoticed. ``tests/conftest.py`` also turns any other skip
    into a failure under CI, so a bare ``pytest.skip`` cannot slip through either.
    """
    if in_ci():
        pytest.fail(f"CI is set, so this test may not skip: {reason}", pytrace=False)
    pytest.skip(reason)


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float = 5.0,
    interval_s: float = 0.02,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Call ``predicate`` until it returns something truthy and return that value.

    Raises:
        AssertionError: still falsy after ``timeout_s``; the text is ``message`` (or
            ``message()`` when callable, to describe the state at the time of failure) plus
            the last value seen. Exceptions from ``predicate`` propagate at once.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout_s:g} s; last value {value!r})")
        time.sleep(interval_s)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free on ``host`` a moment ago (bind to port 0, read it, close)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def expire_session(client: Any, hosts: str, timeout_s: float = 10.0) -> int:
    """Expire ``client``'s ZooKeeper session for real, on the server; return the old session id.

    A second client attaches to the same session (same ``client_id``) and closes it, so the
    server deletes the victim's ephemeral nodes at once and the victim sees ``LOST``
    (recipe zookeeper.md §3, method 1). kazoo's harness ``expire_session()`` only fakes this in
    the client and leaves the ephemerals on the server. The victim then reconnects by itself
    with a new session; wait for that with ``wait_until`` if the test needs it.

    ``hosts`` is any connect string of the same ensemble (a chroot suffix does not matter).

    Raises:
        AssertionError: the victim is not connected, or did not report ``LOST`` in time.
    """
    from kazoo.client import KazooClient
    from kazoo.protocol.states import KazooState

    client_id = client.client_id
    if not client.connected or client_id is None:
        raise AssertionError("expire_session needs a connected client")
    lost = threading.Event()

    def on_state(state: KazooState) -> bool:
        if state == KazooState.LOST:
            lost.set()
            return True  # removes the listener
        return False

    client.add_listener(on_state)
    killer = KazooClient(hosts=hosts, client_id=client_id, timeout=timeout_s)
    try:
        killer.start(timeout=timeout_s)
        killer.stop()
    finally:
        killer.close()
    if not lost.wait(timeout_s):
        client.remove_listener(on_state)
        raise AssertionError(
            f"session 0x{client_id[0]:x} was closed on the server but the client did not "
            f"report LOST within {timeout_s:g} s"
        )
    return client_id[0]


def drop_connection(client: Any, timeout_s: float = 10.0) -> None:
    """Break ``client``'s TCP connection without expiring its session; wait for the reconnect.

    The client reports ``SUSPENDED`` then ``CONNECTED`` with the same session, and its
    ephemeral nodes stay (recipe §3, method 3). Uses kazoo's own test hook, as its harness's
    ``lose_connection()`` does.

    Raises:
        AssertionError: no ``SUSPENDED`` then ``CONNECTED`` within ``timeout_s``.
    """
    from kazoo.protocol.connection import _CONNECTION_DROP
    from kazoo.protocol.states import KazooState

    if not client.connected:
        raise AssertionError("drop_connection needs a connected client")
    suspended = threading.Event()
    reconnected = threading.Event()

    def on_state(state: KazooState) -> bool:
        if state == KazooState.SUSPENDED:
            suspended.set()
        elif state == KazooState.CONNECTED and suspended.is_set():
            reconnected.set()
            return True
        return False

    client.add_listener(on_state)
    client._call(_CONNECTION_DROP, None)
    if not (suspended.wait(timeout_s) and reconnected.wait(timeout_s)):
        client.remove_listener(on_state)
        raise AssertionError(
            f"client did not go SUSPENDED -> CONNECTED within {timeout_s:g} s "
            f"(suspended={suspended.is_set()})"
        )


def http_get(port: int, path: str) -> tuple[int, bytes]:
    """(status, body) of a GET to a dashboard on loopback; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """Every sample of a dashboard's ``/metrics``: (name, frozenset of labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http_get(port, "/metrics")
    assert status == 200, (status, body[:200])
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples}
