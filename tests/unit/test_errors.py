"""One error tree: every exception Conveyor raises on purpose is a ConveyorError, documented."""

from __future__ import annotations

import ast
import builtins
import inspect
from datetime import timedelta
from pathlib import Path

import pytest

import conveyor
from conveyor import errors
from conveyor.outcome import Retry, SnoozeQueue

SRC = Path(conveyor.__file__).parent

#: Builtins that say a bad value or state; Conveyor raises its own subclass of them instead.
BARE = {"ValueError", "TypeError", "RuntimeError", "LookupError", "KeyError", "Exception"}


def _error_classes() -> list[type[BaseException]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__qualname__ in errors.__dict__
    ]


def test_every_error_is_a_conveyor_error() -> None:
    classes = _error_classes()
    assert len(classes) >= 10
    assert [c.__name__ for c in classes if not issubclass(c, conveyor.ConveyorError)] == []


def test_every_error_is_public_and_in_the_docstring_tree() -> None:
    doc = errors.__doc__ or ""
    names = [c.__name__ for c in _error_classes()]
    assert [n for n in names if n not in conveyor.__all__] == []
    assert [n for n in names if f" {n} " not in doc and not doc.count(f"* {n}")] == []


def test_tree_in_the_docstring_matches_the_classes() -> None:
    """Each line names a class that subclasses its parent in the tree and the builtin named
    beside it."""
    parents: list[str] = []
    for line in (errors.__doc__ or "").splitlines():
        stripped = line.lstrip()
        if stripped[:2] not in ("* ", "+ ", "- "):
            continue
        depth = (len(line) - len(stripped)) // 2
        name, *rest = stripped[2:].split()
        cls = getattr(errors, name)
        if rest and rest[0].startswith("("):  # the builtin it is too
            assert issubclass(cls, getattr(builtins, rest[0].strip("()"))), name
        del parents[depth:]
        if parents:
            assert issubclass(cls, getattr(errors, parents[-1])), name
        parents.append(name)


def test_builtin_bases_keep_old_except_clauses_working() -> None:
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.ConnectionTypeError, TypeError)
    assert issubclass(errors.UniqueKeyRaceError, RuntimeError)
    assert issubclass(errors.BlockingCallError, TypeError)


@pytest.mark.parametrize(
    ("make", "fix"),
    [
        (lambda: Retry(-1), "Retry(after=...) must be >= 0 seconds"),
        (lambda: Retry(timedelta(seconds=-5)), "Retry(after=...) must be >= 0 seconds"),
        (lambda: Retry("soon"), "must be a number of seconds or a timedelta"),  # type: ignore[arg-type]
        (lambda: SnoozeQueue(0), "SnoozeQueue(duration) must be > 0 seconds"),
        (lambda: SnoozeQueue(float("nan")), "must be a finite number of seconds"),
    ],
)
def test_bad_outcome_arguments_raise_config_error_naming_the_fix(make: object, fix: str) -> None:
    with pytest.raises(conveyor.ConfigError) as caught:
        make()  # type: ignore[operator]
    assert fix in str(caught.value)
    assert isinstance(caught.value, ValueError)  # callers that caught ValueError still do


def test_old_import_locations_still_work() -> None:
    from conveyor.alerts import DeliveryError
    from conveyor.worker.executor import JobTimeout

    assert DeliveryError is errors.DeliveryError
    assert JobTimeout is errors.JobTimeout


def _bare_raises(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            func = node.exc.func
            if isinstance(func, ast.Name) and func.id in BARE:
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {func.id}")
    return found


def test_no_module_raises_a_bare_builtin_on_purpose() -> None:
    # queries.py checks Conveyor's own SQL files at import: a packaging bug, not a user's
    exempt = {"queries.py"}
    offenders = [
        hit
        for path in sorted(SRC.rglob("*.py"))
        if path.name not in exempt
        for hit in _bare_raises(path)
    ]
    assert offenders == []
