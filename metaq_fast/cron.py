"""Quartz cron expressions (MetaQ's ``deleteWhen``): parse, and find the next firing time.

Allowed imports: the standard library only.

Syntax (Quartz, seconds first): ``sec min hour day-of-month month day-of-week [year]``.
Each field is a comma list of ``*``, ``n``, ``a-b``, ``*/n``, ``a/n`` or ``a-b/n``; months may be
``JAN``..``DEC`` and weekdays ``SUN``..``SAT`` (any case). Quartz numbers weekdays 1=SUN..7=SAT.
A range whose start is after its end wraps around (``FRI-MON``, hours ``22-2``), as in Quartz.
``?`` (no specific value) is allowed in day-of-month or day-of-week only, and, as Quartz demands,
exactly one of those two fields must be ``?``. Quartz's ``L``, ``W`` and ``#`` are rejected as
not supported: none of MetaQ's files use them. The default ``0 0 6,18 * * ?`` fires at 06:00
and 18:00 every day.

Times are naive local wall-clock ``datetime`` values (an aware one keeps its tzinfo and is
treated as wall-clock time too).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

YEAR_MIN = 1970
YEAR_MAX = 2099  # Quartz's upper bound; it also bounds every search below

_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")



@dataclass(frozen=True)
class _Field:
    name: str
    lo: int
    hi: int
    names: tuple[str, ...] = ()  # names of the values from ``lo`` on


_FIELDS = (
    _Field("seconds", 0, 59),
    _Field("minutes", 0, 59),
    _Field("hours", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTH_NAMES),
    _Field("day-of-week", 1, 7, _WEEKDAY_NAMES),
    _Field("year", YEAR_MIN, YEAR_MAX),
)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed Quartz cron expression; ``None`` for a day field means ``?`` (no constraint)."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int] | None
    months: frozenset[int]
    days_of_week: frozenset[int] | None  # Quartz numbering: 1=SUN .. 7=SAT
    years: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        """Parse ``expression``; raises ValueError naming the bad field and why."""
        parts = expression.split()
        if len(parts) not in (6, 7):
            raise ValueError(
                f"cron expression {expression!r} has {len(parts)} fields, expected 6 or 7 "
                "(seconds minutes hours day-of-month month day-of-week [year])"
            )
        if len(parts) == 6:
            parts.append("*")
        try:
            values = [_parse_field(part, field) for part, field in zip(parts, _FIELDS)]
        except ValueError as exc:
            raise ValueError(f"cron expression {expression!r}: {exc}") from None
        dom, dow = values[3], values[5]
        if (dom is None) == (dow is None):
            raise ValueError(
                f"cron expression {expression!r}: exactly one of day-of-month and day-of-week "
                "must be '?' (Quartz does not support both or neither)"
            )
        return cls(expression, *values)  # type: ignore[arg-type]

    def next_after(self, when: dt.datetime) -> dt.datetime | None:
        """The first firing time strictly after ``when``, or None if there is none before 2100."""
        if when.year > YEAR_MAX:
            return None
        t = when.replace(microsecond=0) + dt.timedelta(seconds=1)
        # Each pass either returns or moves t forward to the start of a later year, month, day,
        # hour or minute; years are bounded, so the loop ends.
        while t.year <= YEAR_MAX:
            if t.year not in self.years:
                later = [y for y in self.years if y > t.year]
                if not later:
                    return None
                t = t.replace(year=min(later), month=1, day=1, hour=0, minute=0, second=0)
                continue
            if t.month not in self.months:
                t = _start_of_next_month(t)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0, second=0) + dt.timedelta(days=1)
                continue
            hour = _next_in(self.hours, t.hour)
            if hour is None:
                t = t.replace(hour=0, minute=0, second=0) + dt.timedelta(days=1)
                continue
            if hour != t.hour:
                t = t.replace(hour=hour, minute=0, second=0)
            minute = _next_in(self.minutes, t.minute)
            if minute is None:
                t = t.replace(minute=0, second=0) + dt.timedelta(hours=1)
                continue
            if minute != t.minute:
                t = t.replace(minute=minute, second=0)
            second = _next_in(self.seconds, t.second)
            if second is None:
                t = t.replace(second=0) + dt.timedelta(minutes=1)
                continue
            return t.replace(second=second)
        return None

    def _day_matches(self, t: dt.datetime) -> bool:
        if self.days_of_month is not None:
            return t.day in self.days_of_month
        assert self.days_of_week is not None
        return (t.weekday() + 1) % 7 + 1 in self.days_of_week  # Monday=0 -> 2, Sunday=6 -> 1


def _next_in(allowed: frozenset[int], start: int) -> int | None:
    later = [v for v in allowed if v >= start]
    return min(later) if later else None


def _start_of_next_month(t: dt.datetime) -> dt.datetime:
    if t.month == 12:
        return t.replace(year=t.year + 1, month=1, day=1, hour=0, minute=0, second=0)
    return t.replace(month=t.month + 1, day=1, hour=0, minute=0, second=0)


def _parse_field(text: str, field: _Field) -> frozenset[int] | None:
    """One field -> the set of allowed values, or None for ``?``."""
    upper = text.upper()
    if upper == "?":
        if field.name not in ("day-of-month", "day-of-week"):
            raise ValueError(f"'?' is not allowed in {field.name}, only in the day fields")
        return None
    values: set[int] = set()
    for item in upper.split(","):
        values.update(_parse_item(item, f"{field.name} field {text!r}", field))
    return frozenset(values)


def _parse_item(item: str, where: str, field: _Field) -> list[int]:
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not _is_number(step_text) or int(step_text) < 1:
            raise ValueError(f"{where}: step {step_text!r} must be a positive integer")
        step = int(step_text)
    if base == "*":
        start, end = field.lo, field.hi
    elif "-" in base:
        first, _, last = base.partition("-")
        start, end = _value(first, where, field), _value(last, where, field)
    else:
        start = _value(base, where, field)
        end = field.hi if slash else start  # 'a/n' runs from a to the top of the field
    if start <= end:
        span = list(range(start, end + 1))
    else:  # wraps around, as Quartz allows ('FRI-MON')
        span = list(range(start, field.hi + 1)) + list(range(field.lo, end + 1))
    return span[::step]


def _value(token: str, where: str, field: _Field) -> int:
    if token in field.names:
        return field.lo + field.names.index(token)
    if not _is_number(token):
        if any(char in token for char in "LW#"):
            raise ValueError(f"{where}: Quartz's 'L', 'W' and '#' are not supported")
        names = f" or {field.names[0]}..{field.names[-1]}" if field.names else ""
        expected = f"{field.lo}..{field.hi}{names}"
        raise ValueError(f"{where}: {token!r} is not a value, expected {expected}")
    value = int(token)
    if not field.lo <= value <= field.hi:
        raise ValueError(f"{where}: {value} is out of range {field.lo}..{field.hi}")
    return value


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()
