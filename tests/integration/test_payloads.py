"""Bad payloads are rejected at enqueue with an error that names the problem and the fix."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

import conveyor


@pytest.fixture
def ship(app: conveyor.Conveyor) -> conveyor.Task[Any]:
    @app.task(name="ship")
    def ship(order: Any = None, note: str = "") -> None:
        return None

    return ship


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"items": [1, 2, {3}]}, "order.items[2]"),
        ({"when": dt.date(2026, 1, 1)}, "order.when"),
        ({"blob": b"\x00"}, "order.blob"),
        ({"ratio": float("nan")}, "order.ratio"),
        ({1: "x"}, "order"),
    ],
)
def test_value_json_cannot_hold_is_named_by_its_path(
    ship: conveyor.Task[Any], value: Any, path: str
) -> None:
    with pytest.raises(conveyor.PayloadError, match=re.escape(f"argument '{path}'")) as info:
        ship.enqueue(order=value)
    assert "JSON" in str(info.value)


def test_payload_over_the_limit_says_to_pass_ids(db: str) -> None:
    app = conveyor.Conveyor(db, max_payload_bytes=1024)

    @app.task(name="big")
    def big(data: str) -> None:
        return None

    with pytest.raises(conveyor.PayloadError, match="pass its id instead"):
        big.enqueue(data="x" * 2000)
    big.enqueue(data="x" * 500)
    app.close()


def test_default_limit_is_64_kib(ship: conveyor.Task[Any]) -> None:
    ship.enqueue(note="x" * 60_000)
    with pytest.raises(conveyor.PayloadError, match="65,536-byte limit"):
        ship.enqueue(note="x" * 70_000)


def test_arguments_the_handler_does_not_take_are_rejected(ship: conveyor.Task[Any]) -> None:
    with pytest.raises(conveyor.PayloadError, match="unexpected argument"):
        ship.enqueue(ordr=1)


def test_nul_character_is_rejected_with_a_fix(ship: conveyor.Task[Any]) -> None:
    with pytest.raises(conveyor.PayloadError, match="NUL"):
        ship.enqueue(note="a\x00b")


def test_unicode_edge_cases_round_trip(app: conveyor.Conveyor, ship: conveyor.Task[Any]) -> None:
    note = "emoji 🧾, rtl \u202e, combining e\u0301, quote ' \" and backslash \\"
    job_id = ship.enqueue(note=note)
    assert app.client().get_job(job_id).args == {"note": note}


def test_job_whose_args_do_not_fit_fails_at_once_with_a_clear_error(
    app: conveyor.Conveyor, db: str, ship: conveyor.Task[Any]
) -> None:
    import asyncio

    import psycopg

    from tests.helpers import eventually, job_states, running_worker

    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("SELECT conveyor.enqueue('ship', '{\"wrong\": 1}')")

        async def run() -> None:
            async with running_worker(app):
                await eventually(lambda: job_states(conn).get("failed") == 1)

        asyncio.run(run())
        errors = conn.execute("SELECT errors FROM conveyor.jobs").fetchone()
    assert errors is not None
    assert "unexpected argument(s) wrong" in errors[0][0]["message"]
