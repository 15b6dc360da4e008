"""A partition's leader epochs: which master epoch wrote which range of the log (Kafka's
``leader-epoch-checkpoint``, KIP-101/279).

Imports: the standard library and metaq_fast.errors / storage.files only.

Each entry ``(epoch, start_offset)`` says: the records from ``start_offset`` on, up to the start
of the next entry (or the log end), were appended while ``epoch`` was the master's epoch of this
broker id. Epochs and start offsets both grow strictly. Records before the first entry (written
before replication was ever set up) belong to epoch 0.

Why: a master that comes back after another replica took over may hold a tail the new master
never had (appended, perhaps even acknowledged in async mode, but not replicated). It asks the new
master where its own last epoch ends there (``end_offset_for``) and truncates to it, so it never
serves or keeps a tail the new master does not have. A high-water mark cannot tell this (KIP-101).

File: ``leader-epoch`` in the partition directory, text: ``0`` (format version), the entry count,
then one ``<epoch> <startOffset>`` line per entry. Written whole to a temporary file, fsynced and
renamed (entries change once per master change, not per append). A missing file is no entries.
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path

from ..errors import StorageError
from . import files

EPOCHS_NAME = "leader-epoch"
FORMAT_VERSION = 0


class LeaderEpochs:
    """The epoch entries of one partition (module docstring); the owner of the log writes."""

    def __init__(self, directory: Path):
        self.path = Path(directory) / EPOCHS_NAME
        self._epochs: list[int] = []
        self._starts: list[int] = []
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text("ascii")
        except FileNotFoundError:
            return
        lines = text.split("\n")
        try:
            version, count = int(lines[0]), int(lines[1])
            pairs = [tuple(map(int, line.split(" "))) for line in lines[2:] if line][:count]
        except (ValueError, IndexError, UnicodeDecodeError):
            raise StorageError(f"{self.path}: not a leader-epoch file") from None
        if version != FORMAT_VERSION or len(pairs) != count or any(len(p) != 2 for p in pairs):
            raise StorageError(f"{self.path}: unknown format or cut short")
        for epoch, start in pairs:
            if self._epochs and (epoch <= self._epochs[-1] or start < self._starts[-1]):
                raise StorageError(f"{self.path}: entries out of order at epoch {epoch}")
            self._epochs.append(epoch)
            self._starts.append(start)

    @property
    def entries(self) -> list[tuple[int, int]]:
        return list(zip(self._epochs, self._starts))

    @property
    def latest_epoch(self) -> int:
        """The epoch of the last appended records' entry (0: none)."""
        return self._epochs[-1] if self._epochs else 0

    def epoch_at(self, offset: int) -> int:
        """The epoch that wrote the record at ``offset``."""
        i = bisect.bisect_right(self._starts, offset) - 1
        return self._epochs[i] if i >= 0 else 0

    def next_start_after(self, offset: int) -> int | None:
        """Start offset of the first entry after the one covering ``offset`` (None: no later
        entry): a replicated chunk read from ``offset`` stops there, so it has one epoch."""
        i = bisect.bisect_right(self._starts, offset)
        return self._starts[i] if i < len(self._starts) else None

    def assign(self, epoch: int, start_offset: int) -> None:
        """Records from ``start_offset`` on are ``epoch``'s (nothing to do if it is the latest
        already). An older epoch, or an offset before the latest entry's, is a bug."""
        if self._epochs and epoch == self._epochs[-1]:
            return
        if self._epochs and (epoch < self._epochs[-1] or start_offset < self._starts[-1]):
            raise StorageError(
                f"{self.path}: epoch {epoch} at {start_offset} after epoch "
                f"{self._epochs[-1]} at {self._starts[-1]}")
        self._epochs.append(epoch)
        self._starts.append(start_offset)
        self._write()

    def end_offset_for(self, epoch: int, log_end: int) -> tuple[int, int]:
        """KIP-279's answer to a follower whose last epoch is ``epoch``: (the largest epoch here
        that is <= ``epoch``, the offset where that epoch's records end here). The follower
        truncates to the smaller of that end and its own end of that epoch."""
        i = bisect.bisect_right(self._epochs, epoch)  # entries [0, i) have epoch <= asked
        if i == len(self._epochs):
            return self.latest_epoch, log_end
        found = self._epochs[i - 1] if i > 0 else 0
        return found, self._starts[i]

    def truncate_from(self, offset: int) -> None:
        """The log was cut at ``offset``: forget the entries that start at or after it."""
        i = bisect.bisect_left(self._starts, offset)
        if i < len(self._starts):
            del self._epochs[i:], self._starts[i:]
            self._write()

    def _write(self) -> None:
        lines = [str(FORMAT_VERSION), str(len(self._epochs))]
        lines += [f"{e} {s}" for e, s in zip(self._epochs, self._starts)]
        tmp = self.path.with_name(self.path.name + files.TMP_SUFFIX)
        with open(tmp, "w", encoding="ascii") as out:
            out.write("\n".join(lines) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        files.fsync_dir(self.path.parent)
