"""Quartz cron expressions (deleteWhen): parsing, next firing time, rejected syntax."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from metaq_fast.cron import CronSchedule

T = dt.datetime


def next_after(expression: str, when: dt.datetime) -> dt.datetime | None:
    return CronSchedule.parse(expression).next_after(when)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (T(2024, 3, 10, 0, 0, 0), T(2024, 3, 10, 6, 0, 0)),
        (T(2024, 3, 10, 5, 59, 59), T(2024, 3, 10, 6, 0, 0)),
        (T(2024, 3, 10, 5, 59, 59, 999_999), T(2024, 3, 10, 6, 0, 0)),
        (T(2024, 3, 10, 6, 0, 0), T(2024, 3, 10, 18, 0, 0)),  # strictly after
        (T(2024, 3, 10, 6, 0, 0, 1), T(2024, 3, 10, 18, 0, 0)),
        (T(2024, 3, 10, 18, 0, 0), T(2024, 3, 11, 6, 0, 0)),
        (T(2024, 12, 31, 23, 0, 0), T(2025, 1, 1, 6, 0, 0)),
        (T(2024, 2, 28, 19, 0, 0), T(2024, 2, 29, 6, 0, 0)),
    ],
)
def test_metaq_default_fires_at_six_and_eighteen(when, expected):
    assert next_after("0 0 6,18 * * ?", when) == expected


@pytest.mark.parametrize(
    ("expression", "when", "expected"),
    [
        ("*/15 * * * * ?", T(2024, 1, 1, 10, 0, 7), T(2024, 1, 1, 10, 0, 15)),
        ("*/15 * * * * ?", T(2024, 1, 1, 10, 0, 45), T(2024, 1, 1, 10, 1, 0)),
        ("0 5/20 * * * ?", T(2024, 1, 1, 10, 6), T(2024, 1, 1, 10, 25)),
        ("0 5/20 * * * ?", T(2024, 1, 1, 10, 46), T(2024, 1, 1, 11, 5)),
        ("0 0 8-18/5 * * ?", T(2024, 1, 1, 13, 30), T(2024, 1, 1, 18, 0)),
        ("0 0 9-17 ? * MON-FRI", T(2024, 6, 7, 18, 0), T(2024, 6, 10, 9, 0)),  # Fri -> Mon
        ("0 0 9 ? * 2-6", T(2024, 6, 7, 18, 0), T(2024, 6, 10, 9, 0)),  # same, as numbers
        ("0 0 12 ? * SUN", T(2024, 6, 5), T(2024, 6, 9, 12, 0)),  # 2024-06-09 is a Sunday
        ("0 0 12 ? * 1", T(2024, 6, 5), T(2024, 6, 9, 12, 0)),  # Quartz: 1 = SUN
        ("0 0 12 ? * 7", T(2024, 6, 5), T(2024, 6, 8, 12, 0)),  # 7 = SAT
        ("0 0 12 ? * sat,sun", T(2024, 6, 5), T(2024, 6, 8, 12, 0)),
        ("0 0 0 ? * FRI-MON", T(2024, 6, 4), T(2024, 6, 7, 0, 0)),  # wraps around the week
        ("0 0 22-2 * * ?", T(2024, 1, 1, 3, 0), T(2024, 1, 1, 22, 0)),
        ("0 0 22-2 * * ?", T(2024, 1, 1, 23, 0), T(2024, 1, 2, 0, 0)),
        ("0 0 0 1 JAN,JUL ?", T(2024, 2, 1), T(2024, 7, 1)),
        ("0 0 0 1 1 ?", T(2024, 12, 31, 12), T(2025, 1, 1)),
        ("0 0 0 31 * ?", T(2024, 4, 1), T(2024, 5, 31)),  # April has no 31st
        ("0 0 0 29 2 ?", T(2025, 1, 1), T(2028, 2, 29)),
        ("0 0 12 1 1 ? 2030", T(2024, 5, 5), T(2030, 1, 1, 12, 0)),
        ("0 0 12 1 1 ? 2026-2030/2", T(2027, 5, 5), T(2028, 1, 1, 12, 0)),
        ("30 15 10 15 6 ? *", T(2024, 6, 15, 10, 15, 30), T(2025, 6, 15, 10, 15, 30)),
        ("0,30 * * * * ?", T(2024, 1, 1, 0, 0, 0), T(2024, 1, 1, 0, 0, 30)),
    ],
)
def test_next_after(expression, when, expected):
    assert next_after(expression, when) == expected


def test_no_more_firings_returns_none_quickly():
    assert next_after("0 0 12 1 1 ? 2030", T(2030, 1, 1, 12, 0)) is None
    assert next_after("0 0 0 30 2 ?", T(2024, 1, 1)) is None  # February 30th never comes
    assert next_after("0 0 6,18 * * ?", T(2099, 12, 31, 18, 0)) is None
    assert next_after("0 0 6,18 * * ?", T(9999, 12, 31, 23, 59, 59)) is None


def test_aware_datetimes_keep_their_zone():
    zone = dt.timezone(dt.timedelta(hours=8))
    result = next_after("0 0 6,18 * * ?", T(2024, 1, 1, 7, 0, tzinfo=zone))
    assert result == T(2024, 1, 1, 18, 0, tzinfo=zone)


def test_parse_fields():
    schedule = CronSchedule.parse("0 0 6,18 * * ?")
    assert schedule.seconds == {0} and schedule.minutes == {0} and schedule.hours == {6, 18}
    assert schedule.days_of_month == frozenset(range(1, 32)) and schedule.days_of_week is None
    assert schedule.months == frozenset(range(1, 13))
    assert CronSchedule.parse("0 0 0 ? jan-Mar Mon").days_of_week == {2}
    assert CronSchedule.parse("0 0 0 ? JAN-MAR MON").months == {1, 2, 3}


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("", "has 0 fields, expected 6 or 7"),
        ("0 0 6 * *", "has 5 fields"),
        ("0 0 6 * * ? 2024 1", "has 8 fields"),
        ("60 0 0 * * ?", "seconds field '60': 60 is out of range 0..59"),
        ("0 60 0 * * ?", "minutes field"),
        ("0 0 24 * * ?", "out of range 0..23"),
        ("0 0 0 0 * ?", "out of range 1..31"),
        ("0 0 0 * 13 ?", "out of range 1..12"),
        ("0 0 0 ? * 8", "out of range 1..7"),
        ("0 0 0 ? * FOO", "'FOO' is not a value, expected 1..7 or SUN..SAT"),
        ("0 0 0 * * ? 1969", "out of range 1970..2099"),
        ("0 0 6 * * *", "exactly one of day-of-month and day-of-week must be '?'"),
        ("0 0 6 ? * ?", "exactly one of day-of-month and day-of-week must be '?'"),
        ("? 0 6 * * ?", "'?' is not allowed in seconds"),
        ("0 0 6 L * ?", "'L', 'W' and '#' are not supported"),
        ("0 0 6 15W * ?", "not supported"),
        ("0 0 6 ? * 6#3", "not supported"),
        ("0 0 6 ? * 6L", "not supported"),
        ("0 */0 6 * * ?", "step '0' must be a positive integer"),
        ("0 1/-1 6 * * ?", "step '-1' must be a positive integer"),
        ("0 0 ² * * ?", "is not a value"),
        ("0 0 6,, * * ?", "is not a value"),
        ("0 0 -6 * * ?", "is not a value"),
        ("0 0 1-2-3 * * ?", "is not a value"),
    ],
)
def test_invalid_expressions(expression, problem):
    with pytest.raises(ValueError) as info:
        CronSchedule.parse(expression)
    assert problem in str(info.value)
    assert repr(expression) in str(info.value)


def matches(schedule: CronSchedule, t: dt.datetime) -> bool:
    day_ok = (
        t.day in schedule.days_of_month
        if schedule.days_of_month is not None
        else (t.weekday() + 1) % 7 + 1 in schedule.days_of_week
    )
    return (
        t.second in schedule.seconds
        and t.minute in schedule.minutes
        and t.hour in schedule.hours
        and t.month in schedule.months
        and day_ok
    )


@settings(max_examples=60, deadline=None)
@given(
    minutes=st.sets(st.integers(0, 59), min_size=1, max_size=4),
    hours=st.sets(st.integers(0, 23), min_size=1, max_size=4),
    weekdays=st.one_of(st.none(), st.sets(st.integers(1, 7), min_size=1, max_size=3)),
    when=st.datetimes(min_value=T(2000, 1, 1), max_value=T(2090, 1, 1)),
)
def test_next_after_is_the_first_match_minute_by_minute(minutes, hours, weekdays, when):
    day_fields = "? * " + ",".join(map(str, sorted(weekdays))) if weekdays else "* * ?"
    minute_field, hour_field = (",".join(map(str, sorted(v))) for v in (minutes, hours))
    expression = f"0 {minute_field} {hour_field} {day_fields}"
    schedule = CronSchedule.parse(expression)
    result = schedule.next_after(when)
    assert result is not None and result > when and matches(schedule, result)
    # brute force: no whole minute between `when` and the result matches
    t = when.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    while t < result:
        assert not matches(schedule, t), (expression, when, t, result)
        t += dt.timedelta(minutes=1)


FIELD_RANGES = {
    "seconds": (0, 59), "minutes": (0, 59), "hours": (0, 23), "days_of_month": (1, 31),
    "months": (1, 12), "days_of_week": (1, 7), "years": (1970, 2099),
}


@example("0 0 6,18 * * ?")
@example("*/7 5-9 22-2 ? JAN,JUL FRI-MON 2030-2090/20")
@example("0 0 0 30 2 ?")  # parses, never fires
@example("0 0 0 32 * ?")  # out of range: must raise
@given(st.text(alphabet=" 0123456789*?/,-LW#JANMONSUTEDFRI\u00b2", max_size=30))
def test_parse_raises_only_value_error(expression):
    """Any text either raises ValueError, or parses to a schedule whose fields are non-empty
    sets of in-range values, exactly one day field being '?', and whose next firing (if any)
    is after the given time and matches every field."""
    try:
        schedule = CronSchedule.parse(expression)
    except ValueError:
        return
    assert (schedule.days_of_month is None) != (schedule.days_of_week is None), schedule
    for name, (lo, hi) in FIELD_RANGES.items():
        values = getattr(schedule, name)
        if values is not None:
            assert values and all(lo <= v <= hi for v in values), (name, sorted(values))
    when = T(2024, 1, 1)
    result = schedule.next_after(when)
    if result is not None:
        assert result > when and result.year in schedule.years, result
        assert matches(schedule, result), (expression, result)
