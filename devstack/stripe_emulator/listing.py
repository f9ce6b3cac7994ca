"""List and search envelopes with Stripe's cursor pagination.

Lists answer newest first (the reverse of creation order) unless the caller passes items in
another order. `starting_after` and `ending_before` name an object id in the list; an unknown
cursor is a 400, as in Stripe.

Lists are `{"object": "list", "data", "has_more", "url"}` with `limit` (1-100),
`starting_after` and `ending_before`, so the SDK's auto-pagination works. Search understands
only `field:'value'` and `metadata['key']:'value'` clauses joined by `AND`, and returns a single
page (no `page` pagination).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from .errors import invalid
from .forms import Params

JSON = dict[str, Any]

_CLAUSE = re.compile(
    r"^\s*(?:metadata\[['\"](?P<mkey>[^'\"]+)['\"]\]|(?P<field>[a-z_]+))\s*:\s*"
    r"['\"](?P<value>[^'\"]*)['\"]\s*$"
)


def page_limit(params: Params) -> int:
    """The `limit` parameter: 1..100, default 10."""
    limit = params.int("limit", 10)
    assert limit is not None
    if not 1 <= limit <= 100:
        raise invalid("limit must be between 1 and 100", param="limit")
    return limit


def paginate(items: list[JSON], params: Params, url: str) -> JSON:
    """Cut one page from `items` (already filtered and ordered) as a list envelope."""
    limit = page_limit(params)
    after = params.str("starting_after")
    before = params.str("ending_before")
    ids = [item["id"] for item in items]
    if after is not None:
        start = _cursor(ids, after, "starting_after") + 1
        chosen = items[start : start + limit]
        has_more = start + limit < len(items)
    elif before is not None:
        end = _cursor(ids, before, "ending_before")
        chosen = items[max(0, end - limit) : end]
        has_more = end - limit > 0
    else:
        chosen = items[:limit]
        has_more = len(items) > limit
    return {"object": "list", "data": chosen, "has_more": has_more, "url": url}


def _cursor(ids: list[str], cursor: str, param: str) -> int:
    try:
        return ids.index(cursor)
    except ValueError:
        raise invalid(f"No such object: '{cursor}'", param=param) from None


def newest_first(objects: Iterable[JSON]) -> list[JSON]:
    """Objects in reverse creation order."""
    return list(reversed(list(objects)))


def created_filter(params: Params) -> Callable[[JSON], bool]:
    """A predicate for `created` given as an integer or `created[gt|gte|lt|lte]`."""
    exact = params.data.get("created")
    if isinstance(exact, str):
        value = params.int("created")
        return lambda obj: obj.get("created") == value
    bounds = params.sub("created")
    checks = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    limits = {op: bounds.int(op) for op in checks if op in bounds}
    return lambda obj: all(checks[op](obj.get("created", 0), v) for op, v in limits.items())


def parse_search(query: str) -> list[tuple[str | None, str, str]]:
    """Parse a search query of `field:'v'` and `metadata['k']:'v'` clauses joined by AND.

    Returns (metadata key or None, field, value) triples; anything richer is a 400 because
    the emulator supports only exact matches.
    """
    clauses = re.split(r"\s+AND\s+", query.strip()) if query.strip() else []
    parsed: list[tuple[str | None, str, str]] = []
    for clause in clauses:
        match = _CLAUSE.match(clause)
        if match is None:
            raise invalid(f"Unsupported search clause: {clause}", param="query")
        parsed.append((match.group("mkey"), match.group("field") or "", match.group("value")))
    return parsed


def matches_search(obj: JSON, clauses: list[tuple[str | None, str, str]]) -> bool:
    """True when `obj` satisfies every parsed clause."""
    for meta_key, field_name, value in clauses:
        if meta_key is not None:
            actual = (obj.get("metadata") or {}).get(meta_key)
        else:
            actual = obj.get(field_name)
        if isinstance(actual, bool):
            actual = str(actual).lower()
        if actual != value:
            return False
    return True


def search_result(items: list[JSON], params: Params, url: str) -> JSON:
    """A `search_result` envelope (pagination by `page` is not emulated: one page)."""
    limit = page_limit(params)
    return {
        "object": "search_result",
        "data": items[:limit],
        "has_more": len(items) > limit,
        "next_page": None,
        "url": url,
        "total_count": len(items),
    }
