"""The `CatalogRepository` contract, run here against the in-memory repository.

`CatalogRepositoryContract` is reused by tests/integration/test_catalog_repository_pg.py; a
backend's test class provides the `repository` and `tenants` fixtures.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from meterline.catalog import (
    Aggregation,
    Catalog,
    CatalogError,
    CatalogRepository,
    MemoryCatalogRepository,
    Meter,
    Plan,
    load_catalog,
)

T = TypeVar("T")
EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "catalog.example.yaml"


def example() -> Catalog:
    return load_catalog(EXAMPLE)


def variant(n: int) -> Catalog:
    """A valid catalog distinct for every `n`."""
    return Catalog(
        meters=(Meter(f"m{n}", Aggregation.SUM),),
        plans=(Plan("free", default=True),),
    )


def run_concurrently(work: Sequence[Callable[[], T]]) -> list[T]:
    """Runs every callable on its own thread, released together; re-raises the first failure."""
    barrier = threading.Barrier(len(work))
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work[index]()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    return [results[i] for i in range(len(work))]


class CatalogRepositoryContract:
    """Behaviour every `CatalogRepository` must have. `tenants` gives two existing tenant ids."""

    def test_no_catalog_before_the_first_apply(
        self, repository: CatalogRepository, tenants: tuple[int, int]
    ) -> None:
        assert repository.current(tenants[0]) is None
        assert repository.version(tenants[0], 1) is None

    def test_first_apply_is_version_one(
        self, repository: CatalogRepository, tenants: tuple[int, int]
    ) -> None:
        version, diff = repository.apply(tenants[0], example())
        assert version == 1 and diff.created and "+ plan power" in diff.lines()
        assert repository.current(tenants[0]) == (1, example())

    def test_applying_the_same_catalog_stores_nothing(
        self, repository: CatalogRepository, tenants: tuple[int, int]
    ) -> None:
        repository.apply(tenants[0], example())
        version, diff = repository.apply(tenants[0], example())
        assert version == 1 and diff.is_empty
        assert repository.version(tenants[0], 2) is None

    def test_reordering_entries_stores_nothing(
        self, repository: CatalogRepository, tenants: tuple[int, int]
    ) -> None:
        catalog = example()
        repository.apply(tenants[0], catalog)
        reordered = dataclasses.replace(catalog, plans=catalog.plans[::-1])
        version, diff = repository.apply(tenants[0], reordered)
        assert (version, diff.is_empty) == (1, True)

    def test_a_change_is_the_next_version_and_old_ones_stay(
        self, repository: CatalogRepository, tenants: tuple[int, int]
    ) -> None:
        repository.apply(tenants[0], example())
        version, diff = repository.apply(tenants[0], variant(1))
        assert version == 2 and not diff.created
        assert {"- meter tokens", "+ meter m1", "- plan power"} <= set(diff.lines())
        assert repository.current(tenants[0]) == (2, variant(1))
        assert repository.version(tenants[0], 1) == example()
        assert repository.version(tenants[0], 2) == variant(1)
        assert repository.version(tenants[0], 3) is None
        assert repository.version(tenants[0], 0) is None

    def test_an_empty_catalog_can_be_applied(
        self, repository: CatalogRepository, tenants: tuple[int, int]
    ) -> None:
        assert repository.apply(tenants[0], Catalog())[0] == 1
        assert repository.current(tenants[0]) == (1, Catalog())

    def test_tenants_are_isolated(
        self, repository: CatalogRepository, tenants: tuple[int, int]
    ) -> None:
        first, second = tenants
        repository.apply(first, example())
        repository.apply(first, variant(1))
        assert repository.current(second) is None
        assert repository.apply(second, variant(1))[0] == 1
        assert repository.current(first) == (2, variant(1))

    def test_an_invalid_catalog_is_refused_and_nothing_stored(
        self, repository: CatalogRepository, tenants: tuple[int, int]
    ) -> None:
        broken = Catalog(meters=(Meter("Bad Key", Aggregation.SUM),))
        with pytest.raises(CatalogError) as caught:
            repository.apply(tenants[0], broken)
        assert caught.value.paths == ["meters[0].key"]
        assert repository.current(tenants[0]) is None

    def test_concurrent_applies_of_one_catalog_store_one_version(
        self, repository: CatalogRepository, tenants: tuple[int, int]
    ) -> None:
        results = run_concurrently([lambda: repository.apply(tenants[0], example())] * 8)
        versions = [r[0] for r in results]
        created = [r[1].created for r in results]
        assert versions == [1] * 8 and created.count(True) == 1
        assert repository.version(tenants[0], 2) is None

    def test_concurrent_applies_of_different_catalogs_lose_none(
        self, repository: CatalogRepository, tenants: tuple[int, int]
    ) -> None:
        work = [lambda n=n: repository.apply(tenants[0], variant(n)) for n in range(8)]
        results = run_concurrently(work)
        assert sorted(r[0] for r in results) == list(range(1, 9))
        stored = [repository.version(tenants[0], v) for v in range(1, 9)]
        assert sorted(c.meters[0].key for c in stored if c) == [f"m{n}" for n in range(8)]


class TestMemoryCatalogRepository(CatalogRepositoryContract):
    @pytest.fixture
    def repository(self) -> CatalogRepository:
        return MemoryCatalogRepository()

    @pytest.fixture
    def tenants(self) -> tuple[int, int]:
        return 1, 2
