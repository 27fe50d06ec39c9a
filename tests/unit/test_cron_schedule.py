"""Cron schedules without a database: declaring them, their times, daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import conveyor
from conveyor.cron import slot_of_key

BERLIN = "Europe/Berlin"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture
def app() -> conveyor.Conveyor:
    """An app that never connects: declaring schedules needs no database."""
    return conveyor.Conveyor("postgresql://nowhere.invalid/none")


@pytest.fixture
def report(app: conveyor.Conveyor) -> conveyor.Task[Any]:
    @app.task(name="reports.build")
    def build(kind: str = "daily") -> str:
        return kind

    return build


def schedule(
    app: conveyor.Conveyor, task: conveyor.Task[Any], cron: str, **options: Any
) -> conveyor.Schedule:
    return app.add_schedule(task, cron=cron, **options)


def slots(s: conveyor.Schedule, start: datetime, count: int) -> list[datetime]:
    found: list[datetime] = []
    at = start
    for _ in range(count):
        nxt = s.next_after(at)
        assert nxt is not None
        found.append(nxt)
        at = nxt
    return found


# -- declaring --------------------------------------------------------------------------------


def test_periodic_above_task_registers_a_schedule_and_returns_the_task(
    app: conveyor.Conveyor,
) -> None:
    @app.periodic(cron="*/5 * * * *", timezone=BERLIN, args={"kind": "hourly"}, catch_up="once")
    @app.task(name="reports.hourly")
    def hourly(kind: str) -> str:
        return kind

    assert isinstance(hourly, conveyor.Task)
    s = app.schedules["reports.hourly"]
    assert (s.task, s.cron, s.timezone, s.catch_up) == (
        "reports.hourly",
        "*/5 * * * *",
        BERLIN,
        "once",
    )
    assert s.spec.args_json == '{"kind":"hourly"}'
    assert s.grace == timedelta(seconds=60)


def test_add_schedule_takes_a_task_name_and_options_from_config(
    app: conveyor.Conveyor, report: conveyor.Task[Any]
) -> None:
    config = {"name": "reports.weekly", "cron": "@weekly", "queue": "reports", "priority": 5}
    s = app.add_schedule("reports.build", **config)
    assert app.schedules == {"reports.weekly": s}
    assert (s.spec.queue, s.spec.priority, s.expression) == ("reports", 5, "0 0 * * 0")


def test_a_task_can_have_several_schedules_with_their_own_names(
    app: conveyor.Conveyor, report: conveyor.Task[Any]
) -> None:
    schedule(app, report, "0 6 * * *", name="morning", args={"kind": "morning"})
    schedule(app, report, "0 18 * * *", name="evening", args={"kind": "evening"})
    assert sorted(app.schedules) == ["evening", "morning"]


def test_two_schedules_with_one_name_are_refused(
    app: conveyor.Conveyor, report: conveyor.Task[Any]
) -> None:
    schedule(app, report, "0 6 * * *")
    schedule(app, report, "0 6 * * *")  # declaring the same one again (a re-import) is fine
    with pytest.raises(conveyor.ConfigError, match="already exists; give this one its own name="):
        schedule(app, report, "0 18 * * *")


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("61 * * * *", r"invalid cron expression '61 \* \* \* \*' \(bad minute\)"),
        ("* * * *", "has 4 field"),
        ("0 * * * * *", "has 6 field"),
        ("0 0 31 2 *", "bad day-of-month"),
        ("", "cron must be a cron expression"),
        ("@fortnightly", "has 1 field"),
    ],
)
def test_an_invalid_cron_expression_is_refused_at_declaration(
    app: conveyor.Conveyor, report: conveyor.Task[Any], cron: str, message: str
) -> None:
    with pytest.raises(conveyor.ConfigError, match=message) as raised:
        schedule(app, report, cron)
    assert "minute (0-59) hour (0-23)" in str(raised.value), "the message shows the format"
    assert app.schedules == {}


def test_an_unknown_timezone_is_refused_with_a_suggestion(
    app: conveyor.Conveyor, report: conveyor.Task[Any]
) -> None:
    with pytest.raises(conveyor.ConfigError) as raised:
        schedule(app, report, "0 * * * *", timezone="Europe/Berln")
    assert "unknown timezone 'Europe/Berln'; did you mean 'Europe/Berlin'?" in str(raised.value)


def test_a_misspelt_catch_up_policy_is_refused_with_a_suggestion(
    app: conveyor.Conveyor, report: conveyor.Task[Any]
) -> None:
    with pytest.raises(conveyor.ConfigError, match="got 'onse'; did you mean 'once'"):
        schedule(app, report, "0 * * * *", catch_up="onse")


def test_arguments_the_task_does_not_take_are_refused_at_declaration(
    app: conveyor.Conveyor, report: conveyor.Task[Any]
) -> None:
    with pytest.raises(conveyor.ConfigError, match=r"unexpected argument.*size"):
        schedule(app, report, "0 * * * *", args={"size": 3})


def test_periodic_on_a_plain_function_says_to_put_it_above_task(app: conveyor.Conveyor) -> None:
    with pytest.raises(conveyor.ConfigError, match=r"put @app\.periodic above @app\.task"):
        app.periodic(cron="* * * * *")(lambda: None)  # type: ignore[arg-type]


# -- times ------------------------------------------------------------------------------------


def test_times_follow_the_expression_in_utc(
    app: conveyor.Conveyor, report: conveyor.Task[Any]
) -> None:
    s = schedule(app, report, "*/5 * * * *")
    assert slots(s, utc(2026, 5, 1, 11, 58, 30), 3) == [
        utc(2026, 5, 1, 12, 0),
        utc(2026, 5, 1, 12, 5),
        utc(2026, 5, 1, 12, 10),
    ]
    assert s.next_after(utc(2026, 5, 1, 12, 0)) == utc(2026, 5, 1, 12, 5), "strictly after"


def test_latest_between_finds_the_last_time_at_or_before_the_end(
    app: conveyor.Conveyor, report: conveyor.Task[Any]
) -> None:
    s = schedule(app, report, "*/5 * * * *")
    start = utc(2026, 5, 1, 12, 0)
    assert s.latest_between(start, utc(2026, 5, 1, 12, 7)) == utc(2026, 5, 1, 12, 5)
    assert s.latest_between(start, utc(2026, 5, 1, 12, 10)) == utc(2026, 5, 1, 12, 10)
    assert s.latest_between(start, utc(2026, 5, 3, 9, 59)) == utc(2026, 5, 3, 9, 55)
    assert s.latest_between(utc(2026, 5, 1, 12, 1), utc(2026, 5, 1, 12, 4)) is None


def test_latest_between_reaches_far_back_for_a_rare_schedule(
    app: conveyor.Conveyor, report: conveyor.Task[Any]
) -> None:
    s = schedule(app, report, "0 0 1 1 *")
    assert s.latest_between(utc(2020, 1, 1), utc(2026, 7, 1)) == utc(2026, 1, 1)
    assert s.latest_between(utc(2026, 1, 2), utc(2026, 7, 1)) is None


def test_times_are_wall_clock_times_of_the_timezone(
    app: conveyor.Conveyor, report: conveyor.Task[Any]
) -> None:
    s = schedule(app, report, "0 9 * * MON-FRI", timezone="America/New_York")
    # Friday 2026-05-01 09:00 EDT, then Monday 2026-05-04 09:00 EDT
    assert slots(s, utc(2026, 5, 1, 12), 2) == [utc(2026, 5, 1, 13), utc(2026, 5, 4, 13)]


# -- daylight saving (Europe/Berlin: 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00) --


def test_a_fixed_time_in_the_skipped_spring_hour_runs_at_the_end_of_the_gap(
    app: conveyor.Conveyor, report: conveyor.Task[Any]
) -> None:
    s = schedule(app, report, "30 2 * * *", timezone=BERLIN)
    assert slots(s, utc(2026, 3, 27, 12), 3) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # 02:30 does not exist: 03:00 CEST
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]


def test_a_fixed_time_in_the_repeated_autumn_hour_runs_once(
    app: conveyor.Conveyor, report: conveyor.Task[Any]
) -> None:
    s = schedule(app, report, "30 2 * * *", timezone=BERLIN)
    assert slots(s, utc(2026, 10, 23, 12), 3) == [
        utc(2026, 10, 24, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 0, 30),  # the first 02:30 (CEST); the second (CET) does not run
        utc(2026, 10, 26, 1, 30),  # 02:30 CET
    ]
    # Asked from inside the repeated hour, after the first 02:30: the next one is a day later.
    assert s.next_after(utc(2026, 10, 25, 1, 20)) == utc(2026, 10, 26, 1, 30)
    assert s.latest_between(utc(2026, 10, 24, 12), utc(2026, 10, 25, 1, 45)) == utc(
        2026, 10, 25, 0, 30
    )


def test_an_interval_schedule_keeps_its_interval_through_both_changes(
    app: conveyor.Conveyor, report: conveyor.Task[Any]
) -> None:
    s = schedule(app, report, "*/30 * * * *", timezone=BERLIN)
    autumn = slots(s, utc(2026, 10, 24, 23, 40), 4)
    assert autumn == [
        utc(2026, 10, 25, 0),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 1),
        utc(2026, 10, 25, 1, 30),
    ]
    spring = slots(s, utc(2026, 3, 29, 0, 10), 3)
    assert spring == [utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1), utc(2026, 3, 29, 1, 30)]


# -- the job's key ----------------------------------------------------------------------------


def test_the_job_key_names_the_schedule_and_gives_back_the_slot(
    app: conveyor.Conveyor, report: conveyor.Task[Any]
) -> None:
    s = schedule(app, report, "30 2 * * *", timezone=BERLIN, name="nightly@berlin")
    key = s.job_key(utc(2026, 3, 29, 1))
    assert key == "cron:nightly@berlin@2026-03-29T01:00:00+00:00"
    assert slot_of_key(key) == utc(2026, 3, 29, 1)
    assert slot_of_key("receipt-42") is None
    assert slot_of_key(None) is None
