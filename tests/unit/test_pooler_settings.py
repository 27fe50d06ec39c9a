"""PgBouncer mode's settings: read from the app, the environment or the worker command, and a
bad value refused with the fix."""

from __future__ import annotations

import pytest

import conveyor
from conveyor._store.pooler import connect_options
from conveyor.errors import ConfigError


def test_prepared_statements_are_off_only_in_pgbouncer_mode() -> None:
    assert connect_options(True) == {"prepare_threshold": None}
    assert connect_options(False) == {}


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("true", True), ("0", False), ("", False)]
)
def test_the_environment_turns_pgbouncer_mode_on(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("CONVEYOR_PGBOUNCER", value)
    assert conveyor.Conveyor("postgresql://x/y").pgbouncer is expected


def test_the_app_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_PGBOUNCER", "1")
    monkeypatch.setenv("CONVEYOR_LISTEN_URL", "postgresql://direct/y")
    app = conveyor.Conveyor("postgresql://x/y", pgbouncer=False, listen_url="postgresql://l/y")
    assert (app.pgbouncer, app.listen_url) == (False, "postgresql://l/y")
    app.set_pooler(pgbouncer=True, listen_url=None)
    assert (app.pgbouncer, app.listen_url) == (True, "postgresql://l/y")


def test_a_value_that_is_neither_yes_nor_no_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_PGBOUNCER", "transaction")
    with pytest.raises(ConfigError, match="set it to 1 when the database URL goes through"):
        _ = conveyor.Conveyor("postgresql://x/y").pgbouncer


@pytest.mark.parametrize(
    "name", ["pickup_poll_interval", "health_stall_seconds", "health_database_seconds"]
)
def test_the_new_intervals_must_be_positive(name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be > 0 seconds"):
        conveyor.WorkerConfig(**{name: 0})


def test_a_misspelt_option_gets_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean 'pickup_poll_interval'"):
        conveyor.WorkerConfig.from_options(pickup_pol_interval=1)
