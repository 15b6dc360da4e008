"""metaq_fast.backoff: the one retry policy (exponential, capped, jittered)."""

from __future__ import annotations

import pytest

from metaq_fast.backoff import Backoff, Retry


def test_delays_double_from_min_to_max():
    backoff = Backoff(0.5, 10.0)
    assert [backoff.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 10, 10, 10]
    assert backoff.delay(10_000) == 10.0  # no overflow however many attempts


def test_jitter_spreads_each_delay_within_its_fraction_and_differs():
    backoff = Backoff(0.2, 5.0, jitter=0.2)
    for attempt in (1, 3, 10):
        nominal = backoff.nominal(attempt)
        samples = [backoff.delay(attempt) for _ in range(500)]
        assert all(0.8 * nominal <= s <= 1.2 * nominal for s in samples)
        assert len(set(samples)) > 400  # processes retrying together come back apart
        assert min(samples) < 0.9 * nominal and max(samples) > 1.1 * nominal


@pytest.mark.parametrize("args", [(0, 1), (2, 1), (0.1, 1, 0.5), (0.1, 1, 2, 1.0), (0.1, 1, 2, -0.1)])
def test_bad_policies_are_refused(args):
    with pytest.raises(ValueError):
        Backoff(*args)


def test_retry_counts_attempts_and_resets():
    retry = Retry(Backoff(0.2, 5.0))
    assert [retry.next_delay() for _ in range(3)] == [0.2, 0.4, 0.8]
    retry.reset()
    assert retry.next_delay() == 0.2 and retry.attempts == 1
