"""Schemathesis against the served OpenAPI document: generated requests to every operation
get no 5xx, and every response matches the schema the document declares for it."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.integration

CHECKS = (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
)


def test_generated_requests_get_no_5xx_and_match_the_schema(server, keys) -> None:  # noqa: ANN001
    """Every operation, 30 generated cases each (derandomized: the same cases every run).
    schemathesis's pytest plugin does not load under this pytest, so each operation's
    strategy is driven by hypothesis directly."""
    headers = {"x-api-key": keys["alice"]}
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=30,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:  # noqa: ANN001
            case.call_and_validate(headers=headers, timeout=30, checks=CHECKS)

        check()
