"""Memory-mapped files: a growable data mapping and tables of fixed-size entries.

Imports: stdlib (logging), numpy, metaq_fast.errors and storage.prefault only.

Both writers (the owning worker) and readers (any worker serving ``get``) map the same files.
A writer grows a file before it writes past its end, so a write into the mapping never meets a
hole that could raise SIGBUS on a full disk: growth is ``posix_fallocate``, which fails with
ENOSPC as a ``StorageError`` instead (except on a filesystem that cannot reserve blocks at all:
see ``allocate``). A reader remaps when the file has grown past its mapping.
Old mappings stay valid for whoever still holds a view of them (numpy keeps the mmap alive).
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
from pathlib import Path

import numpy as np

from ..errors import StorageError
from .prefault import PREFAULTER

log = logging.getLogger(__name__)
_sparse_warned: set[int] = set()  # st_dev of filesystems already warned about

TABLE_POPULATE_AHEAD_BYTES = 256 * 1024  # sidecar pages populated ahead of the writer

PAGE_BYTES = mmap.PAGESIZE
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # no blocks left, or none left to this user


def search(sorted_array: np.ndarray, value: int, side: str = "left") -> int:
    """``np.searchsorted`` with the key cast to the array's dtype: with a Python int key numpy
    converts the whole array to int64 first (measured: 75 us per lookup in a 400k index)."""
    return int(np.searchsorted(sorted_array, sorted_array.dtype.type(value), side=side))


def round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


def map_fd(fd: int, length: int, writable: bool) -> np.ndarray:
    """The first ``length`` bytes of an open file as a uint8 array over a numpy memmap.

    The result is a plain ndarray view (its base keeps the memmap alive): slicing a
    ``np.memmap`` runs Python code in ``__array_finalize__`` on every slice, which the append
    path would pay several times per batch.
    """
    with os.fdopen(os.dup(fd), "r+b" if writable else "rb") as fileobj:
        mapped = np.memmap(fileobj, dtype=np.uint8, mode="r+" if writable else "r", shape=(length,))
    return mapped.view(np.ndarray)


def msync(mapped: np.ndarray) -> None:
    """msync a small mapping from ``map_fd`` (holds the GIL: use fdatasync for big ranges)."""
    base = mapped
    while base is not None and not isinstance(base, np.memmap):
        base = base.base
    if base is not None:
        base.flush()


def allocate(fd: int, offset: int, length: int, path: Path) -> None:
    """Reserve disk blocks for ``[offset, offset+length)`` of a file (extending it if needed)."""
    if length <= 0:
        return
    try:
        os.posix_fallocate(fd, offset, length)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # filesystem without fallocate
            # Extending sparse is all that is left; a full disk will then show as a SIGBUS on
            # a write through the mapping, not as an error here (segment.py). Say so once.
            stat = os.fstat(fd)
            if stat.st_dev not in _sparse_warned:
                _sparse_warned.add(stat.st_dev)
                log.warning("the filesystem of %s cannot reserve blocks (%s): files are extended "
                            "sparse, and a full disk there kills the writing worker (SIGBUS) "
                            "instead of refusing puts", path, exc)
            if stat.st_size < offset + length:
                os.ftruncate(fd, offset + length)
            return
        full = "disk full: " if exc.errno in DISK_FULL_ERRNOS else ""
        raise StorageError(f"{full}cannot allocate {length} bytes at {offset} in {path}: "
                           f"{exc}") from exc


class MappedTable:
    """A file of fixed-size little-endian entries after a 64-byte header, memory-mapped.

    Header: ``magic:8 | entry_bytes:u32 | reserved:u32 | count:u64 | ...``. ``count`` is
    published last by the writer (after the entries are in the mapping), so a reader in another
    process that reads ``count`` and then the entries never sees a half-written entry.
    """

    HEADER_BYTES = 64

    def __init__(self, path: Path, dtype: np.dtype, magic: bytes, *, writable: bool,
                 grow_entries: int = 4096):
        assert len(magic) == 8
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.magic = magic
        self.writable = writable
        self.grow_entries = grow_entries
        flags = os.O_RDWR | os.O_CREAT if writable else os.O_RDONLY
        self.fd = os.open(self.path, flags, 0o644)
        self._populated = 0  # entries below this index are populated (or being populated)
        self._map: np.ndarray | None = None
        self._entries: np.ndarray | None = None
        self._header: np.ndarray | None = None
        try:
            size = os.fstat(self.fd).st_size
            if size < self.HEADER_BYTES:
                if not writable:
                    raise StorageError(f"{self.path}: table file too short ({size} bytes)")
                self._create()
            else:
                self._remap(size)
                if not self.header_valid():
                    if not writable:
                        raise StorageError(f"{self.path}: not a table of this kind (bad header)")
                    self.reset()
        except BaseException:  # EMFILE/ENOMEM half-way: the descriptor must not stay open
            self._map = self._entries = self._header = None
            os.close(self.fd)
            self.fd = -1
            raise

    # ---- mapping --------------------------------------------------------------------------

    def _create(self) -> None:
        length = self.HEADER_BYTES + self.grow_entries * self.dtype.itemsize
        allocate(self.fd, 0, length, self.path)
        self._remap(length)
        self._write_header(0)

    def _write_header(self, count: int) -> None:
        raw = self._map
        raw[:8] = np.frombuffer(self.magic, dtype=np.uint8)
        raw[8:16] = np.frombuffer(np.uint64(self.dtype.itemsize).tobytes(), dtype=np.uint8)
        self._header[2] = count

    def _remap(self, length: int) -> None:
        self._map = map_fd(self.fd, length, self.writable)
        self._header = self._map[: self.HEADER_BYTES].view("<u8")
        capacity = (length - self.HEADER_BYTES) // self.dtype.itemsize
        body = self._map[self.HEADER_BYTES : self.HEADER_BYTES + capacity * self.dtype.itemsize]
        self._entries = body.view(self.dtype)

    def header_valid(self) -> bool:
        raw = self._map
        return (bytes(raw[:8]) == self.magic
                and int(self._header[1]) == self.dtype.itemsize
                and 0 <= self.count <= self.capacity)

    def reset(self) -> None:
        """Forget every entry (an unusable table is rebuilt from the data)."""
        self._write_header(0)

    @property
    def capacity(self) -> int:
        return len(self._entries)

    @property
    def count(self) -> int:
        return int(self._header[2])

    def refresh(self) -> None:
        """Reader side: remap if the writer has grown the file past our mapping."""
        size = os.fstat(self.fd).st_size
        if size > len(self._map):
            self._remap(size)

    def entries(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """View of published entries ``[start, stop)`` (stop defaults to ``count``)."""
        count = self.count
        if stop is None or stop > count:
            stop = count
        if stop > self.capacity:
            self.refresh()
        return self._entries[start:stop]

    # ---- writing ------------------------------------------------------------------------

    def ensure(self, entries_needed: int) -> None:
        if entries_needed <= self.capacity:
            return
        grown = max(entries_needed, self.capacity * 2, self.grow_entries)
        length = self.HEADER_BYTES + grown * self.dtype.itemsize
        allocate(self.fd, 0, length, self.path)
        self._remap(length)

    def append(self, values: np.ndarray) -> None:
        self.reserve(len(values))[:] = values
        self.publish(len(values))

    def reserve(self, n: int) -> np.ndarray:
        """The next ``n`` (unpublished) entries, to be filled in place, then ``publish(n)``."""
        count = int(self._header[2])
        if count + n > len(self._entries):
            self.ensure(count + n)
        if count + n > self._populated:
            self._populate_ahead(count, count + n)
        return self._entries[count : count + n]

    def _populate_ahead(self, count: int, needed: int) -> None:
        """Have the prefault thread make the next pages writable before the writer gets there.

        Measured: a batch of 1000 index entries (4 KB, one fresh page of an ext4 file) took
        ~20 us to store when the write itself faulted the page in; in the data file pages are
        populated ahead already (segment.py), and the sidecars deserve the same.
        """
        itemsize = self.dtype.itemsize
        ahead = max(needed, self._populated) + TABLE_POPULATE_AHEAD_BYTES // itemsize
        stop_entry = min(len(self._entries), ahead)
        start = self.HEADER_BYTES + max(self._populated, count) * itemsize  # not what is written
        stop = self.HEADER_BYTES + stop_entry * itemsize
        start -= start % PAGE_BYTES
        self._populated = stop_entry
        if stop > start:
            PREFAULTER.request(self._map, start, stop, self._open)

    def _open(self) -> bool:
        return self.fd >= 0

    def publish(self, n: int) -> None:
        self._header[2] += n  # after the entries are written: readers see whole entries only

    def set_count(self, count: int) -> None:
        """Drop entries from ``count`` on (zeroing them, so stale entries can never be read)."""
        old = self.count
        if count < old:
            self._entries[count:old] = 0
        self._header[2] = count

    def flush(self) -> None:
        os.fdatasync(self.fd)

    def rewrite(self, chunk_bytes: int = 4 << 20) -> None:
        """Write the header and every entry again through the mapping, so that the next flush
        writes them (after a failed write-back they may be clean in the page cache only)."""
        end = self.HEADER_BYTES + self.count * self.dtype.itemsize
        for at in range(0, end, chunk_bytes):
            view = self._map[at : min(end, at + chunk_bytes)]
            view[:] = view.copy()

    def close(self, shrink: bool) -> None:
        if self.fd < 0:
            return
        if shrink and self.writable:
            os.ftruncate(self.fd, self.HEADER_BYTES + self.count * self.dtype.itemsize)
        self._map = self._entries = self._header = None
        os.close(self.fd)
        self.fd = -1
