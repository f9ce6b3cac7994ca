"""Schemathesis against the OpenAPI documents of the entitlements API and the reporter: every
operation, positive and negative cases, against a live server on real Postgres, Redis and the
Stripe emulator, with a key holding every scope. No answer may be a 5xx.

The example count is modest for `make test` (`METERLINE_FUZZ_EXAMPLES`, default 15 per
operation and mode); raise it for a longer hunt.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from meterline.tenants import PostgresTenantRepository
from reporter.api import create_app
from tests.entitlements.conftest import Api, ServerThread
from tests.reporter.support import emulator_clock, make_world, reporter_for

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("METERLINE_FUZZ_EXAMPLES", "15"))


def server_errors(url: str, key: str) -> list[str]:
    """Every case of every operation in the served document that answered >= 500."""
    doc = httpx.get(url + "/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(doc)
    found: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len(item) for item in doc["paths"].values())
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(
                generation_mode=mode, headers={"Authorization": f"Bearer {key}"}
            )
            try:
                _run(strategy, url, found)
            except Unsatisfiable:  # an operation without inputs has no negative case
                assert mode is GenerationMode.NEGATIVE, operation.label
    return found


def _run(strategy: Any, url: str, found: list[str]) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def call(case: Any) -> None:
        answer = case.call(base_url=url, timeout=30)
        if answer.status_code >= 500:
            found.append(f"{answer.status_code} {case.as_curl_command()}")

    call()


def test_entitlements_never_answers_5xx(api: Api) -> None:
    _, key = api.deps.tenants.create_key("acme", ["read", "ingest", "admin"])
    errors = server_errors(api.url, key)
    assert not errors, "\n".join(errors[:20])


@pytest.fixture
def reporter_url(pg_conninfo: str, stripe_emulator: Any, stripe_client: Any) -> Iterator[Any]:
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    reporter = reporter_for(world, stripe_client, emulator_clock(stripe_emulator.control))
    _, key = PostgresTenantRepository(world.pool).create_key("acme", ["read", "admin"])
    with ServerThread(create_app(reporter)) as url:
        yield url, key


def test_reporter_never_answers_5xx(reporter_url: Any) -> None:
    url, key = reporter_url
    errors = server_errors(url, key)
    assert not errors, "\n".join(errors[:20])
