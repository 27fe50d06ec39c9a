"""JSON codec for job arguments and results: validation with the argument's path, size limit."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from conveyor.errors import PayloadError

DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024


def encode_args(args: Mapping[str, Any], *, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> str:
    """Return the JSON text of keyword arguments, or raise PayloadError naming the bad one."""
    if not isinstance(args, Mapping):
        raise PayloadError(
            f"job arguments must be keyword arguments (a JSON object), got {type(args).__name__}"
        )
    for key, value in args.items():
        if not isinstance(key, str):
            raise PayloadError(f"argument names must be strings, got {key!r}")
        problem = _text_problem(key)
        if problem:
            raise PayloadError(f"argument name {key!r} {problem}")
        _check(value, key)
    text = json.dumps(args, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise PayloadError(
            f"job arguments are {size:,} bytes, over the {max_bytes:,}-byte limit; store the data"
            " elsewhere (a table, object storage) and pass its id instead"
        )
    return text


def encode_result(value: Any) -> str | None:
    """Return the JSON text of a handler's return value; None stays None (SQL NULL)."""
    if value is None:
        return None
    _check(value, "return value")
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def decode(text: str | bytes) -> Any:
    """Parse JSON text."""
    return json.loads(text)


def storable_text(text: str) -> str:
    """Return `text` with what Postgres JSON cannot hold (NUL, lone surrogates) written as
    backslash escapes: for error messages, which must be recorded whatever they contain."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return (
            "contains a NUL character, which Postgres JSON cannot hold; remove it or encode the"
            " text (base64)"
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return (
                "contains a lone surrogate, which is not valid UTF-8; decode the bytes it came"
                " from properly, or encode them (base64)"
            )
    return None


def _check(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem:
            raise PayloadError(f"argument {path!r} {problem}")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PayloadError(
                f"argument {path!r} is {value!r}, which JSON cannot hold; pass a finite number"
                " or null"
            )
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise PayloadError(
                    f"argument {path!r} has a non-string key {key!r}; JSON object keys must be"
                    " strings"
                )
            problem = _text_problem(key)
            if problem:
                raise PayloadError(f"argument {path!r} has a key {key!r} that {problem}")
            _check(item, f"{path}.{key}")
        return
    raise PayloadError(
        f"argument {path!r} is a {type(value).__name__}, which JSON cannot hold; pass plain"
        " JSON values (str, int, float, bool, None, list, dict), e.g. an id or an ISO date string"
    )
