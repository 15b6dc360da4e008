"""Shared pytest fixtures and hooks of the metaq_fast test suite.

The file is organised in blocks, one per owner; add new fixtures in a block of their own.

Markers (declared in setup.cfg): tests that use any ZooKeeper fixture below carry
``pytest.mark.zk`` (``pytestmark = pytest.mark.zk`` at module level); long fault or soak tests
carry ``pytest.mark.slow``. ``pytest -m "not zk"`` then runs without Java.

Helpers for tests (``wait_until``, ``free_port``, ``expire_session``, ``drop_connection``) live
in ``tests/helpers.py``: ``from tests.helpers import wait_until``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# `tests.helpers` must import however pytest was started (`pytest`, `python -m pytest`, IDE).
_REPO_ROOT = str(Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from metaq_fast.errors import ZooKeeperError  # noqa: E402
from metaq_fast.zk.server import NORMAL_EXIT_CODES, LocalZooKeeper, find_zookeeper  # noqa: E402
from tests.helpers import in_ci, skip_or_fail  # noqa: E402

log = logging.getLogger(__name__)


# =================================================================================================
# ZooKeeper: one real server per test session, one chroot per test.
#
#   zk_hosts     (session)   "127.0.0.1:PORT" of a real ZooKeeper. $ZK_HOSTS if set (used as is,
#                            e.g. a server a CI job runs itself); otherwise a LocalZooKeeper in
#                            test mode (tick 500, no fsync, sessions 1..60 s) on a free loopback
#                            port in a temporary directory, stopped and removed at session end.
#                            Without java or the jar the tests using it are skipped, but fail
#                            when $CI is set (skip_or_fail), so a missing install step cannot
#                            pass unnoticed.
#   zk_server    (session)   that LocalZooKeeper, or None when $ZK_HOSTS is used.
#   zk_admin     (function)  a started KazooClient on zk_hosts (no chroot) that creates and
#                            deletes the chroot; tests may read through it but must not stop it.
#   zk_chroot    (function)  "/metaq-test-<uuid hex>", created before the test and deleted
#                            recursively after it (relative to zk_hosts).
#   zk_connect   (function)  zk_hosts + zk_chroot, e.g. "127.0.0.1:PORT/metaq-test-ab12..."; for
#                            KazooClient(hosts=...) and a broker's zk.zkConnect alike. MetaQ's
#                            tree ("/meta/...") lives inside it.
#   zk_client    (function)  a started KazooClient(zk_connect, timeout=5), stopped and closed at
#                            teardown.
#
# On a failing test that used zk_hosts, the tail of zookeeper.log is added to the report.
# =================================================================================================

_ZK_SERVER_KEY = pytest.StashKey["LocalZooKeeper | None"]()
ZK_LOG_TAIL_LINES = 60
ZK_CLIENT_TIMEOUT_S = 5.0
ZK_CHROOT_PREFIX = "/metaq-test-"


@pytest.fixture(scope="session")
def zk_hosts(request: pytest.FixtureRequest) -> Iterator[str]:
    """Connect string of the session's real ZooKeeper (see the block comment above)."""
    hosts = os.environ.get("ZK_HOSTS", "").strip()
    if hosts:
        request.config.stash[_ZK_SERVER_KEY] = None
        yield hosts
        return
    try:
        find_zookeeper()
    except ZooKeeperError as e:
        skip_or_fail(f"ZooKeeper cannot run: {e}")
    tmp = tempfile.mkdtemp(prefix="metaq-zk-")
    server = LocalZooKeeper(tmp, port=0, test_mode=True)
    try:
        server.start()
    except BaseException:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    request.config.stash[_ZK_SERVER_KEY] = server
    try:
        yield server.connect_string
    finally:
        code = server.stop()
        if code not in NORMAL_EXIT_CODES:
            log.warning("ZooKeeper exited with %s; log tail:\n%s", code, server.log_tail())
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def zk_server(request: pytest.FixtureRequest, zk_hosts: str) -> LocalZooKeeper | None:
    """The session's LocalZooKeeper, or None when $ZK_HOSTS points to another server."""
    return request.config.stash.get(_ZK_SERVER_KEY, None)


@pytest.fixture
def zk_admin(zk_hosts: str) -> Iterator[object]:
    """A started kazoo client on zk_hosts (no chroot); it creates and deletes the chroot.

    Function-scoped on purpose: a live kazoo client calls the global ``random`` from its
    connection thread, which Hypothesis flags in any property test running meanwhile.
    """
    from kazoo.client import KazooClient

    client = KazooClient(hosts=zk_hosts, timeout=ZK_CLIENT_TIMEOUT_S)
    client.start(timeout=10)
    try:
        yield client
    finally:
        client.stop()
        client.close()


@pytest.fixture
def zk_chroot(request: pytest.FixtureRequest, zk_admin) -> Iterator[str]:
    """A fresh chroot "/metaq-test-<uuid hex>", deleted recursively after the test, once the
    brokers the test started are stopped (a running broker puts back nodes deleted under it:
    its master node, which it may claim again)."""
    from kazoo.exceptions import NoNodeError, NotEmptyError

    chroot = f"{ZK_CHROOT_PREFIX}{uuid.uuid4().hex}"
    zk_admin.create(chroot)
    yield chroot
    for broker in reversed(request.node.stash.get(_BROKERS_KEY, [])):
        try:
            broker.stop()
        except Exception:  # keep stopping the others; the brokers fixture reports
            log.exception("stopping broker in %s failed", broker.directory)
    # Clients the test left running (a broker being stopped) may still add ephemerals while we
    # delete; retry a few times before reporting the leak.
    for attempt in range(5):
        try:
            zk_admin.delete(chroot, recursive=True)
            return
        except NoNodeError:
            return
        except NotEmptyError:
            if attempt == 4:
                raise


@pytest.fixture
def zk_connect(zk_hosts: str, zk_chroot: str) -> str:
    """zk_hosts with the test's chroot appended: "127.0.0.1:PORT/metaq-test-<hex>"."""
    return zk_hosts.rstrip("/") + zk_chroot


@pytest.fixture
def zk_client(zk_connect: str) -> Iterator[object]:
    """A started KazooClient inside the test's chroot; stopped and closed at teardown."""
    from kazoo.client import KazooClient

    client = KazooClient(hosts=zk_connect, timeout=ZK_CLIENT_TIMEOUT_S)
    client.start(timeout=10)
    try:
        yield client
    finally:
        client.stop()
        client.close()


# =================================================================================================
# Brokers: real metaq-server processes.
#
#   brokers      (function)  factory: brokers(name="b0", **ini) -> a started tests.brokers.
#                            BrokerProcess (port 0, its own data dir under tmp_path; ini keys
#                            as tests.brokers.server_ini takes them). Every broker it started is
#                            stopped by PID at teardown (SIGTERM, then SIGKILL), and on a failing
#                            test the tail of each broker's log is added to the report.
# =================================================================================================

_BROKERS_KEY = pytest.StashKey[list]()


@pytest.fixture
def brokers(request: pytest.FixtureRequest, tmp_path: Path):
    from tests.brokers import BrokerProcess

    started: list = []
    request.node.stash[_BROKERS_KEY] = started

    def start(name: str = "b0", start_now: bool = True, **ini):
        broker = BrokerProcess(tmp_path / name, **ini)
        started.append(broker)
        if start_now:
            broker.start()
        return broker

    yield start
    for broker in started:
        try:
            broker.stop()
        except Exception:  # keep stopping the others
            log.exception("stopping broker in %s failed", broker.directory)


# =================================================================================================
# Skips: tests skip only through tests.helpers.skip_or_fail, which fails instead when $CI is set
# (true/1/yes). As a backstop, any other skip (a bare pytest.skip, a skip marker, importorskip)
# is reported as a failure under CI too, so a missing install step never passes as a skip.
# Expected failures (xfail) are left alone.
# =================================================================================================


def _fail_skip_in_ci(report: pytest.TestReport) -> None:
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    report.outcome = "failed"
    report.longrepr = f"CI is set, so this test may not skip: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    _fail_skip_in_ci(report)
    if report.failed:
        for broker in item.stash.get(_BROKERS_KEY, []):
            report.sections.append((f"broker log {broker.log_path}", broker.log_tail(80) or "(empty)"))
    if report.failed and "zk_hosts" in getattr(item, "fixturenames", ()):
        server = item.config.stash.get(_ZK_SERVER_KEY, None)
        if server is not None:
            report.sections.append(
                (
                    f"zookeeper.log, last {ZK_LOG_TAIL_LINES} lines ({server.log_path})",
                    server.log_tail(ZK_LOG_TAIL_LINES) or "(empty)",
                )
            )
    return report

