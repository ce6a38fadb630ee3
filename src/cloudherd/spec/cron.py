"""Scheduled actions' times: cron expressions (five fields, in a time zone) and one-off times, and when one is due.

Here, beside the spec, because the spec checks a cron when it is read (a located error), and the manager asks
the same code when it is due.

A schedule is due at a pass when its latest occurrence up to now is later than both the infrastructure's making
and the schedule's last firing (so a pass that was late fires it once, and a schedule written today does not
fire for yesterday).  Pure: the clock is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))  # minute, hour, day of month, month, day of week (7: Sun)
_NAMES = {3: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
          4: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]}


class CronError(ValueError):
    """A cron expression that cannot be read: the message says which field and why."""


def _value(text: str, field: int) -> int:
    names = _NAMES.get(field)
    if names and text.lower() in names:
        return names.index(text.lower()) + (1 if field == 3 else 0)
    if not text.isdigit():
        raise CronError(f"field {field + 1}: {text!r} is not a number")
    return int(text)


def _field(text: str, field: int) -> frozenset[int]:
    low, high = _RANGES[field]
    values: set[int] = set()
    for part in text.split(","):
        spec, _, step_text = part.partition("/")
        step = _value(step_text, field) if step_text else 1
        if step < 1:
            raise CronError(f"field {field + 1}: a step of {step}")
        if spec == "*":
            start, end = low, high
        elif "-" in spec:
            first, _, last = spec.partition("-")
            start, end = _value(first, field), _value(last, field)
        else:
            start = _value(spec, field)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise CronError(f"field {field + 1}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(v % 7 for v in values) if field == 4 else frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A five-field cron expression (minute hour day-of-month month day-of-week; names and ``*/n`` allowed), read
    in ``zone``.  As in cron, when both day fields are restricted, a day matching either counts."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool
    zone: ZoneInfo

    @classmethod
    def parse(cls, text: str, zone: str = "UTC") -> Cron:
        parts = text.split()
        if len(parts) != 5:
            raise CronError(f"{text!r}: five fields (minute hour day month weekday), not {len(parts)}")
        minutes, hours, days, months, weekdays = (_field(part, index) for index, part in enumerate(parts))
        return cls(minutes, hours, days, months, weekdays, any_day=parts[2] == "*", any_weekday=parts[4] == "*",
                   zone=ZoneInfo(zone))

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        by_day, by_weekday = day.day in self.days, (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return by_day and by_weekday
        return by_day or by_weekday

    def latest(self, now: datetime) -> datetime | None:
        """The latest occurrence at or before ``now`` (aware), in UTC; None within the last 400 days."""
        local = now.astimezone(self.zone).replace(second=0, microsecond=0)
        day = local.replace(hour=0, minute=0)
        for _ in range(400):
            if self._day_matches(day):
                for hour in sorted(self.hours, reverse=True):
                    for minute in sorted(self.minutes, reverse=True):
                        moment = day.replace(hour=hour, minute=minute)
                        if moment <= local:
                            return moment.astimezone(UTC)
            day = (day - timedelta(days=1)).replace(hour=0, minute=0)
        return None


def latest_occurrence(cron: str | None, at: datetime | None, zone: str, now: datetime) -> datetime | None:
    """A schedule's latest occurrence at or before ``now``: its cron's, or its one-off time once passed."""
    if at is not None:
        moment = at if at.tzinfo is not None else at.replace(tzinfo=ZoneInfo(zone))
        return moment.astimezone(UTC) if moment <= now else None
    return Cron.parse(cron or "", zone).latest(now)


def due(cron: str | None, at: datetime | None, zone: str, now: datetime, since: datetime) -> datetime | None:
    """The occurrence to fire now, if there is one later than ``since`` (the making or the last firing)."""
    moment = latest_occurrence(cron, at, zone, now)
    return moment if moment is not None and moment > since else None
