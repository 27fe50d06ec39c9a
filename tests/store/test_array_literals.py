"""Array parameters sent as literals read back as the values they stand for."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from conveyor._store import arrays

NAMES = ["plain", 'quote " inside', "back\\slash", "{braces},comma", "NULL", " spaced ", "é✓", ""]


def test_text_literals_keep_every_name_one_element(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SELECT %s::text[]", (arrays.texts(NAMES),)).fetchone()
    assert row is not None and row[0] == NAMES


def test_id_and_token_literals(conn: psycopg.Connection[Any]) -> None:
    ids = [1, 2**62, 7]
    tokens = [uuid.uuid4() for _ in ids]
    row = conn.execute(
        "SELECT %s::bigint[], %s::uuid[], %s::text[]",
        (arrays.ints(ids), arrays.uuids(tokens), arrays.texts([])),
    ).fetchone()
    assert row is not None and row[0] == ids and row[1] == tokens and row[2] == []


def test_all_null_results_are_padded_by_unnest(conn: psycopg.Connection[Any]) -> None:
    assert arrays.nullable_texts([None, None]) is None
    assert arrays.nullable_texts([None, '{"a":1}']) == [None, '{"a":1}']
    rows = conn.execute(
        "SELECT id, result FROM unnest(%s::bigint[], %s::text[]) AS c(id, result)",
        (arrays.ints([5, 6]), arrays.nullable_texts([None, None])),
    ).fetchall()
    assert rows == [(5, None), (6, None)]
