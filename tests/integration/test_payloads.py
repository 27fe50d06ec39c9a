"""Payloads through the database: what goes in comes out, and text Postgres JSON cannot hold
never reaches it (in arguments, results or error messages) to stall or break a worker."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import conveyor
from tests.helpers import eventually, job_states, running_worker

ODD_TEXT = "emoji 🧾, rtl \u202e, combining e\u0301, quote ' \" and backslash \\, \u2028"


@pytest.fixture
def ship(app: conveyor.Conveyor) -> conveyor.Task[Any]:
    @app.task(name="ship")
    def ship(order: Any = None, note: str = "") -> None:
        return None

    return ship


def test_unicode_edge_cases_round_trip(app: conveyor.Conveyor, ship: conveyor.Task[Any]) -> None:
    order = {"lines": [{"sku": "ä-1", "qty": 2, "price": 9.99}], ODD_TEXT: None, "big": 2**62}
    job_id = ship.enqueue(order=order, note=ODD_TEXT)
    assert app.client().get_job(job_id).args == {"order": order, "note": ODD_TEXT}


@pytest.mark.parametrize(
    ("order", "problem"),
    [({"a\x00b": 1}, "NUL"), ({"x": "\udc80"}, "lone surrogate"), ({"\ud800": 1}, "surrogate")],
)
def test_text_postgres_json_cannot_hold_is_refused_before_anything_is_written(
    ship: conveyor.Task[Any], conn: psycopg.Connection[Any], order: Any, problem: str
) -> None:
    with pytest.raises(conveyor.PayloadError, match=problem):
        ship.enqueue(order=order)
    assert job_states(conn) == {}


async def test_job_whose_args_do_not_fit_fails_at_once_with_a_clear_error(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], ship: conveyor.Task[Any]
) -> None:
    conn.execute("SELECT conveyor.enqueue('ship', '{\"wrong\": 1}')")
    async with running_worker(app):
        await eventually(lambda: job_states(conn) == {"failed": 1})
    row = conn.execute("SELECT attempt, errors FROM conveyor.jobs").fetchone()
    assert row is not None
    assert row[0] == 1
    assert "unexpected argument(s) wrong" in row[1][0]["message"]


async def test_error_messages_with_nul_or_lone_surrogates_are_recorded_and_stall_nothing(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="parse", max_attempts=1)
    def parse(raw: str) -> None:
        # surrogateescape turns a byte that is not UTF-8 into a lone surrogate
        text = bytes.fromhex(raw).decode("utf-8", "surrogateescape")
        raise ValueError(f"cannot parse {text}\x00")

    @app.task(name="fine")
    def fine() -> int:
        return 1

    nul = parse.enqueue(raw="636166c3a9")  # "café"
    surrogate = parse.enqueue(raw="ff")
    async with running_worker(app) as worker:
        await eventually(lambda: job_states(conn) == {"failed": 2})
        fine.enqueue()
        await eventually(lambda: job_states(conn) == {"failed": 2, "completed": 1})
    assert not worker.broken
    client = app.client()
    assert client.get_job(nul).errors[0]["message"] == "cannot parse caf\u00e9\\x00"
    assert client.get_job(surrogate).errors[0]["message"] == "cannot parse \\udcff\\x00"
    assert "ValueError" in client.get_job(surrogate).errors[0]["traceback"]


async def test_result_postgres_json_cannot_hold_fails_the_job_and_not_the_worker(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="decode_name", max_attempts=3)
    def decode_name(raw: str) -> dict[str, str]:
        return {"name": bytes.fromhex(raw).decode("utf-8", "surrogateescape")}

    @app.task(name="keyed", max_attempts=3)
    def keyed() -> dict[str, int]:
        return {"a\x00": 1}

    bad_name = decode_name.enqueue(raw="ff")
    bad_key = keyed.enqueue()
    good = decode_name.enqueue(raw="6f6b")
    async with running_worker(app) as worker:
        await eventually(lambda: job_states(conn) == {"failed": 2, "completed": 1})
    assert not worker.broken
    client = app.client()
    assert client.get_job(good).result == {"name": "ok"}
    name_error = client.get_job(bad_name).errors
    assert len(name_error) == 1, "no retry can fix a return value"
    assert "argument 'return value.name' contains a lone surrogate" in name_error[0]["message"]
    assert "NUL" in client.get_job(bad_key).errors[0]["message"]
