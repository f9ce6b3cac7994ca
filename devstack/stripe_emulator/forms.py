"""v1 form decoding (bracket notation) and typed parameter access.

`decode_pairs([("items[0][price]", "p"), ("metadata[a]", "b"), ("expand[]", "x")])` gives
`{"items": [{"price": "p"}], "metadata": {"a": "b"}, "expand": ["x"]}`. Values stay strings;
`Params` converts them on access and raises a 400 naming the parameter when they do not fit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from .errors import StripeError, invalid, missing_param

Text = str
Integer = int
Flag = bool
Mapping = dict
Array = list

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


def decode_form(body: str) -> dict[str, Any]:
    """Decode an `application/x-www-form-urlencoded` v1 body or query string."""
    return decode_pairs(parse_qsl(body, keep_blank_values=True))


def decode_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Build nested dicts from bracketed keys; dicts keyed 0..n become lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        path = _split_key(key)
        _assign(root, path, value)
    decoded: dict[str, Any] = _listify(root)
    return decoded


def _split_key(key: str) -> list[str]:
    match = _KEY.match(key)
    if match is None:
        raise invalid(f"Invalid parameter name: {key}", param=key)
    return [match.group(1), *_PART.findall(match.group(2))]


def _assign(node: dict[str, Any], path: list[str], value: str) -> None:
    for part in path[:-1]:
        child = node.setdefault(str(len(node)) if part == "" else part, {})
        if not isinstance(child, dict):
            raise invalid(f"Conflicting values for {part}", param=part)
        node = child
    last = path[-1]
    key = str(len(node)) if last == "" else last
    if isinstance(node.get(key), dict):
        raise invalid(f"Conflicting values for {last}", param=last)
    node[key] = value


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {key: _listify(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


class Params:
    """Typed, validating access to decoded request parameters."""

    def __init__(self, data: Mapping[Text, Any]) -> None:
        self.data = data

    def __contains__(self, name: Text) -> Flag:
        return name in self.data

    def str(self, name: Text, *, required: Flag = False, max_len: Integer = 5000) -> Text | None:
        """A string parameter; 400 when required and absent, or longer than `max_len`."""
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                raise missing_param(name)
            return None
        if not isinstance(value, str):
            raise invalid(f"Invalid string: {name}", param=name)
        if len(value) > max_len:
            raise invalid(f"{name} must be at most {max_len} characters", param=name)
        return value

    def req(self, name: Text, max_len: Integer = 5000) -> Text:
        """A required string parameter."""
        value = self.str(name, required=True, max_len=max_len)
        assert value is not None
        return value

    def int(self, name: Text, default: Integer | None = None) -> Integer | None:
        """An integer parameter (ints arrive as strings in forms, as numbers in JSON)."""
        value = self.data.get(name)
        if value is None or value == "":
            return default
        try:
            return _to_int(value)
        except (TypeError, ValueError):
            raise invalid(f"Invalid integer: {value}", param=name) from None

    def bool(self, name: Text, default: Flag | None = None) -> Flag | None:
        """A boolean parameter: `true`/`false` strings or JSON booleans."""
        value = self.data.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return bool(value == "true")
        raise invalid(f"Invalid boolean: {value}", param=name)

    def dict(self, name: Text) -> Mapping[Text, Any]:
        """A nested hash parameter (empty when absent)."""
        value = self.data.get(name)
        if value is None or value == "":
            return {}
        if not isinstance(value, dict):
            raise invalid(f"Invalid hash: {name}", param=name)
        return value

    def list(self, name: Text) -> Array[Any]:
        """An array parameter; a single value counts as a one-element array."""
        value = self.data.get(name)
        if value is None or value == "":
            return []
        if isinstance(value, list):
            return value
        if isinstance(value, dict):
            raise invalid(f"Invalid array: {name}", param=name)
        return [value]

    def sub(self, name: Text) -> Params:
        """The nested hash `name` as its own `Params`."""
        return Params(self.dict(name))


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("boolean is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    raise ValueError(value)


def string_map(value: Any, param: str) -> dict[str, str]:
    """Validate a metadata-like hash of strings (an empty string deletes a key upstream)."""
    if value in (None, ""):
        return {}
    if isinstance(value, list):
        value = {str(index): item for index, item in enumerate(value)}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise StripeError(400, f"Invalid hash: {param}", param=param, code="parameter_invalid")
    return dict(value)
