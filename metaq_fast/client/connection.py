"""A connection to one broker: pipelined requests, replies matched by opaque.

Imports: stdlib (socket, threading), metaq_fast.protocol / errors.

Any thread may send requests (writes are serialised by a lock and go out as one ``sendmsg`` of
the request's buffers); one reader thread per connection decodes replies with the sans-IO
``ResponseDecoder`` and completes the ``concurrent.futures.Future`` of the request with the same
opaque. If the connection breaks, every request still waiting fails with
``BrokerConnectionError`` (retriable: the caller may try another partition). The broker's
``version`` answer tells whether it is a metaq_fast broker, which speaks our extensions
(``putm``, ``getm``, ``admin``); a MetaQ broker would close the connection on them.
"""

from __future__ import annotations

import itertools
import logging
import socket
import struct
import threading
from concurrent.futures import Future

from ..errors import BrokerConnectionError, RequestTimeoutError
from ..protocol import NEED_DATA, ResponseDecoder, ResultReply
from ..zk.paths import parse_broker_url

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
# A broker that takes no bytes for this long is treated as gone: the send fails, the connection
# breaks and its requests fail (retriable) instead of stalling the sending thread for ever.
SEND_TIMEOUT_S = 30.0
READ_BYTES = 4 * 1024 * 1024
_opaques = itertools.count(1)


def next_opaque() -> int:
    """Request ids, unique in this process, kept within Java's int like MetaQ's."""
    return next(_opaques) & 0x7FFFFFFF


class BrokerConnection:
    def __init__(self, host: str, port: int, *, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 send_timeout_s: float = SEND_TIMEOUT_S, name: str = ""):
        self.host = host
        self.port = port
        self.name = name or f"{host}:{port}"
        try:
            self.sock = socket.create_connection((host, port), timeout=connect_timeout_s)
        except OSError as exc:
            raise BrokerConnectionError(f"cannot connect to broker {self.name}: {exc}") from exc
        self.sock.settimeout(None)  # blocking reads in the reader thread, no read timeout
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # sends only: the kernel gives up on a send that makes no progress (EAGAIN -> _fail)
        seconds = int(send_timeout_s)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack(
            "ll", seconds, int((send_timeout_s - seconds) * 1e6)))
        self._write_lock = threading.Lock()
        self._pending: dict[int, Future] = {}
        self._pending_lock = threading.Lock()
        self.closed = False
        self.error: BaseException | None = None
        self._reader = threading.Thread(target=self._read_loop, name=f"metaq-conn-{self.name}",
                                        daemon=True)
        self._reader.start()
        self._is_metaq_fast: bool | None = None

    @classmethod
    def from_url(cls, url: str, **kw) -> "BrokerConnection":
        host, port = parse_broker_url(url)
        return cls(host, port, name=url, **kw)

    # ---- requests ---------------------------------------------------------------------------

    def submit(self, opaque: int, buffers) -> Future:
        """Send one request (``buffers``: bytes or a sequence of bytes-like) whose opaque is
        ``opaque``; the future gets its reply (``ResultReply``, ``ValueReply``, ``ValuesReply``)."""
        future: Future = Future()
        if isinstance(buffers, (bytes, bytearray, memoryview)):
            buffers = [buffers]
        with self._pending_lock:
            if self.closed:
                future.set_exception(self._broken())
                return future
            self._pending[opaque] = future
        try:
            with self._write_lock:
                _send_all(self.sock, list(buffers))
        except OSError as exc:
            self._fail(exc)
        return future

    def submit_later(self, opaque: int) -> Future:
        """Expect a reply for ``opaque`` (the request goes out with ``send_buffers``): lets a
        caller write many requests in one ``sendmsg``."""
        future: Future = Future()
        with self._pending_lock:
            if self.closed:
                future.set_exception(self._broken())
            else:
                self._pending[opaque] = future
        return future

    def send_buffers(self, buffers) -> None:
        try:
            with self._write_lock:
                _send_all(self.sock, list(buffers))
        except OSError as exc:
            self._fail(exc)

    def call(self, opaque: int, buffers, timeout_s: float = 10.0):
        """``submit`` and wait for the reply."""
        future = self.submit(opaque, buffers)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            with self._pending_lock:
                self._pending.pop(opaque, None)
            raise RequestTimeoutError(f"no answer from broker {self.name} in {timeout_s} s") from None

    def fail_request(self, opaque: int, error: BaseException) -> bool:
        """Stop waiting for the reply to ``opaque``: its future fails with ``error`` now and a
        late reply is dropped. False if it was answered (or failed) already."""
        with self._pending_lock:
            future = self._pending.pop(opaque, None)
        if future is None or future.done():
            return False
        future.set_exception(error)
        return True

    def is_metaq_fast(self, timeout_s: float = 10.0) -> bool:
        """True if the broker speaks our extensions (its version names metaq_fast)."""
        if self._is_metaq_fast is None:
            opaque = next_opaque()
            reply = self.call(opaque, b"version %d\r\n" % opaque, timeout_s)
            self._is_metaq_fast = isinstance(reply, ResultReply) and bytes(reply.body).startswith(b"metaq_fast")
        return self._is_metaq_fast

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    # ---- reading ----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        decoder = ResponseDecoder()
        sock = self.sock
        try:
            while True:
                data = sock.recv(READ_BYTES)
                if not data:
                    raise ConnectionError("connection closed by the broker")
                decoder.feed(data)
                while True:
                    reply = decoder.next_command()
                    if reply is NEED_DATA:
                        break
                    with self._pending_lock:
                        future = self._pending.pop(reply.opaque, None)
                    if future is None:
                        log.debug("%s: reply for unknown opaque %d dropped", self.name, reply.opaque)
                    elif not future.done():
                        future.set_result(reply)
        except Exception as exc:  # the connection is unusable: fail what waits on it
            self._fail(exc)

    def _broken(self) -> BrokerConnectionError:
        return BrokerConnectionError(f"connection to broker {self.name} is closed"
                                     + (f": {self.error}" if self.error else ""))

    def _fail(self, exc: BaseException) -> None:
        with self._pending_lock:
            if self.closed and not self._pending:
                return
            if not self.closed:
                self.closed = True
                self.error = exc
            pending = list(self._pending.values())
            self._pending.clear()
        if pending:
            log.warning("connection to %s lost with %d request(s) in flight: %s", self.name,
                        len(pending), exc)
        error = self._broken()
        for future in pending:
            if not future.done():
                future.set_exception(error)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self._fail(ConnectionAbortedError("closed by the client"))
        try:
            self.sock.close()
        except OSError:
            pass


def _send_all(sock: socket.socket, buffers: list) -> None:
    while buffers:
        sent = sock.sendmsg(buffers[:512])
        while sent:
            head = buffers[0]
            n = len(head)
            if sent >= n:
                buffers.pop(0)
                sent -= n
            else:
                buffers[0] = memoryview(head)[sent:]
                sent = 0


class ConnectionPool:
    """One connection per broker address, opened on demand, replaced once broken."""

    def __init__(self):
        self._lock = threading.Lock()
        self._connections: dict[tuple[str, int], BrokerConnection] = {}

    def get(self, host: str, port: int) -> BrokerConnection:
        key = (host, port)
        with self._lock:
            conn = self._connections.get(key)
            if conn is not None and not conn.closed:
                return conn
        conn = BrokerConnection(host, port)  # outside the lock: connecting may take time
        with self._lock:
            existing = self._connections.get(key)
            if existing is not None and not existing.closed:
                conn.close()
                return existing
            self._connections[key] = conn
            return conn

    def get_url(self, url: str) -> BrokerConnection:
        return self.get(*parse_broker_url(url))

    def drop(self, host: str, port: int) -> None:
        with self._lock:
            conn = self._connections.pop((host, port), None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._lock:
            connections = list(self._connections.values())
            self._connections.clear()
        for conn in connections:
            conn.close()
