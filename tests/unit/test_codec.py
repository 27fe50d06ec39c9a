"""Payload codec: only JSON values get in, a bad one is named by its path, size is capped.

No database: validation happens before anything is sent, so an app on an address nobody
listens at is enough.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import conveyor
from conveyor.codec import DEFAULT_MAX_PAYLOAD_BYTES, encode_args, encode_result, storable_text

NOWHERE = "postgresql://nobody@127.0.0.1:1/nothing"


@pytest.fixture
def app() -> conveyor.Conveyor:
    return conveyor.Conveyor(NOWHERE)


@pytest.fixture
def ship(app: conveyor.Conveyor) -> conveyor.Task[Any]:
    @app.task(name="ship")
    def ship(order: Any = None, note: str = "") -> None:
        return None

    return ship


def _with_bad_item(bad: Any) -> dict[str, Any]:
    return {"id": 7, "items": [{"sku": "a"}, {"sku": "b"}, bad]}


@pytest.mark.parametrize(
    ("order", "path", "what"),
    [
        (_with_bad_item({1, 2}), "order.items[2]", "set"),
        (_with_bad_item(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)), "order.items[2]", "datetime"),
        (_with_bad_item(dt.date(2026, 1, 1)), "order.items[2]", "date"),
        (_with_bad_item(b"\x00\x01"), "order.items[2]", "bytes"),
        (_with_bad_item(Decimal("1.5")), "order.items[2]", "Decimal"),
        (_with_bad_item(float("nan")), "order.items[2]", "nan"),
        (_with_bad_item(float("inf")), "order.items[2]", "inf"),
        (_with_bad_item({1: "x"}), "order.items[2]", "non-string key 1"),
        (_with_bad_item({"deep": [object()]}), "order.items[2].deep[0]", "object"),
    ],
)
def test_value_json_cannot_hold_is_rejected_with_its_argument_path(
    ship: conveyor.Task[Any], order: Any, path: str, what: str
) -> None:
    with pytest.raises(conveyor.PayloadError, match=re.escape(f"argument '{path}'")) as info:
        ship.enqueue(order=order)
    message = str(info.value)
    assert what in message
    assert "JSON" in message


def test_nul_character_is_rejected_with_a_fix(ship: conveyor.Task[Any]) -> None:
    with pytest.raises(conveyor.PayloadError, match=r"argument 'note' contains a NUL.*base64"):
        ship.enqueue(note="a\x00b")


@pytest.mark.parametrize(
    ("order", "message"),
    [
        ({"name": "\udcff"}, "argument 'order.name' contains a lone surrogate"),
        ({"a\x00": 1}, "argument 'order' has a key 'a\\x00' that contains a NUL"),
        ({"lines": [{"\ud800": 1}]}, "argument 'order.lines[0]' has a key '\\ud800' that"),
    ],
)
def test_text_postgres_json_cannot_hold_is_rejected_in_values_and_keys(
    ship: conveyor.Task[Any], order: Any, message: str
) -> None:
    with pytest.raises(conveyor.PayloadError, match=re.escape(message)):
        ship.spec(order=order)


def test_argument_name_postgres_json_cannot_hold_is_rejected() -> None:
    with pytest.raises(conveyor.PayloadError, match="argument name '\\\\udcff' contains a lone"):
        encode_args({"\udcff": 1})


def test_payload_over_the_default_limit_says_to_pass_ids(ship: conveyor.Task[Any]) -> None:
    ship.spec(note="x" * (DEFAULT_MAX_PAYLOAD_BYTES - 100))
    with pytest.raises(conveyor.PayloadError, match="65,536-byte limit") as info:
        ship.enqueue(note="x" * DEFAULT_MAX_PAYLOAD_BYTES)
    assert "pass its id instead" in str(info.value)


def test_limit_counts_utf8_bytes_not_characters(ship: conveyor.Task[Any]) -> None:
    # 30,000 characters of 3 bytes each: well under the limit in characters, over it in bytes
    with pytest.raises(conveyor.PayloadError, match="over the 65,536-byte limit"):
        ship.spec(note="€" * 30_000)


def test_custom_limit_from_the_app_applies_to_its_tasks() -> None:
    app = conveyor.Conveyor(NOWHERE, max_payload_bytes=1024)

    @app.task(name="big")
    def big(data: str) -> None:
        return None

    big.spec(data="x" * 1000)
    with pytest.raises(conveyor.PayloadError, match="over the 1,024-byte limit"):
        big.enqueue(data="x" * 1100)


def test_a_limit_below_one_byte_is_a_config_error() -> None:
    with pytest.raises(conveyor.ConfigError, match="max_payload_bytes must be positive"):
        conveyor.Conveyor(NOWHERE, max_payload_bytes=0)


def test_unknown_keyword_argument_is_rejected_at_enqueue(ship: conveyor.Task[Any]) -> None:
    with pytest.raises(conveyor.PayloadError, match="unexpected argument") as info:
        ship.enqueue(ordr=1)
    assert "ordr" in str(info.value)
    assert "its parameters: note, order" in str(info.value)


def test_missing_keyword_argument_is_rejected_at_enqueue(app: conveyor.Conveyor) -> None:
    @app.task(name="refund")
    def refund(order_id: int, amount: int, reason: str = "") -> None:
        return None

    with pytest.raises(conveyor.PayloadError, match=r"missing argument\(s\) amount, order_id"):
        refund.enqueue(reason="late")


def test_the_job_context_parameter_is_not_a_job_argument(app: conveyor.Conveyor) -> None:
    @app.task(name="ctx_task")
    def ctx_task(order_id: int, ctx: conveyor.JobContext) -> None:
        return None

    assert json.loads(ctx_task.spec(order_id=1).args_json) == {"order_id": 1}
    with pytest.raises(conveyor.PayloadError, match="unexpected argument"):
        ctx_task.spec(order_id=1, ctx=None)


def test_var_keyword_handler_takes_any_argument(app: conveyor.Conveyor) -> None:
    @app.task(name="anything")
    def anything(**kwargs: Any) -> None:
        return None

    assert json.loads(anything.spec(a=1, b=[2]).args_json) == {"a": 1, "b": [2]}


def test_result_json_cannot_hold_is_named_as_the_return_value() -> None:
    assert encode_result(None) is None
    assert json.loads(encode_result({"ok": [1, 2.5, "x"]}) or "") == {"ok": [1, 2.5, "x"]}
    with pytest.raises(conveyor.PayloadError, match=r"argument 'return value\.when'"):
        encode_result({"when": dt.date(2026, 1, 1)})


# -- properties -------------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=15,
)


@given(st.dictionaries(text, json_values, max_size=8))
def test_any_json_value_round_trips(args: dict[str, Any]) -> None:
    assert json.loads(encode_args(args, max_bytes=10**7)) == args


not_json: st.SearchStrategy[Any] = (
    st.sets(st.integers(), min_size=1)
    | st.binary()
    | st.complex_numbers()
    | st.datetimes()
    | st.decimals(allow_nan=False)
    | st.sampled_from([float("nan"), float("inf"), float("-inf")])
)
segments = st.lists(
    st.one_of(st.text("abcxyz_", min_size=1, max_size=5), st.integers(0, 3)), max_size=5
)


@given(bad=not_json, path=segments)
def test_value_json_cannot_hold_is_found_at_any_depth(bad: Any, path: list[str | int]) -> None:
    value: Any = bad
    expected = ""
    for segment in reversed(path):
        if isinstance(segment, int):
            value = [None] * segment + [value]
            expected = f"[{segment}]{expected}"
        else:
            value = {segment: value}
            expected = f".{segment}{expected}"
    with pytest.raises(conveyor.PayloadError, match=re.escape(f"argument 'x{expected}'")):
        encode_args({"x": value})


@given(st.text())
def test_storable_text_is_always_valid_utf8_without_nul_and_leaves_clean_text_alone(
    text: str,
) -> None:
    stored = storable_text(text)
    stored.encode("utf-8")
    assert "\x00" not in stored
    clean = "\x00" not in text and text == text.encode("utf-8", "replace").decode("utf-8")
    if clean:
        assert stored == text


@given(st.text(st.characters(codec="utf-8", exclude_characters="\x00")))
def test_text_that_encodes_is_accepted_and_stored_unchanged(text: str) -> None:
    assert json.loads(encode_args({"x": text}, max_bytes=10**7)) == {"x": text}
    assert storable_text(text) == text
