"""docs/api.md's curl examples, run in order against a real `conveyor api`: each ```sh block's
output must match the ```json or ```text block after it ("..." matches any value)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

import conveyor
from tests.api.server import conveyor_api
from tests.helpers import require_tool

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
_BLOCK = re.compile(r"```sh\n(.*?)```\n```(json|text)\n(.*?)```", re.DOTALL)
MARK = "----- next example -----"


def examples() -> list[tuple[str, str, str]]:
    """(commands, kind, expected output) of each example, in order."""
    return [(m.group(1), m.group(2), m.group(3)) for m in _BLOCK.finditer(DOC.read_text())]


def matches(expected: Any, got: Any) -> bool:
    """`got` equals `expected`, where the string "..." in `expected` matches anything."""
    if expected == "...":
        return True
    if isinstance(expected, dict):
        return (
            isinstance(got, dict)
            and expected.keys() == got.keys()
            and all(matches(v, got[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(expected) == len(got)
            and all(matches(e, g) for e, g in zip(expected, got, strict=True))
        )
    return bool(expected == got)


def test_the_doc_has_its_examples() -> None:
    assert len(examples()) >= 8


@pytest.mark.timeout(120)
def test_every_curl_example_answers_as_shown(db: str) -> None:
    for tool in ("curl", "jq"):
        require_tool(tool, f"Debian: apt-get install {tool}")
    client = conveyor.Conveyor(db).client()
    env = {
        "TOKEN": client.create_token("checkout", ["enqueue"])[1],
        "READ_TOKEN": client.create_token("reporting", ["read"])[1],
        "ADMIN_TOKEN": client.create_token("ops", ["admin"])[1],
    }
    found = examples()
    script = f"\necho '{MARK}'\n".join(commands for commands, _, _ in found)
    with conveyor_api(db) as base:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env={"PATH": "/usr/bin:/bin", "API": base, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    outputs = done.stdout.split(MARK + "\n")
    assert len(outputs) == len(found), done.stdout
    for (commands, kind, expected), output in zip(found, outputs, strict=True):
        got_lines = [line.strip() for line in output.splitlines() if line.strip()]
        want_lines = [line.strip() for line in expected.splitlines() if line.strip()]
        assert len(got_lines) == len(want_lines), f"{commands}\n{output}"
        for want, got in zip(want_lines, got_lines, strict=True):
            if kind == "json":
                assert matches(json.loads(want), json.loads(got)), f"{commands}\n{got}"
            else:
                assert got == want, f"{commands}\n{got}"
