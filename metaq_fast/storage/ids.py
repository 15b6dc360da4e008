"""Message ids in MetaQ's layout, allocated a batch at a time.

Imports: numpy and metaq_fast.errors / limits only.

Layout (MetaQ IdWorker)::

    id = (millis - 1303895660503) << 22 | brokerId << 12 | sequence      (12-bit sequence)

Decisions (reference section 17 item 4):

* The clock is the wall clock (MetaQ's nanoTime gave negative ids that repeat across restarts),
  and never goes backwards: a clock step back keeps issuing ids after the last one.
* A broker runs several worker processes that allocate ids independently. The 12-bit sequence is
  split between them: worker ``slot`` of ``slots`` uses the sequence values congruent to ``slot``
  modulo ``slots``, so no two workers can issue the same id, with no coordination.
* More than ``4096 // slots`` ids in one millisecond do not wait for the next millisecond: the id
  clock runs ahead of the wall clock (ids stay unique and increasing) and falls back in step when
  the load drops. Waiting instead would cap a broker at 4096 messages per millisecond, and after a
  clock step back would stall every put. Running more than ``MSG_ID_RUN_AHEAD_MS_WARN`` ahead is
  logged, at most once a minute.
* After a restart the allocator is told the highest id already stored (``observe``), so ids keep
  increasing within every partition even if the clock was ahead before the restart.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..errors import InvalidArgumentError
from ..limits import (
    BROKER_ID_MAX,
    MSG_ID_EPOCH_MS,
    MSG_ID_RUN_AHEAD_MS_WARN,
    MSG_ID_SEQUENCE_BITS,
)

SEQUENCE_VALUES = 1 << MSG_ID_SEQUENCE_BITS  # 4096

log = logging.getLogger(__name__)


def compose_id(millis: int, broker_id: int, sequence: int) -> int:
    return ((millis - MSG_ID_EPOCH_MS) << 22) | (broker_id << MSG_ID_SEQUENCE_BITS) | sequence


def id_millis(msg_id: int) -> int:
    """Wall-clock milliseconds encoded in an id of MetaQ's layout."""
    return (msg_id >> 22) + MSG_ID_EPOCH_MS


def id_broker(msg_id: int) -> int:
    return (msg_id >> MSG_ID_SEQUENCE_BITS) & BROKER_ID_MAX


class MessageIdAllocator:
    """Allocates increasing, broker-unique message ids for one worker process."""

    def __init__(self, broker_id: int, slot: int = 0, slots: int = 1, clock_ms=None):
        if not 0 <= broker_id <= BROKER_ID_MAX:
            raise InvalidArgumentError(f"brokerId {broker_id} outside 0..{BROKER_ID_MAX}")
        if not 1 <= slots <= SEQUENCE_VALUES or not 0 <= slot < slots:
            raise InvalidArgumentError(f"worker slot {slot} of {slots} is not valid")
        self.broker_id = broker_id
        self.slot = slot
        self.slots = slots
        self._per_ms = SEQUENCE_VALUES // slots  # ids one worker may issue per millisecond
        per_ms_bits = self._per_ms.bit_length() - 1
        self._per_ms_shift = per_ms_bits if self._per_ms == 1 << per_ms_bits else None
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._next_tick = 0  # tick = millis * per_ms + k; the next one free
        self._base = np.int64(broker_id << MSG_ID_SEQUENCE_BITS)
        self._warned_at_ms = -60_000

    def observe(self, msg_id: int) -> None:
        """Make every later id larger than ``msg_id`` (an id found in stored data)."""
        if msg_id <= 0:
            return
        tick = (id_millis(msg_id) + 1) * self._per_ms
        if tick > self._next_tick:
            self._next_tick = tick

    def allocate(self, count: int) -> np.ndarray:
        """``count`` new ids (int64), increasing."""
        if count <= 0:
            return np.empty(0, dtype=np.int64)
        now_ms = self._clock_ms()
        first = max(self._next_tick, now_ms * self._per_ms)
        last_ms = (first + count - 1) // self._per_ms
        ahead_ms = last_ms - now_ms
        if ahead_ms > MSG_ID_RUN_AHEAD_MS_WARN and now_ms - self._warned_at_ms >= 60_000:
            self._warned_at_ms = now_ms
            log.warning("message id clock is %d ms ahead of the wall clock (load above %d ids/ms "
                        "per worker, or the clock stepped back); ids stay unique and increasing",
                        ahead_ms, self._per_ms)
        self._next_tick = first + count
        if first // self._per_ms == last_ms:
            # one millisecond: the ids are an arithmetic run (step = slots), one numpy call
            k = first % self._per_ms
            first_id = (((last_ms - MSG_ID_EPOCH_MS) << 22) | int(self._base)
                        | (k * self.slots + self.slot))
            step = self.slots
            return np.arange(first_id, first_id + count * step, step, dtype=np.int64)
        ticks = np.arange(first, first + count, dtype=np.int64)
        if self._per_ms_shift is not None:  # 1, 2, 4... workers: shifts instead of divmod
            millis = ticks >> self._per_ms_shift
            k = ticks & (self._per_ms - 1)
        else:
            millis, k = np.divmod(ticks, self._per_ms)
        ids = (millis - MSG_ID_EPOCH_MS) << 22
        ids |= self._base
        if self.slots == 1:
            ids |= k
        else:
            ids |= k * self.slots + self.slot
        return ids

    def allocate_one(self) -> int:
        """One id, in plain Python (a synchronous put should not pay numpy's call overhead)."""
        now_ms = self._clock_ms()
        tick = max(self._next_tick, now_ms * self._per_ms)
        self._next_tick = tick + 1
        millis, k = divmod(tick, self._per_ms)
        return ((millis - MSG_ID_EPOCH_MS) << 22) | int(self._base) | (k * self.slots + self.slot)
