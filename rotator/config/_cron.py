"""Cron translation: crontab(5) expressions as APScheduler triggers, in UTC.

Weekdays are numbered as crontab numbers them (Sunday = 0 and 7), not as APScheduler does.
APScheduler (and asyncio, which it imports) loads only when a cron expression is
checked or built: a config without one never pays for it.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

# Crontab weekday names, Sunday first as crontab(5) numbers them (0 and 7 = Sunday).
_WEEKDAYS: tuple[str, ...] = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def cron_trigger(expr: str, *, jitter: int | None = None) -> CronTrigger:
    """A CronTrigger that reads `expr` as crontab(5) does, in UTC.

    APScheduler 3.x numbers weekdays from Monday = 0 (its `from_crontab` keeps
    that historical mismatch); crontab numbers them from Sunday = 0 (and 7).
    Numeric weekdays are translated to names, so "0 3 * * 1" means Monday.
    """
    from apscheduler.triggers.cron import CronTrigger

    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"{len(fields)} fields instead of 5")
    minute, hour, day, month, day_of_week = fields
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=crontab_weekdays(day_of_week),
        timezone=UTC,
        jitter=jitter,
    )


def crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field as APScheduler weekday names; unknown forms pass through."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field.lower().split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            return field
        if span == "*":
            first, last = 0, 6
        else:
            low, dash, high = span.partition("-")
            first_day, last_day = _weekday(low), _weekday(high) if dash else None
            if first_day is None or (dash and last_day is None):
                return field
            first = first_day
            # "5/2" in crontab means from Friday to the end of the week, every 2nd day.
            last = last_day if last_day is not None else (6 if step else first_day)
            if last == 0 and first > 0:
                last = 7  # a range ending in Sunday by name or as 0, like "fri-sun" or "5-0"
            if first > last:
                return field
        for number in range(first, last + 1, step or 1):
            days.add(number % 7)
    return ",".join(_WEEKDAYS[d] for d in sorted(days))


def _weekday(text: str) -> int | None:
    """A crontab weekday as 0 (Sunday) to 7 (Sunday again): 7 stays 7, so "0-7" spans the week."""
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text)
    if text[:3] in _WEEKDAYS and len(text) == 3:
        return _WEEKDAYS.index(text)
    return None
