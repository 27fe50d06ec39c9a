"""With credentials configured, the dashboard refuses every request that lacks them."""

from __future__ import annotations

import base64

import pytest
from starlette.testclient import TestClient

import conveyor
from conveyor.dashboard import create_app
from conveyor.dashboard.auth import SESSION_COOKIE
from tests.dashboard.conftest import ORIGIN, TOKEN

HTML = {"accept": "text/html"}


def _basic(user: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {encoded}"}


@pytest.mark.parametrize("path", ["/", "/jobs", "/jobs/1", "/jobs?state=failed"])
def test_refuses_requests_without_credentials(guarded: TestClient, path: str) -> None:
    response = guarded.get(path, headers={"accept": "application/json"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert "Jobs" not in response.text


def test_refuses_actions_without_credentials(guarded: TestClient) -> None:
    response = guarded.post("/queues/default/pause", headers=ORIGIN)
    assert response.status_code == 401


def test_sends_a_browser_to_the_sign_in_form(guarded: TestClient) -> None:
    response = guarded.get("/jobs?state=failed", headers=HTML, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fjobs%3Fstate%3Dfailed"
    assert guarded.get("/login").status_code == 200


def test_refuses_a_wrong_token(guarded: TestClient) -> None:
    response = guarded.get("/", headers={"authorization": "Bearer not-the-token"})
    assert response.status_code == 401


def test_accepts_the_bearer_token(guarded: TestClient) -> None:
    response = guarded.get("/", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert "Jobs by state" in response.text


def test_accepts_basic_auth_and_refuses_a_wrong_password(guarded: TestClient) -> None:
    assert guarded.get("/", headers=_basic("ops", "pa55word")).status_code == 200
    assert guarded.get("/", headers=_basic("ops", "wrong")).status_code == 401
    assert guarded.get("/", headers=_basic("root", "pa55word")).status_code == 401
    assert guarded.get("/", headers={"authorization": "Basic !!!"}).status_code == 401


def test_sign_in_sets_a_strict_http_only_cookie_that_is_not_the_token(
    guarded: TestClient,
) -> None:
    response = guarded.post(
        "/login", data={"token": TOKEN, "next": "/jobs"}, headers=ORIGIN, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/jobs"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert TOKEN not in cookie
    assert guarded.get("/jobs").status_code == 200  # the cookie is sent from now on


def test_sign_in_with_a_wrong_token_sets_no_cookie(guarded: TestClient) -> None:
    response = guarded.post("/login", data={"token": "guess"}, headers=ORIGIN)
    assert response.status_code == 401
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    assert guarded.get("/", headers={"accept": "application/json"}).status_code == 401


def test_a_forged_session_cookie_is_refused(guarded: TestClient) -> None:
    guarded.cookies.set(SESSION_COOKIE, TOKEN)
    assert guarded.get("/", headers={"accept": "application/json"}).status_code == 401


def test_sign_in_never_redirects_to_another_site(guarded: TestClient) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        response = guarded.post(
            "/login", data={"token": TOKEN, "next": target}, headers=ORIGIN, follow_redirects=False
        )
        assert response.headers["location"] == "/"


def test_without_credentials_configured_the_dashboard_is_open(dash: TestClient) -> None:
    assert dash.get("/").status_code == 200


def test_a_username_needs_a_password(app: conveyor.Conveyor) -> None:
    with pytest.raises(conveyor.ConfigError, match="both a username and a password"):
        create_app(app, username="ops")


def test_every_response_carries_the_security_headers(app: conveyor.Conveyor) -> None:
    with TestClient(create_app(app)) as client:
        headers = client.get("/").headers
    assert "script-src" not in headers["content-security-policy"]
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"


def test_allowed_hosts_refuse_a_rebound_domain(app: conveyor.Conveyor) -> None:
    web = create_app(app, allowed_hosts=["127.0.0.1", "localhost", "::1"])
    with TestClient(web) as client:
        assert client.get("/", headers={"host": "evil.example"}).status_code == 400
        assert client.get("/", headers={"host": "evil.example:8080"}).status_code == 400
        assert client.get("/", headers={"host": "127.0.0.1:8080"}).status_code == 200
        assert client.get("/", headers={"host": "[::1]:8080"}).status_code == 200
        assert client.get("/", headers={"host": "LOCALHOST"}).status_code == 200
