"""JSON codec for job arguments and results: validation with the argument's path, size limit."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from conveyor.errors import PayloadError

DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024
#: Deepest nesting of lists and objects a payload may have (the value of `{"a": [1]}`'s 1 is
#: at level 2). Deeper values exhaust recursive JSON readers, Python's included.
MAX_NESTING = 100
#: Longest unique or idempotency key, in UTF-8 bytes: keys are indexed, and a btree entry
#: cannot exceed ~2.7 kB (Postgres refuses the row, not the key, and only at commit).
MAX_KEY_BYTES = 1000
#: Longest integer a payload may hold, in decimal digits (Python's own printing limit).
MAX_INT_DIGITS = 4300


#: One encoder for every payload: json.dumps() with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_args(args: Mapping[str, Any], *, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> str:
    """Return the JSON text of keyword arguments, or raise PayloadError naming the bad one."""
    if not isinstance(args, Mapping):
        raise PayloadError(
            f"job arguments must be keyword arguments (a JSON object), got {type(args).__name__}"
        )
    for key, value in args.items():
        if not isinstance(key, str):
            raise PayloadError(f"argument names must be strings, got {key!r}")
        if not _plain_text(key):
            problem = _text_problem(key)
            if problem:
                raise PayloadError(f"argument name {key!r} {problem}")
        if not _plain(value):
            _check(value, key, level=1)
    text = _ENCODER.encode(args)
    # a character is at most 4 bytes in UTF-8: short texts need no count
    size = len(text) if len(text) * 4 <= max_bytes or text.isascii() else len(text.encode())
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
    return _ENCODER.encode(value)


def check_key(key: str, what: str) -> str:
    """Return `key` if it can be stored as a unique or idempotency key; raise PayloadError."""
    if not isinstance(key, str):
        raise PayloadError(f"{what} must be a string, got {type(key).__name__}")
    problem = _text_problem(key)
    if problem:
        raise PayloadError(f"{what} {problem}")
    size = len(key.encode("utf-8"))
    if not size or size > MAX_KEY_BYTES:
        raise PayloadError(
            f"{what} is {size:,} bytes; it must be 1 to {MAX_KEY_BYTES:,} bytes (pass a hash of"
            " a longer key, e.g. hashlib.sha256(key.encode()).hexdigest())"
        )
    return key


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


def _plain_text(text: str) -> bool:
    """True for text that JSON and Postgres hold as it is (ASCII without NUL): most of it."""
    return text.isascii() and "\x00" not in text


def _plain(value: Any) -> bool:
    """True for a value needing no walk: None, a bool, a float that is finite, an int of
    ordinary size, or plain text (the common arguments: ids, names, flags)."""
    kind = type(value)
    if kind is int:
        return bool(value.bit_length() < 14_000)
    if kind is str:
        return _plain_text(value)
    if kind is float:
        return math.isfinite(value)
    return value is None or kind is bool


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


def _check(value: Any, path: str, *, level: int = 0) -> None:
    """Walk `value` (iteratively: a deep value must not exhaust Python's stack) and raise
    PayloadError naming the first part JSON, Postgres or a reader cannot hold."""
    stack: list[tuple[Any, str, int]] = [(value, path, level)]
    while stack:
        item, where, level = stack.pop()
        if level > MAX_NESTING:
            raise PayloadError(
                f"argument {path!r} is nested deeper than {MAX_NESTING} levels (at {where[:80]}"
                "...); flatten it, or store the data elsewhere and pass its id"
            )
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, int):
            _check_int(item, where)
        elif isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                raise PayloadError(f"argument {where!r} {problem}")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise PayloadError(
                    f"argument {where!r} is {item!r}, which JSON cannot hold; pass a finite"
                    " number or null"
                )
        elif isinstance(item, list | tuple):
            for index in range(len(item) - 1, -1, -1):
                stack.append((item[index], f"{where}[{index}]", level + 1))
        elif isinstance(item, Mapping):
            for key, child in reversed(list(item.items())):
                if not isinstance(key, str):
                    raise PayloadError(
                        f"argument {where!r} has a non-string key {key!r}; JSON object keys must"
                        " be strings"
                    )
                problem = _text_problem(key)
                if problem:
                    raise PayloadError(f"argument {where!r} has a key {key!r} that {problem}")
                stack.append((child, f"{where}.{key}", level + 1))
        else:
            raise PayloadError(
                f"argument {where!r} is a {type(item).__name__}, which JSON cannot hold; pass"
                " plain JSON values (str, int, float, bool, None, list, dict), e.g. an id or an"
                " ISO date string"
            )


def _check_int(value: int, where: str) -> None:
    # Python refuses to print an int of more than sys.get_int_max_str_digits() digits (4300 by
    # default), and most readers (JavaScript, Go) lose precision far sooner. Bits bound digits:
    # 14,000 bits are under 4,300 digits, so only huge values pay for the exact count.
    if value.bit_length() < 14_000:
        return
    try:
        digits = len(str(abs(value)))
    except ValueError:
        digits = 0
    if not digits or digits > MAX_INT_DIGITS:
        raise PayloadError(
            f"argument {where!r} is an integer of more than {MAX_INT_DIGITS:,} digits, which"
            " JSON readers cannot take; pass it as a string"
        )
