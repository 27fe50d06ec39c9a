"""`conveyor queue`: set limits, pause, resume, snooze and list queues from the command line."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result

import conveyor
from conveyor.cli import cli
from tests.acceptance.shop_app import record

Run = Callable[..., Result]


@pytest.fixture
def run(db: str) -> Run:
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(cli, list(args), env={"CONVEYOR_DATABASE_URL": db})

    return run


def _queues(run: Run) -> dict[str, dict[str, object]]:
    result = run("queue", "list", "--json")
    assert result.exit_code == 0, result.output
    return {q["name"]: q for q in json.loads(result.stdout)}


def test_limits_set_from_the_cli_are_listed(run: Run, shop: conveyor.Conveyor) -> None:
    record.enqueue(n=1)
    result = run("queue", "set", "emails", "--rate-limit", "100/minute", "--concurrency", "5")
    assert result.exit_code == 0, result.output
    result = run("queue", "set", "emails", "--max-depth", "1000", "--on-full", "drop_oldest")
    assert result.exit_code == 0, result.output
    emails = _queues(run)["emails"]
    assert (emails["rate_limit"], emails["concurrency"], emails["max_depth"]) == (
        "100/60s",
        5,
        1000,
    )
    assert emails["on_full"] == "drop_oldest"
    assert _queues(run)["default"]["waiting"] == 1
    result = run("queue", "set", "emails", "--concurrency", "none")
    assert result.exit_code == 0, result.output
    assert _queues(run)["emails"]["concurrency"] is None
    text = run("queue", "list")
    assert "emails" in text.stdout and "rate_limit=100/60s" in text.stdout


def test_pause_snooze_and_resume(run: Run, shop: conveyor.Conveyor) -> None:
    assert run("queue", "pause", "default").exit_code == 0
    assert _queues(run)["default"]["paused"] is True
    assert "paused" in run("queue", "list").stdout
    assert run("queue", "resume", "default").exit_code == 0
    assert _queues(run)["default"]["paused"] is False
    snoozed = run("queue", "snooze", "default", "--seconds", "60", "--reason", "smtp down")
    assert snoozed.exit_code == 0, snoozed.output
    assert _queues(run)["default"]["snooze_reason"] == "smtp down"
    assert run("queue", "resume", "default").exit_code == 0
    assert _queues(run)["default"]["snoozed_until"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--concurrency", "lots"), "whole number"),
        (("--rate-limit", "fast"), "COUNT/PERIOD"),
        (("--on-full", "reject"), "--max-depth"),
        (("--key", "tenant_id"), "key_concurrency"),
        ((), "at least one"),
    ],
)
def test_bad_limits_are_refused_with_the_fix(
    run: Run, shop: conveyor.Conveyor, args: tuple[str, ...], message: str
) -> None:
    result = run("queue", "set", "emails", *args)
    assert result.exit_code == 2
    assert message in result.output
