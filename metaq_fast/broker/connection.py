"""Client connections and worker-to-worker links: bytes in, replies out, in order.

Imports: stdlib (socket, asyncio), metaq_fast.protocol and broker helpers.

Strategy: each connection is a non-blocking socket watched by the worker's asyncio loop with
``add_reader``/``add_writer`` (no transports: we need scatter-gather ``sendmsg`` and replies
that wait). One read hands every command decoded from it to the handler at once (split only
around a refused command, which is answered in its place), so pipelined requests are handled in
batches. Replies go into an ordered queue; an item is either ready
bytes (a memoryview of a segment mapping for ``get``: the data is never copied through Python)
or a ``Pending`` placeholder for a reply that comes later — held until a group-commit flush, or
answered by the worker that owns the partition. The queue is written up to the first pending
item, so every connection gets its replies in request order.

Limits: a connection that does not read its replies stops being read once
``OUTPUT_BYTES_HIGH`` bytes wait for it, and resumes below ``OUTPUT_BYTES_LOW``; the decoder
bounds what a request may make us buffer.
"""

from __future__ import annotations

import logging
import socket
from collections import deque

from ..errors import SERVICE_UNAVAILABLE, ProtocolError
from ..limits import LINE_BYTES_MAX
from ..protocol import RequestDecoder, ResponseDecoder, ResultReply, encode_result

log = logging.getLogger(__name__)


def worker_address(instance: str, slot: int) -> str:
    """Where worker ``slot`` of a broker instance takes forwarded puts: an abstract Unix stream
    socket (no file to clean up after a crash), speaking the MetaQ protocol clients speak."""
    return f"\0metaq-fast-{instance}-worker-{slot}"

READ_BYTES = 256 * 1024
OUTPUT_BYTES_HIGH = 16 * 1024 * 1024
OUTPUT_BYTES_LOW = 4 * 1024 * 1024
IOV_MAX = 512  # buffers per sendmsg call (Linux allows 1024)


class Pending:
    """A reply that is not known yet; ``resolve(data)`` fills it (bytes)."""

    __slots__ = ("data", "on_ready")

    def __init__(self, on_ready):
        self.data = None
        self.on_ready = on_ready

    def resolve(self, data: bytes) -> None:
        if self.data is None:
            self.data = data
            self.on_ready()


class Connection:
    """One client connection (or an incoming link from another worker)."""

    def __init__(self, worker, sock: socket.socket, peer: str):
        self.worker = worker
        self.loop = worker.loop
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        config = worker.config
        self.decoder = RequestDecoder(LINE_BYTES_MAX, config.message_bytes_max,
                                      config.batch_bytes_max, put_runs=True)
        self.queue: deque = deque()
        self.queued_bytes = 0
        self.reading = True
        self.writing = False
        self.closing = False
        self.closed = False
        self.links: dict[int, WorkerLink] = {}
        self.from_worker = peer == "worker-link"  # puts forwarded by another worker
        self.loop.add_reader(self.fd, self._on_readable)

    # ---- input ----------------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.debug("connection %s: read failed: %s", self.peer, exc)
            self.close()
            return
        if not data:
            self.close()
            return
        self.received(data)

    def received(self, data: bytes) -> None:
        """Decode and answer everything ``data`` completes. The decoder hands back the good
        commands before an error and keeps the error for the next call, so it is drained here
        until it needs more bytes: nothing decodable may wait for the client's next send."""
        handler = self.worker.handler
        try:
            self.decoder.feed(data)
            while not self.closed:
                try:
                    commands = self.decoder.read_commands()
                except ProtocolError as exc:
                    if exc.fatal:
                        raise
                    handler.handle(self, [exc])  # answered 400, the stream goes on
                    continue
                if not commands:
                    break  # the decoder needs more data
                handler.handle(self, commands)
        except ProtocolError as exc:
            # MetaQ closes a connection whose bytes it cannot decode, without an answer: the
            # client could not match one to a request anyway.
            log.warning("connection %s: %s; closing", self.peer, exc)
            self.close_after_flush()
        finally:
            self._flush()  # the answers so far go out whatever happened after them

    def _pause_reading(self) -> None:
        if self.reading and not self.closed:
            self.loop.remove_reader(self.fd)
            self.reading = False

    def _resume_reading(self) -> None:
        if not self.reading and not self.closed and not self.closing:
            self.loop.add_reader(self.fd, self._on_readable)
            self.reading = True

    # ---- output (the handler's Output interface) -----------------------------------------

    def write(self, data) -> None:
        self.queue.append(data)
        self.queued_bytes += len(data)

    def write_many(self, buffers) -> None:
        for data in buffers:
            self.queue.append(data)
            self.queued_bytes += len(data)

    def write_when(self, future, data: bytes, failed) -> None:
        """Queue ``data`` to be sent once ``future`` (an asyncio future) is done, or
        ``failed(exc)`` (bytes) instead if the future fails (e.g. its flush did)."""
        pending = Pending(self._flush)
        self.queue.append(pending)
        self.queued_bytes += len(data)

        def done(f) -> None:
            exc = f.exception() if not f.cancelled() else ConnectionAbortedError("cancelled")
            if exc is None:
                pending.resolve(data)
                return
            answer = failed(exc)
            self.queued_bytes += len(answer) - len(data)
            pending.resolve(answer)

        future.add_done_callback(done)

    def forward(self, slot: int, request: bytes, replies: int, fail, convert=None,
                extra=None) -> None:
        """Send ``request`` (encoded commands; ``extra``: more buffers after it, sent without
        a copy) to the worker owning their partition; their ``replies`` answers take this place
        in the queue, through ``convert(frames)`` if given. ``fail(skip)`` gives the replies to
        send instead if that worker cannot answer (``skip``: frames already received)."""
        pipe = self.links.get(slot)
        if pipe is None or pipe.broken:
            pipe = WorkerLink(self, slot)
            self.links[slot] = pipe
        pending = Pending(self._flush)
        self.queue.append(pending)
        pipe.send(request, replies, pending, fail, convert, extra)

    def close_after_flush(self) -> None:
        self.closing = True
        self._pause_reading()

    # ---- writing ---------------------------------------------------------------------------

    def _flush(self) -> None:
        """Send what is ready, up to the first reply still pending or a full socket."""
        if self.closed:
            return
        queue = self.queue
        while queue:
            buffers, size = self._ready_buffers()
            if not buffers:
                break  # the head waits for a flush or another worker
            try:
                sent = self.sock.sendmsg(buffers)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                log.debug("connection %s: write failed: %s", self.peer, exc)
                self.close()
                return
            self._consume(sent)
            if sent < size:
                break  # the socket is full: wait until it is writable
        self._update_interest()

    def _ready_buffers(self) -> tuple[list, int]:
        buffers = []
        size = 0
        for item in self.queue:
            if type(item) is Pending:
                if item.data is None:
                    break
                item = item.data
            buffers.append(item)
            size += len(item)
            if len(buffers) >= IOV_MAX or size >= 4 * READ_BYTES:
                break
        return buffers, size

    def _consume(self, sent: int) -> None:
        self.queued_bytes -= sent
        queue = self.queue
        while sent:
            item = queue[0]
            data = item.data if type(item) is Pending else item
            n = len(data)
            if sent >= n:
                queue.popleft()
                sent -= n
            else:
                queue[0] = memoryview(data)[sent:]
                sent = 0

    def _head_ready(self) -> bool:
        head = self.queue[0]
        return type(head) is not Pending or head.data is not None

    def _update_interest(self) -> None:
        want_write = bool(self.queue) and self._head_ready()
        if want_write and not self.writing:
            self.loop.add_writer(self.fd, self._flush)
            self.writing = True
        elif not want_write and self.writing:
            self.loop.remove_writer(self.fd)
            self.writing = False
        if self.queued_bytes > OUTPUT_BYTES_HIGH:
            self._pause_reading()
        elif self.queued_bytes < OUTPUT_BYTES_LOW and not self.closing:
            self._resume_reading()
        if self.closing and not self.queue:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.reading:
            self.loop.remove_reader(self.fd)
        if self.writing:
            self.loop.remove_writer(self.fd)
        for pipe in self.links.values():
            pipe.close()
        self.links.clear()
        self.queue.clear()
        try:
            self.sock.close()
        except OSError:
            pass
        self.worker.connection_closed(self)


class WorkerLink:
    """One client connection's stream to the worker that owns some partitions it puts to.

    Requests are MetaQ put commands; every one is answered by exactly one ``result`` frame, in
    order, so replies are matched by position: the frames of a forwarded run fill its
    ``Pending`` in the client's queue. The frames are read by the protocol's
    ``ResponseDecoder``, the one reply parser. If the owner is down (restarting after a crash)
    the requests are answered with ``fail()`` at once: a clear, retriable 503, never silence;
    so are the waiting ones when the link breaks - the owner closed it, or sent a frame the
    decoder refuses (bad length, garbage, a reply other than ``result``), after which nothing
    on the stream can be matched any more.
    """

    def __init__(self, conn: Connection, slot: int):
        self.conn = conn
        self.loop = conn.loop
        self.slot = slot
        self.broken = False
        self.waiting: deque = deque()  # [pending, replies still expected, replies, fail, convert]
        self.expected = 0  # replies still expected, all entries together
        self.decoder = ResponseDecoder()  # the client's reply parser: the worker speaks MetaQ
        self.outbuf: deque = deque()
        self.writing = False
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        try:
            self.sock.connect(worker_address(conn.worker.spec.instance, slot))
        except (ConnectionRefusedError, FileNotFoundError, BlockingIOError, OSError) as exc:
            log.warning("worker %d is not reachable (%s): its partitions are unavailable",
                        slot, exc)
            self.broken = True
            self.sock.close()
            return
        self.fd = self.sock.fileno()
        self.loop.add_reader(self.fd, self._on_readable)

    def send(self, request: bytes, replies: int, pending: Pending, fail, convert=None,
             extra=None) -> None:
        if self.broken:
            pending.resolve(fail(0))
            return
        self.waiting.append([pending, replies, [], fail, convert])
        self.expected += replies
        self.outbuf.append(request)
        if extra is not None:
            self.outbuf.extend(extra)
        self._write()

    def _write(self) -> None:
        while self.outbuf:
            try:
                sent = self.sock.send(self.outbuf[0])
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._break()
                return
            head = self.outbuf[0]
            if sent < len(head):
                self.outbuf[0] = memoryview(head)[sent:]
                break
            self.outbuf.popleft()
        want = bool(self.outbuf)
        if want and not self.writing:
            self.loop.add_writer(self.fd, self._write)
            self.writing = True
        elif not want and self.writing:
            self.loop.remove_writer(self.fd)
            self.writing = False

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._break()
            return
        decoder = self.decoder
        waiting = self.waiting
        try:
            decoder.feed(data)
            # Only as many replies as requests wait: frames are matched by position.
            while self.expected:
                replies = decoder.read_commands(self.expected)
                if not replies:
                    break  # the decoder needs more bytes
                self.expected -= len(replies)
                for reply in replies:
                    if type(reply) is not ResultReply:  # a value(s) frame: not a put's answer
                        raise ProtocolError(f"expected a result frame, got {reply!r:.80}")
                    entry = waiting[0]
                    entry[2].append(reply)
                    entry[1] -= 1
                    if entry[1] == 0:
                        waiting.popleft()
                        self._answer(entry)
            if not self.expected and decoder.buffered_bytes:
                # The owner speaks only when asked: bytes nobody asked for are a broken frame,
                # found now rather than when the next forwarded put (already stored) is answered.
                raise ProtocolError(f"{decoder.buffered_bytes} unsolicited bytes after the replies")
        except ProtocolError as exc:
            # never raise out of this loop callback: the waiting requests get their 503
            log.error("worker %d answered a forwarded put with a malformed frame (%s); closing "
                      "the link", self.slot, exc)
            self._break()

    def _answer(self, entry: list) -> None:
        """Fill an entry's ``Pending`` with its replies, as the worker sent them (or converted)."""
        frames = _frames(entry[2])
        convert = entry[4]
        if convert is not None:
            try:
                frames = convert(frames)
            except Exception:
                log.exception("cannot turn worker %d's answer into replies", self.slot)
                frames = entry[3](0)
        entry[0].resolve(frames)

    def _break(self) -> None:
        if self.broken:
            return
        self.broken = True
        log.warning("link to worker %d closed with %d request(s) unanswered",
                    self.slot, len(self.waiting))
        for pending, _, frames, fail, convert in self.waiting:
            if convert is not None or not frames:
                pending.resolve(fail(0))
            else:
                pending.resolve(_frames(frames) + fail(len(frames)))
        self.waiting.clear()
        self.expected = 0
        self.close()

    def close(self) -> None:
        if getattr(self, "fd", None) is None:
            return
        self.loop.remove_reader(self.fd)
        if self.writing:
            self.loop.remove_writer(self.fd)
        self.sock.close()
        self.fd = None


def _frames(replies: list) -> bytes:
    """The bytes of a worker's ``result`` replies, passed on to the client: re-encoded from
    the decoded replies, which gives back what the worker sent (it sends canonical frames)."""
    if len(replies) == 1:
        reply = replies[0]
        return encode_result(reply.code, reply.body, reply.opaque)
    return b"".join(encode_result(r.code, r.body, r.opaque) for r in replies)


def unavailable(topic: str, partition: int, opaques) -> bytes:
    """503 answers for puts whose owning worker cannot take them now (retriable)."""
    body = (f"partition {topic}-{partition} is unavailable: its worker is restarting, "
            f"retry shortly").encode("utf-8")
    return b"".join(encode_result(SERVICE_UNAVAILABLE, body, opaque) for opaque in opaques)
