"""Fixtures: the ingest app assembled on this test's Postgres, Redis and topics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ingest.app import create_server
from ingest.service import Sections, build
from ingest.settings import IngestSettings
from meterline.settings import DatabaseSettings, KafkaSettings, RedisSettings
from tests.fixtures.services import Topics
from tests.ingest.support import Seeded, seed

AppFactory = Callable[..., TestClient]


@pytest.fixture
def seeded(pg_conninfo: str) -> Seeded:
    return seed(pg_conninfo)


@pytest.fixture
def sections(
    pg_conninfo: str, redis_url: str, kafka_bootstrap: str, kafka_topics: Topics
) -> Callable[..., Sections]:
    def make(bootstrap: str | None = None, **ingest: Any) -> Sections:
        return Sections(
            IngestSettings(**ingest),
            KafkaSettings(bootstrap=bootstrap or kafka_bootstrap, topic=kafka_topics.usage),
            DatabaseSettings(url=pg_conninfo),
            RedisSettings(url=redis_url),
        )

    return make


@pytest.fixture
def make_client(sections: Callable[..., Sections]) -> Iterator[AppFactory]:
    """`make_client(**ingest_settings)`: a TestClient on a fully built app (closed after)."""
    clients: list[TestClient] = []

    def make(bootstrap: str | None = None, **ingest: Any) -> TestClient:
        client = TestClient(create_server(build(sections(bootstrap, **ingest))))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: AppFactory, seeded: Seeded) -> TestClient:
    return make_client()
