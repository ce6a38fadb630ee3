"""Scheduled actions' times: five-field cron in a time zone, one-off times, and when a schedule is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloudherd.spec.cron import Cron, CronError, due, latest_occurrence

SUNDAY_EVENING = datetime(2026, 12, 6, 19, 40, tzinfo=UTC)  # a Sunday


def test_the_latest_occurrence_of_a_cron_in_its_time_zone() -> None:
    budapest = Cron.parse("0 22 * * *", "Europe/Budapest")
    assert budapest.latest(SUNDAY_EVENING) == datetime(2026, 12, 5, 21, 0, tzinfo=UTC)
    assert Cron.parse("*/15 9-17 * * mon-fri").latest(SUNDAY_EVENING) == datetime(2026, 12, 4, 17, 45, tzinfo=UTC)
    assert Cron.parse("30 8 1 * *").latest(SUNDAY_EVENING) == datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    assert Cron.parse("0 12 * * 7").latest(SUNDAY_EVENING) == datetime(2026, 12, 6, 12, 0, tzinfo=UTC)  # 7: Sunday
    assert Cron.parse("40 19 * * *").latest(SUNDAY_EVENING) == SUNDAY_EVENING  # at its minute
    # both day fields restricted: either matches, as in cron (the 1st, or any Friday)
    assert Cron.parse("0 0 1 * fri").latest(SUNDAY_EVENING) == datetime(2026, 12, 4, 0, 0, tzinfo=UTC)
    assert Cron.parse("0 3 29 feb *").latest(SUNDAY_EVENING) is None  # not within 400 days of 2026


@pytest.mark.parametrize(("text", "says"), [("* * * *", "five fields"), ("61 * * * *", "outside 0-59"),
                                            ("* * * * funday", "not a number"), ("*/0 * * * *", "a step of 0")])
def test_a_cron_that_cannot_be_read_says_why(text: str, says: str) -> None:
    with pytest.raises(CronError, match=says):
        Cron.parse(text)


def test_due_fires_each_occurrence_once_and_none_before_the_making() -> None:
    made = datetime(2026, 12, 6, 19, 30, tzinfo=UTC)
    assert due("0 * * * *", None, "UTC", SUNDAY_EVENING, made) is None  # 19:00 was before the making
    assert due("35 * * * *", None, "UTC", SUNDAY_EVENING, made) == datetime(2026, 12, 6, 19, 35, tzinfo=UTC)
    fired = datetime(2026, 12, 6, 19, 35, tzinfo=UTC)
    assert due("35 * * * *", None, "UTC", SUNDAY_EVENING + timedelta(minutes=10), fired) is None  # once
    once = datetime(2026, 12, 6, 20, 0)  # naive: read in the schedule's zone
    assert latest_occurrence(None, once, "Europe/Budapest", SUNDAY_EVENING) == datetime(2026, 12, 6, 19, 0, tzinfo=UTC)
    assert due(None, once, "UTC", SUNDAY_EVENING, made) is None  # not yet
