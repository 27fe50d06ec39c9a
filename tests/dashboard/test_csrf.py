"""Actions are POST forms with a CSRF token bound to the browser's cookie, from this origin;
anything else is refused with 403 and changes nothing."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

import conveyor
from conveyor.dashboard import create_app
from tests.dashboard.conftest import ORIGIN, csrf_token, insert_finished, state_of


@pytest.fixture
def failed(conn: psycopg.Connection[Any]) -> int:
    return insert_finished(conn, state="failed")


def test_a_valid_form_from_this_origin_retries_the_job(
    dash: TestClient, conn: psycopg.Connection[Any], failed: int
) -> None:
    token = csrf_token(dash.get(f"/jobs/{failed}").text)
    response = dash.post(f"/jobs/{failed}/retry", data={"csrf_token": token}, headers=ORIGIN)
    assert response.status_code == 200  # after the redirect
    assert f"Job {failed} retried." in response.text
    assert state_of(conn, failed) == "available"


def test_post_without_a_token_is_refused(
    dash: TestClient, conn: psycopg.Connection[Any], failed: int
) -> None:
    dash.get("/")  # the browser has its cookie
    response = dash.post(f"/jobs/{failed}/retry", data={}, headers=ORIGIN)
    assert response.status_code == 403
    assert state_of(conn, failed) == "failed"


def test_post_from_a_foreign_origin_is_refused(
    dash: TestClient, conn: psycopg.Connection[Any], failed: int
) -> None:
    token = csrf_token(dash.get(f"/jobs/{failed}").text)
    for headers in (
        {"origin": "https://evil.example"},
        {"origin": "null", "referer": "https://evil.example/page"},
        {},  # neither Origin nor Referer: refused too
    ):
        response = dash.post(f"/jobs/{failed}/retry", data={"csrf_token": token}, headers=headers)
        assert response.status_code == 403, headers
    assert state_of(conn, failed) == "failed"


def test_a_same_origin_referer_is_enough_without_origin(
    dash: TestClient, conn: psycopg.Connection[Any], failed: int
) -> None:
    token = csrf_token(dash.get(f"/jobs/{failed}").text)
    response = dash.post(
        f"/jobs/{failed}/delete",
        data={"csrf_token": token},
        headers={"referer": f"http://testserver/jobs/{failed}"},
    )
    assert response.status_code == 200
    assert state_of(conn, failed) is None


def test_a_token_from_another_browser_is_refused(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any], failed: int
) -> None:
    web = create_app(app, secret_key="shared")
    with TestClient(web) as attacker, TestClient(web) as victim:
        stolen = csrf_token(attacker.get("/").text)
        victim.get("/")
        response = victim.post(f"/jobs/{failed}/retry", data={"csrf_token": stolen}, headers=ORIGIN)
    assert response.status_code == 403
    assert state_of(conn, failed) == "failed"


def test_get_never_acts(dash: TestClient, conn: psycopg.Connection[Any], failed: int) -> None:
    assert dash.get(f"/jobs/{failed}/retry").status_code == 405
    assert dash.get("/queues/default/pause").status_code == 405
    assert state_of(conn, failed) == "failed"


def test_the_sign_in_form_refuses_a_foreign_origin(app: conveyor.Conveyor) -> None:
    with TestClient(create_app(app, token="t0ken")) as client:
        response = client.post(
            "/login", data={"token": "t0ken"}, headers={"origin": "https://evil.example"}
        )
    assert response.status_code == 403
    assert "conveyor_session" not in response.headers.get("set-cookie", "")


def test_a_forged_flash_message_is_not_shown(dash: TestClient) -> None:
    dash.cookies.set("conveyor_flash", "SGFja2Vk.0000")
    assert "Hacked" not in dash.get("/").text
