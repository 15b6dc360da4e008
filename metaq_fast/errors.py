"""Exceptions of metaq_fast and MetaQ's result codes. Imports nothing from the package.

Every operating error is a ``MetaqError`` subclass carrying the MetaQ result code it maps to on
the wire (``code``), whether a client may retry it, maybe elsewhere (``retriable``), and whether
the client should re-read ZooKeeper before doing so (``refresh_metadata``). Programmer errors are
plain ``assert``s and never reach a client.
"""

from __future__ import annotations

# MetaQ's result codes (HttpStatus.java). Use these names, never bare numbers.
SUCCESS = 200
MOVED = 301
BAD_REQUEST = 400
UNAUTHORIZED = 401
FORBIDDEN = 403
NOT_FOUND = 404
INTERNAL_SERVER_ERROR = 500
SERVICE_UNAVAILABLE = 503
GATEWAY_TIMEOUT = 504  # client-side timeout only; never sent on the wire


class MetaqError(Exception):
    """Base of every operating error."""

    code = INTERNAL_SERVER_ERROR
    retriable = False
    refresh_metadata = False


# ---- configuration -------------------------------------------------------------------------


class ConfigError(MetaqError):
    """A server.ini that cannot be used; the message names file, section, key and range."""


# ---- names and arguments ----------------------------------------------------------------------


class InvalidNameError(MetaqError, ValueError):
    """A topic or group name outside ``[A-Za-z0-9._-]{1,249}`` (or ``.``/``..``)."""

    code = BAD_REQUEST


class InvalidArgumentError(MetaqError, ValueError):
    """An argument out of its documented range (negative size, bad offset, ...)."""

    code = BAD_REQUEST


# ---- protocol -------------------------------------------------------------------------------


class ProtocolError(MetaqError):
    """Bytes that do not form a valid request or response.

    ``fatal`` tells whether the framing is lost (the connection must be closed) or whether the
    bad command was consumed whole and the stream can go on.
    """

    code = BAD_REQUEST

    def __init__(self, message: str, *, fatal: bool = True):
        super().__init__(message)
        self.fatal = fatal


class MessageTooLargeError(ProtocolError):
    """A message or request body above the configured limit."""


# ---- storage -----------------------------------------------------------------------------


class StorageError(MetaqError):
    """An I/O failure of the partition log (full disk, unreadable file)."""


class CorruptRecordError(StorageError):
    """A stored record whose checksum does not match; it is reported, never served."""

    def __init__(self, path: str, position: int, detail: str):
        super().__init__(f"corrupt record in {path} at position {position}: {detail}")
        self.path = path
        self.position = position
        self.detail = detail


class SegmentGapError(StorageError):
    """Segment files of one partition that are not contiguous (MetaQ refuses to start too)."""


class OffsetOutOfRangeError(StorageError):
    """An offset before the first segment or past the visible end of a partition."""

    code = NOT_FOUND

    def __init__(self, offset: int, first_offset: int, end_offset: int):
        super().__init__(
            f"offset {offset} outside [{first_offset}, {end_offset}) of the partition log"
        )
        self.offset = offset
        self.first_offset = first_offset
        self.end_offset = end_offset


# ---- broker answers (each maps to a MetaQ result) ----------------------------------------


class UnknownTopicError(MetaqError):
    """A put to a topic no ``[topic=...]`` section accepts."""

    code = INTERNAL_SERVER_ERROR
    refresh_metadata = True


class InvalidPartitionError(MetaqError):
    """A partition outside ``[0, numPartitions)`` of its topic."""

    code = INTERNAL_SERVER_ERROR
    refresh_metadata = True


class ChecksumError(MetaqError):
    """A put whose checksum does not match its body (corrupted on the network)."""

    code = INTERNAL_SERVER_ERROR
    retriable = True


class PartitionClosedError(MetaqError):
    """A put or get to a partition closed by an operator (MetaQ's closePartitions)."""

    code = FORBIDDEN
    retriable = True
    refresh_metadata = True


class NotFoundError(MetaqError):
    """No store for a topic/partition, or nothing at the asked offset."""

    code = NOT_FOUND


class ServiceUnavailableError(MetaqError):
    """The broker cannot take the request now (worker restarting, command not supported)."""

    code = SERVICE_UNAVAILABLE
    retriable = True


# ---- ZooKeeper and client ------------------------------------------------------------------


class ZooKeeperError(MetaqError):
    """ZooKeeper cannot be reached or refused an operation."""

    retriable = True


class DuplicateBrokerError(ZooKeeperError):
    """Another live broker registered the same brokerId."""

    retriable = False


class NoBrokerError(MetaqError):
    """No broker publishes the topic (or none is alive)."""

    retriable = True
    refresh_metadata = True


class BrokerConnectionError(MetaqError):
    """The connection to a broker failed or dropped while a request was in flight."""

    code = SERVICE_UNAVAILABLE
    retriable = True
    refresh_metadata = True


class RequestTimeoutError(MetaqError):
    """No answer from the broker in time."""

    code = GATEWAY_TIMEOUT
    retriable = True
    refresh_metadata = True


class ProducerClosedError(MetaqError):
    """The producer was closed before the message could be sent."""


class BufferFullError(MetaqError):
    """The producer holds its maximum of unsent messages and none left in time."""

    retriable = True


class SendError(MetaqError):
    """The broker answered a put with an error result."""

    def __init__(self, code: int, message: str):
        super().__init__(f"broker answered {code}: {message}")
        self.code = code
        # 403 (closed partition) and 503 (worker busy or restarting) may succeed on another
        # partition; a 500 says the request itself is wrong (unknown topic, bad partition).
        self.retriable = code in (FORBIDDEN, SERVICE_UNAVAILABLE)
        self.refresh_metadata = code in (FORBIDDEN, SERVICE_UNAVAILABLE)
