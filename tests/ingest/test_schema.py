"""Schemathesis against the running ingest process: no generated input gets a 5xx.

Runs with a valid `ingest` key so generated bodies reach validation, and a few examples per
operation and media type to stay within seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.ingest.support import ingest_process, seed


@schemathesis.serializer("application/x-ndjson")
def _ndjson(_ctx: Any, value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    return b"\n".join(orjson.dumps(v) for v in (value if isinstance(value, list) else [value]))


schemathesis.serializer.alias("application/cloudevents+json", "application/json")
schemathesis.serializer.alias("application/cloudevents-batch+json", "application/json")


@pytest.fixture
def ingest_schema(service_env: dict[str, str], pg_conninfo: str, tmp_path: Path) -> Iterator[Any]:
    keys = seed(pg_conninfo)
    proc, url = ingest_process(service_env, tmp_path, produce_timeout_s="3")
    proc.start()
    try:
        schema = schemathesis.openapi.from_url(url + "/openapi.json")
        schema.config.headers = {"Authorization": f"Bearer {keys.acme_ingest}"}
        yield schema
    finally:
        proc.stop()


def test_no_server_errors(ingest_schema: Any) -> None:
    """Each operation (and each request media type) with generated inputs: always below 500.

    (Driven by Hypothesis directly: schemathesis' pytest plugin does not load on pytest 9.)
    """
    statuses: dict[str, set[int]] = {}
    for result in ingest_schema.get_all_operations():
        operation = result.ok()
        statuses[operation.label] = set()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: Any) -> None:
            response = case.call()
            statuses[case.operation.label].add(response.status_code)
            assert response.status_code < 500, (response.status_code, response.text[:500])

        check()
    assert {202, 422} <= statuses["POST /v1/events"], statuses
