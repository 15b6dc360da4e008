"""A real Apache ZooKeeper server (Debian's ``zookeeper`` package) run as a child process.

Used by the test session fixture, CI and the broker's local mode; nothing is faked: the JVM runs
``org.apache.zookeeper.server.ZooKeeperServerMain`` from ``/usr/share/java/zookeeper.jar``
(``scripts/install.sh`` installs the package; nothing else is needed).

Imports: the standard library and ``metaq_fast.errors`` only (no kazoo; 4lw probes are plain TCP).

Files inside ``data_dir`` (created if missing; nothing is written anywhere else)::

    data_dir/zoo.cfg          generated at every start
    data_dir/zookeeper.log    the JVM's stdout and stderr (slf4j-simple at level warn), appended
    data_dir/data/            ZooKeeper's dataDir (snapshots and transaction logs)

Lifecycle of a ``LocalZooKeeper``: ``start()`` -> running -> ``stop()`` -> stopped; ``start()``
again reuses the port picked the first time. The child is started with
``setpriv --pdeathsig TERM`` (and in its own session), so it receives SIGTERM when its parent
dies, even by ``kill -9``. Caveat (Linux ``PR_SET_PDEATHSIG``): the "parent" is the *thread*
that called ``start()``; call it from a thread that lives as long as the server should (the main
thread, normally). Servers still running at interpreter exit are stopped by an ``atexit`` hook.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from metaq_fast.errors import ZooKeeperError
from metaq_fast.pdeath import die_with_parent

ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar"
SLF4J_SIMPLE_JAR = "/usr/share/java/slf4j-simple.jar"
MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"
INSTALL_HINT = "install Debian's zookeeper package: apt-get install zookeeper"

# Readiness is polled this often (recipe §2: the server serves 0.22-0.41 s after launch).
READY_POLL_INTERVAL_S = 0.05
START_TIMEOUT_S_DEFAULT = 30.0
STOP_TIMEOUT_S_DEFAULT = 10.0
# A 4lw answer larger than this is not from ZooKeeper (``cons``/``dump`` stay far below it).
FOUR_LETTER_WORD_BYTES_MAX = 4 * 1024 * 1024
# How often start() tries again with a new free port when port=0 was asked and the port it
# picked was taken by someone else between the probe and the JVM's bind.
PORT_PICK_ATTEMPTS_MAX = 3

TEST_TICK_TIME_MS = 500
PRODUCTION_TICK_TIME_MS = 2000
TEST_HEAP_MB = 128
PRODUCTION_HEAP_MB = 256
# Without it sessions are clamped to 20 ticks: MetaQ's 30 s would silently become 10 s (tick
# 500) or 40 s would be the cap (tick 2000); recipe §3.
MAX_SESSION_TIMEOUT_MS = 60_000
TEST_MIN_SESSION_TIMEOUT_MS = 1_000

# Exit statuses that mean "stopped as asked": 143 = 128 + SIGTERM from the JVM's shutdown hook,
# -15/-9 when the signal killed the process before the JVM installed its handlers.
NORMAL_EXIT_CODES = frozenset({0, 143, -signal.SIGTERM, -signal.SIGKILL})

# Strong references: a running server must be stopped at exit even if its owner dropped it.
_running: "set[LocalZooKeeper]" = set()


def find_zookeeper(java: str | None = None, zookeeper_jar: str = ZOOKEEPER_JAR) -> tuple[str, str]:
    """Locate ``java`` and the server jar and return ``(java_path, classpath)``.

    ``java`` defaults to ``shutil.which("java")``. The classpath is the jar (its manifest lists
    its dependencies) plus ``slf4j-simple.jar`` when present, so the server logs to stderr.

    Raises:
        ZooKeeperError: java or the jar is missing; the message says how to install them.
    """
    java_path = shutil.which(java) if java else shutil.which("java")
    if java_path is None:
        raise ZooKeeperError(
            f"cannot start ZooKeeper: no java executable found ({java or 'java'!r} not on PATH); "
            f"{INSTALL_HINT} (it pulls in a Java runtime)"
        )
    if not os.path.isfile(zookeeper_jar):
        raise ZooKeeperError(f"cannot start ZooKeeper: {zookeeper_jar} is missing; {INSTALL_HINT}")
    classpath = zookeeper_jar
    if os.path.isfile(SLF4J_SIMPLE_JAR):
        classpath += os.pathsep + SLF4J_SIMPLE_JAR
    return java_path, classpath


def four_letter_word(host: str, port: int, word: str, timeout_s: float = 2.0) -> str | None:
    """Send a ZooKeeper four-letter word (``srvr``, ``conf``, ``cons``, ...) and return the answer.

    Returns None when nothing answers in ``timeout_s`` (connection refused, timeout, reset).

    Raises:
        ValueError: ``word`` is not four ASCII letters.
    """
    if len(word) != 4 or not word.isascii() or not word.isalpha():
        raise ValueError(f"a four-letter word must be 4 ASCII letters, got {word!r}")
    deadline = time.monotonic() + timeout_s
    chunks: list[bytes] = []
    size = 0
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(word.encode("ascii"))
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                sock.settimeout(remaining)
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
                size += len(data)
                if size > FOUR_LETTER_WORD_BYTES_MAX:
                    return None
    except OSError:
        return None
    return b"".join(chunks).decode("utf-8", "replace")


def _has_mode_line(srvr_answer: str | None) -> bool:
    return srvr_answer is not None and any(
        line.startswith("Mode:") for line in srvr_answer.splitlines()
    )


def zookeeper_answers(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """True if a ZooKeeper serving requests answers on ``host:port`` (``srvr`` has ``Mode:``).

    Local mode uses it to connect to an existing server instead of starting a second one.
    """
    return _has_mode_line(four_letter_word(host, port, "srvr", timeout_s))


def _port_accepts(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LocalZooKeeper:
    """One standalone ZooKeeper server as a child process of this one.

    Args:
        data_dir: directory for ``zoo.cfg``, ``zookeeper.log`` and ``data/`` (created if
            missing). Tests use a temporary directory; local mode ``<broker data>/zookeeper``.
        port: client port; 0 picks a free loopback port at the first ``start()``.
        host: address to listen on (``clientPortAddress``); keep a loopback address.
        tick_time_ms: ZooKeeper's tick; None means 500 in test mode, 2000 otherwise.
        test_mode: fast settings for tests: ``forceSync=no``, ``minSessionTimeout=1000``
            (1 s sessions allowed) and tick 500. Production mode keeps fsync and purges old
            snapshots. Both set ``maxSessionTimeout=60000`` so MetaQ's 30 s sessions hold.
        heap_mb: JVM ``-Xmx``; None means 128 in test mode, 256 otherwise.
        java: java executable (name or path); None means ``shutil.which("java")``.
        zookeeper_jar: the server jar.
    """

    main_class = MAIN_CLASS  # a quorum member (the tests' ensemble) runs QuorumPeerMain

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int = 0,
        host: str = "127.0.0.1",
        tick_time_ms: int | None = None,
        test_mode: bool = False,
        heap_mb: int | None = None,
        *,
        java: str | None = None,
        zookeeper_jar: str = ZOOKEEPER_JAR,
    ):
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, got {port!r}")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            # A name such as "localhost" may resolve to ::1 as well, which an IPv4-only server
            # never answers (recipe §9): insist on an address.
            raise ValueError(
                f"host must be an IP address such as 127.0.0.1, got {host!r}"
            ) from None
        self.data_dir = Path(os.path.abspath(os.fspath(data_dir)))
        self.host = host
        self.port = port
        self.test_mode = test_mode
        if tick_time_ms is None:
            tick_time_ms = TEST_TICK_TIME_MS if test_mode else PRODUCTION_TICK_TIME_MS
        if tick_time_ms <= 0:
            raise ValueError(f"tick_time_ms must be positive, got {tick_time_ms}")
        self.tick_time_ms = tick_time_ms
        if heap_mb is None:
            heap_mb = TEST_HEAP_MB if test_mode else PRODUCTION_HEAP_MB
        if heap_mb < 16:
            raise ValueError(f"heap_mb must be at least 16, got {heap_mb}")
        self.heap_mb = heap_mb
        self._java = java
        self._zookeeper_jar = zookeeper_jar
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_start = 0
        self._port_was_picked = port == 0

    # ---- paths and state -------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.data_dir / "zoo.cfg"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "zookeeper.log"

    @property
    def zk_data_path(self) -> Path:
        """ZooKeeper's ``dataDir`` (``conf`` reports it with ``/version-2`` appended)."""
        return self.data_dir / "data"

    @property
    def connect_string(self) -> str:
        """``"127.0.0.1:PORT"`` for kazoo or ``zk.zkConnect`` (never ``localhost``: recipe §9)."""
        if self.port == 0:
            raise ZooKeeperError("ZooKeeper has no port yet: call start() first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def config_text(self) -> str:
        """The ``zoo.cfg`` that ``start()`` writes (comments on their own lines: recipe §2)."""
        lines = [
            "# generated by metaq_fast.zk.server; rewritten at every start",
            f"tickTime={self.tick_time_ms}",
            f"dataDir={self.zk_data_path}",
            f"clientPort={self.port}",
            f"clientPortAddress={self.host}",
            "maxClientCnxns=0",
            "# the Jetty admin server would need javax.servlet, which Debian's classpath lacks",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            f"maxSessionTimeout={MAX_SESSION_TIMEOUT_MS}",
        ]
        if self.test_mode:
            lines += [
                "# test mode: no fsync, sessions down to 1 s",
                "forceSync=no",
                f"minSessionTimeout={TEST_MIN_SESSION_TIMEOUT_MS}",
            ]
        else:
            lines += [
                "# production: fsync on; keep the persistent dataDir from growing forever",
                "autopurge.snapRetainCount=3",
                "autopurge.purgeInterval=24",
            ]
        return "\n".join(lines) + "\n"

    def command(self, java_path: str, classpath: str) -> list[str]:
        """The argument vector of the server process."""
        args = [
            java_path,
            "-Xms16m",
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
        ]
        if ":" not in self.host:
            args.append("-Djava.net.preferIPv4Stack=true")
        args += [
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            classpath,
            self.main_class,
            str(self.config_path),
        ]
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            args = [setpriv, "--pdeathsig", "TERM", *args]
        return args

    def log_tail(self, lines: int = 50) -> str:
        """The last ``lines`` lines this run wrote to ``zookeeper.log`` ("" if none)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_start)
                data = f.read()
        except OSError:
            return ""
        text = data.decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    # ---- start and stop --------------------------------------------------------------------

    def start(self, timeout_s: float = START_TIMEOUT_S_DEFAULT) -> "LocalZooKeeper":
        """Launch the server and wait until it serves requests; returns self.

        Ready means ``srvr`` shows a ``Mode:`` line and ``conf`` shows *our* dataDir, so an
        answer from another server on the same port never counts. Does nothing if running.

        Raises:
            ZooKeeperError: java or the jar is missing; the port already accepts connections;
                the process exited during start-up (the message holds the log tail); or it was
                not ready within ``timeout_s`` (the process is then stopped).
        """
        if self.is_running():
            return self
        java_path, classpath = find_zookeeper(self._java, self._zookeeper_jar)
        attempts = PORT_PICK_ATTEMPTS_MAX if self._port_was_picked else 1
        for attempt in range(1, attempts + 1):
            if self._port_was_picked and (self.port == 0 or attempt > 1):
                self.port = _free_port(self.host)
            try:
                self._start_once(java_path, classpath, timeout_s)
                return self
            except _PortTakenError as e:
                if attempt == attempts:
                    raise ZooKeeperError(str(e)) from None
        raise AssertionError("unreachable")

    def _start_once(self, java_path: str, classpath: str, timeout_s: float) -> None:
        if _port_accepts(self.host, self.port):
            other = (
                " (a ZooKeeper answers there: connect to it instead of starting another)"
                if zookeeper_answers(self.host, self.port)
                else ""
            )
            raise _PortTakenError(
                f"cannot start ZooKeeper on {self.host}:{self.port}: "
                f"the port already accepts connections{other}"
            )
        self._close_log()
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.zk_data_path.mkdir(exist_ok=True)
            self.config_path.write_text(self.config_text())
            self._log_file = open(self.log_path, "ab")
            self._log_start = self._log_file.tell()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            banner = f"--- metaq_fast: starting ZooKeeper on {self.host}:{self.port} at {stamp}\n"
            self._log_file.write(banner.encode())
            self._log_file.flush()
            args = self.command(java_path, classpath)
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
                close_fds=True,
                preexec_fn=None if os.path.basename(args[0]) == "setpriv" else die_with_parent,
            )
        except OSError as e:
            self._close_log()
            raise ZooKeeperError(f"cannot start ZooKeeper in {self.data_dir}: {e}") from e
        _running.add(self)
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _serves_our_data_dir(self) -> bool:
        conf = four_letter_word(self.host, self.port, "conf", 1.0)
        if conf is None:
            return False
        ours = {f"dataDir={self.zk_data_path}", f"dataDir={os.path.realpath(self.zk_data_path)}"}
        for line in conf.splitlines():
            line = line.strip()
            for prefix in ours:
                if line == prefix or line.startswith(prefix + os.sep):
                    return True
        return False

    def _wait_ready(self, timeout_s: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = self.log_tail()
                if "BindException" in tail or "Address already in use" in tail:
                    raise _PortTakenError(
                        f"ZooKeeper could not bind {self.host}:{self.port} (port already in use); "
                        f"it exited with code {code}; log {self.log_path}:\n{tail}"
                    )
                raise ZooKeeperError(
                    f"ZooKeeper exited with code {code} during start-up; "
                    f"log {self.log_path}:\n{tail}"
                )
            if zookeeper_answers(self.host, self.port, 1.0) and self._serves_our_data_dir():
                return
            if time.monotonic() >= deadline:
                other = (
                    "; another ZooKeeper answers on that port"
                    if zookeeper_answers(self.host, self.port, 1.0)
                    else ""
                )
                raise ZooKeeperError(
                    f"ZooKeeper on {self.host}:{self.port} was not serving after {timeout_s:g} s"
                    f"{other}; log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(READY_POLL_INTERVAL_S)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S_DEFAULT) -> int | None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; returns the exit code.

        Exit code 143 (SIGTERM handled by the JVM) is the normal result. Returns None if the
        server was never started. Safe to call repeatedly.
        """
        proc = self._proc
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            _running.discard(self)
            self._close_log()
        return proc.returncode

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> "LocalZooKeeper":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return (
            f"LocalZooKeeper({str(self.data_dir)!r}, {self.host}:{self.port}, "
            f"pid={self.pid}, {state})"
        )


class _PortTakenError(ZooKeeperError):
    """The port is taken (retried with another port only when the port was picked by us)."""


@atexit.register
def _stop_all_running() -> None:
    for server in list(_running):
        try:
            server.stop(timeout_s=5.0)
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass
