"""One back-off policy for every retry loop of the project: exponential, capped, with jitter.

Imports: the standard library only.

``Backoff(min_s, max_s, factor, jitter).delay(attempt)`` is ``min_s * factor ** (attempt - 1)``
capped at ``max_s``, then spread by ``± jitter`` (a fraction) so that many processes retrying
the same thing (brokers re-registering after a ZooKeeper outage, producers after a broker died)
do not come back in step. ``Retry`` keeps the attempt count for a loop that retries one thing.

Used by the supervisor (worker restarts), the broker registry (ZooKeeper passes) and the
producer (batch retries). The consumer's fetch delay is not a retry policy but MetaQ's rule
(``maxDelayFetchTimeInMills``: a tenth more per empty fetch), which MetaQ users tune; it stays.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    min_s: float
    max_s: float
    factor: float = 2.0
    jitter: float = 0.0  # fraction: 0.2 = each delay anywhere in [0.8, 1.2] x its nominal value

    def __post_init__(self) -> None:
        if not (0 < self.min_s <= self.max_s and self.factor >= 1 and 0 <= self.jitter < 1):
            raise ValueError(f"bad back-off {self}: need 0 < min <= max, factor >= 1, "
                             "0 <= jitter < 1")

    def nominal(self, attempt: int) -> float:
        """The delay before retry number ``attempt`` (1 = the first retry), without jitter."""
        if attempt <= 1:
            return self.min_s
        exponent = min(attempt - 1, 64)  # the cap is reached long before; no float overflow
        return min(self.max_s, self.min_s * self.factor ** exponent)

    def delay(self, attempt: int) -> float:
        nominal = self.nominal(attempt)
        if not self.jitter:
            return nominal
        return nominal * (1.0 + self.jitter * (2.0 * random.random() - 1.0))


class Retry:
    """The attempts of one retried thing under a ``Backoff``: ``next_delay()`` after each
    failure, ``reset()`` after a success."""

    def __init__(self, backoff: Backoff):
        self.backoff = backoff
        self.attempts = 0

    def next_delay(self) -> float:
        self.attempts += 1
        return self.backoff.delay(self.attempts)

    def reset(self) -> None:
        self.attempts = 0
