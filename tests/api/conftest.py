"""Fixtures for the REST API: the ASGI app on the clean test database, tokens of each scope."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

import conveyor
from conveyor.api import create_app

#: A loopback caller: the address and Host a process on the same machine has.
LOOPBACK = {"base_url": "http://127.0.0.1:8081", "client": ("127.0.0.1", 50000)}


class Tokens:
    """One token of each scope (their secrets), made through the public Client."""

    def __init__(self, app: conveyor.Conveyor) -> None:
        client = app.client()
        self.enqueue = client.create_token("edge", ["enqueue"])[1]
        self.read = client.create_token("reporting", ["read"])[1]
        self.admin = client.create_token("ops", ["admin"])[1]


def bearer(secret: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def tokens(app: conveyor.Conveyor) -> Tokens:
    return Tokens(app)


@pytest.fixture
def api(app: conveyor.Conveyor) -> Iterator[TestClient]:
    """A client of the API (no rate limit), from a non-loopback address: it needs tokens."""
    with TestClient(create_app(app, rate_limit=None)) as client:
        yield client


@pytest.fixture
def local_api(app: conveyor.Conveyor) -> Iterator[TestClient]:
    """A client of the API from a loopback address, to a loopback Host."""
    with TestClient(create_app(app, rate_limit=None), **LOOPBACK) as client:  # type: ignore[arg-type]
        yield client
