"""schemathesis against a running `cloudherd serve`'s /openapi.json: generated requests (bounded) to every
route, with a token: never a 5xx; without one: every mutating route answers 401."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_harness import Served, serving

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
EXAMPLES = 6  # per route: bounded, so that CI stays quick


@pytest.fixture
def served(home: Path, tmp_path: Path) -> Iterator[Served]:
    with serving(home, tmp_path, interval=3600) as running:
        yield running


def operations(served: Served) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.scenario
def test_no_generated_request_makes_a_server_error(served: Served) -> None:
    headers = {"Authorization": f"Bearer {served.token()}"}
    ops = operations(served)
    assert len(ops) >= 20
    for operation in ops:
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def exercise(case: Any) -> None:
            response = case.call(base_url=served.url, headers=headers, timeout=30)
            case.validate_response(response, checks=[not_a_server_error])

        exercise()


def test_every_mutating_route_refuses_without_a_token(served: Served) -> None:
    mutating = [op for op in operations(served) if op.method.upper() in MUTATING]
    assert len(mutating) >= 10
    for operation in mutating:
        @settings(max_examples=3, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def refused(case: Any) -> None:
            case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
            response = case.call(base_url=served.url, timeout=30)
            assert response.status_code == 401, (case.method, case.path, response.status_code)

        refused()
