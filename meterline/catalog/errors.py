"""The one error a catalog that breaks any rule raises."""

from __future__ import annotations

from collections.abc import Iterable

from meterline.errors import FieldError, ValidationFailed


class CatalogError(ValidationFailed):
    """A catalog broke one or more rules; `errors` lists every problem, each with its path.

    Paths read like `plans[1].features.api_calls.reset`; `str()` gives one problem per line.
    """

    code = "invalid_catalog"

    def __init__(self, errors: Iterable[FieldError]) -> None:
        super().__init__(list(errors))
        self.message = f"invalid catalog: {len(self.errors)} problem(s)"

    def __str__(self) -> str:
        return "\n".join([self.message, *(f"  {e.field}: {e.message}" for e in self.errors)])

    @property
    def paths(self) -> list[str]:
        return [e.field for e in self.errors]
