"""schemathesis runs generated requests against /openapi.json (valid and invalid ones, with
an admin token): no 5xx, and every status, content type, header and body is as documented."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import conveyor
from conveyor.api import create_app
from tests.api.conftest import bearer
from tests.dashboard.browser import serve

#: Examples per operation and mode: 18 operations, valid and invalid, so ~290 requests a run.
EXAMPLES = 8
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_as_documented(
    app: conveyor.Conveyor, mode: GenerationMode
) -> None:
    admin = bearer(app.client().create_token("schemathesis", ["admin"])[1])
    with serve(create_app(app, rate_limit=None)) as base:
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        sent = _run(schema, admin, mode)
    assert sent >= 140, sent


def _run(schema: Any, admin: dict[str, str], mode: GenerationMode) -> int:
    """Run every operation's examples; return how many requests were sent."""
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 18
    checks = CHECKS + ([negative_data_rejection] if mode == GenerationMode.NEGATIVE else [])
    sent = 0
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def answers_as_documented(case: Any) -> None:
            nonlocal sent
            sent += 1
            case.call_and_validate(headers=admin, checks=checks)

        answers_as_documented()
    return sent
