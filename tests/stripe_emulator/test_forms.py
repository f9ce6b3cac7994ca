"""v1 form decoding with bracket notation, and typed parameter access."""

from __future__ import annotations

import pytest

from stripe_emulator.errors import StripeError
from stripe_emulator.forms import Params, decode_form


def test_brackets_nest_and_indexes_become_lists() -> None:
    data = decode_form(
        "items[0][price]=p1&items[1][price]=p2&items[1][quantity]=3&metadata[a]=b"
        "&payload[value]=5&expand[]=x&expand[]=y&lookup_keys[0]=k"
    )
    assert data == {
        "items": [{"price": "p1"}, {"price": "p2", "quantity": "3"}],
        "metadata": {"a": "b"},
        "payload": {"value": "5"},
        "expand": ["x", "y"],
        "lookup_keys": ["k"],
    }


def test_indexes_sort_numerically() -> None:
    pairs = "&".join(f"items[{i}][price]=p{i}" for i in range(12))
    assert [i["price"] for i in decode_form(pairs)["items"]] == [f"p{i}" for i in range(12)]


def test_conflicting_scalar_and_hash_is_a_400() -> None:
    with pytest.raises(StripeError) as caught:
        decode_form("metadata=x&metadata[a]=b")
    assert caught.value.status == 400


def test_malformed_key_is_a_400() -> None:
    with pytest.raises(StripeError):
        decode_form("a]b=1")


def test_typed_access() -> None:
    p = Params(decode_form("active=true&closed=false&limit=7&name=x"))
    assert p.bool("active") is True
    assert p.bool("closed") is False
    assert p.int("limit") == 7
    assert p.str("name") == "x"
    assert p.str("missing") is None


@pytest.mark.parametrize(
    ("query", "call"),
    [
        ("active=yes", lambda p: p.bool("active")),
        ("limit=abc", lambda p: p.int("limit")),
        ("", lambda p: p.req("name")),
        ("name=" + "x" * 10, lambda p: p.str("name", max_len=5)),
        ("metadata=x", lambda p: p.dict("metadata")),
        ("items[a]=b", lambda p: p.list("items")),
    ],
)
def test_bad_values_are_400s(query: str, call: object) -> None:
    with pytest.raises(StripeError) as caught:
        call(Params(decode_form(query)))  # type: ignore[operator]
    assert caught.value.status == 400
