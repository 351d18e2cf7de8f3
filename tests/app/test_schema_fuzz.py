"""Schemathesis over the app's own /openapi.json: for every operation, schema-valid and schema-
breaking requests as a researcher and as an annotator; none may get a server error (5xx).

Bounded for the suite (EXAMPLES per operation, mode and role, derandomized so a failure repeats);
a longer run: T2IF_FUZZ_EXAMPLES=200 pytest tests/app/test_schema_fuzz.py."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.annotation.conftest import make_pool
from tests.conftest import bearer

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("T2IF_FUZZ_EXAMPLES", "8"))


def test_no_operation_answers_a_server_error(app, client, researcher, make_user):
    make_pool(client, researcher, n_images=3, prompts=["Two dogs", "A red cup"])
    annotator = make_user("annotator")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    calls = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    def fuzz(operation, mode, who) -> None:
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case):
            nonlocal calls
            calls += 1
            response = case.call(headers=bearer(who))
            if response.status_code >= 500:
                failures.append(f"{operation.label} as {who.role} ({mode.value}): {response.status_code} "
                                f"{case.path_parameters} {case.query} {str(case.body)[:200]} -> {response.text[:200]}")

        try:
            run()
        except Unsatisfiable:  # nothing in it can be made invalid (an operation without parameters)
            assert mode is GenerationMode.NEGATIVE, operation.label

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for who in (researcher, annotator):
                fuzz(operation, mode, who)
    assert calls > len(operations) * 4
    assert failures == [], "\n".join(failures[:20])
