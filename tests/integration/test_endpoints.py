"""Endpoints in the database: add, list, show, change, rotate, remove; SQL enqueue uses the
endpoint's queue."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import conveyor
from conveyor.endpoints import generate_secret, key_bytes, mask, resolve_secret


def test_add_list_get_set_and_remove_an_endpoint(app: conveyor.Conveyor) -> None:
    client = app.client()
    added = client.add_endpoint("send-receipt", "https://example.com/r", "s3cret-value")
    assert client.endpoints() == [added]
    client.set_endpoint("send-receipt", timeout=5, queue="mail", retry_4xx=True)
    got = client.get_endpoint("send-receipt")
    assert (got.timeout, got.queue, got.retry_4xx, got.url) == (5, "mail", True, added.url)
    client.remove_endpoint("send-receipt")
    assert client.endpoints() == []
    with pytest.raises(conveyor.EndpointNotFoundError, match="send-receipt"):
        client.get_endpoint("send-receipt")


def test_adding_an_existing_endpoint_says_to_use_set(app: conveyor.Conveyor) -> None:
    client = app.client()
    client.add_endpoint("e", "https://example.com/", "one")
    with pytest.raises(conveyor.ConfigError, match="endpoint set e"):
        client.add_endpoint("e", "https://example.com/other", "two")


def test_add_secret_keeps_the_newest_two_for_rotation(app: conveyor.Conveyor) -> None:
    client = app.client()
    client.add_endpoint("e", "https://example.com/", "first")
    client.set_endpoint("e", add_secret="second")
    assert client.get_endpoint("e").secrets == ("first", "second")
    client.set_endpoint("e", add_secret="env:THIRD")
    assert client.get_endpoint("e").secrets == ("second", "env:THIRD")
    client.set_endpoint("e", secret="only")
    assert client.get_endpoint("e").secrets == ("only",)


@pytest.mark.parametrize(
    ("url", "secret", "message"),
    [
        ("ftp://example.com/", "s", "http"),
        ("/relative", "s", "absolute"),
        ("https://user:pw@example.com/", "s", "credentials"),
        ("https://example.com/", "whsec_!!!", "base64"),
        ("https://example.com/", ("a", "b", "c"), "1 or 2"),
        ("https://example.com/", "env:", "environment variable"),
    ],
)
def test_bad_endpoints_are_refused_with_the_fix(
    app: conveyor.Conveyor, url: str, secret: Any, message: str
) -> None:
    with pytest.raises(conveyor.ConfigError, match=message):
        app.client().add_endpoint("e", url, secret)


def test_sql_enqueue_puts_an_endpoint_job_in_the_endpoint_queue(
    app: conveyor.Conveyor, conn: psycopg.Connection[Any]
) -> None:
    app.client().add_endpoint("hook", "https://example.com/", "s", queue="hooks")
    conn.execute("SELECT conveyor.enqueue('hook', '{\"order_id\": 42}')")
    conn.execute("SELECT conveyor.enqueue('hook', '{}', 'other')")
    conn.execute("SELECT conveyor.enqueue('plain', '{}')")
    rows = conn.execute("SELECT task, queue FROM conveyor.job ORDER BY id").fetchall()
    assert rows == [("hook", "hooks"), ("hook", "other"), ("plain", "default")]


def test_secrets_are_masked_and_resolved() -> None:
    secret = generate_secret()
    assert len(key_bytes(secret)) == 32
    assert secret not in mask(secret) and mask("env:KEY") == "env:KEY"
    assert resolve_secret("env:KEY", {"KEY": "plain"}) == b"plain"
    with pytest.raises(conveyor.EndpointSecretError, match="no environment variable KEY"):
        resolve_secret("env:KEY", {})
    endpoint = conveyor.Endpoint("e", "https://example.com/", (secret,))
    assert secret not in repr(endpoint)
