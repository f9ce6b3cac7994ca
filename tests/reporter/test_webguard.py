"""The /finance request checks on plain requests: origins, form limits, TLS detection."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from meterline.errors import Forbidden, PayloadTooLarge, ValidationFailed
from reporter.webguard import check_origin, is_tls, read_form

NEVER = b"read past the limit"


def _request(
    headers: dict[str, str], chunks: tuple[bytes, ...] = (), scheme: str = "http"
) -> Request:
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    messages.append({"type": "http.request", "body": b"", "more_body": False})

    async def receive() -> dict[str, object]:
        message = messages.pop(0)
        assert message["body"] != NEVER, "the form was read past its limit"
        return message

    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "method": "POST", "path": "/finance/login", "headers": raw}
    return Request({**scope, "scheme": scheme, "query_string": b""}, receive)


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "reporter.local:8003"},
        {"Host": "reporter.local:8003", "Origin": "http://reporter.local:8003"},
        {"Host": "REPORTER.local:8003", "Origin": "https://reporter.LOCAL:8003"},
        {"Host": "reporter.local:8003", "Referer": "http://reporter.local:8003/finance"},
        {"Host": "10.0.0.7:8003", "Origin": "https://finance.example.com"},
    ],
)
def test_our_own_origins_pass(headers):
    check_origin(_request(headers), "https://finance.example.com")


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "reporter.local:8003", "Origin": "http://reporter.local:8004"},
        {"Host": "reporter.local:8003", "Origin": "http://evil.reporter.local:8003"},
        {"Host": "reporter.local:8003", "Origin": "null"},
        {"Host": "reporter.local:8003", "Referer": "http://evil.example/reporter.local:8003"},
        {"Host": "reporter.local:8003", "Referer": "not a url"},
        {"Origin": "http://reporter.local:8003"},
    ],
)
def test_foreign_origins_are_refused(headers):
    with pytest.raises(Forbidden):
        check_origin(_request(headers), "")


def test_a_form_past_its_declared_limit_is_refused_before_reading():
    request = _request({"Content-Length": str(10**9)}, (NEVER,))
    with pytest.raises(PayloadTooLarge):
        asyncio.run(read_form(request, 4096))


def test_a_chunked_form_is_refused_once_it_passes_the_limit():
    request = _request({}, (b"a" * 3000, b"b" * 3000, NEVER))
    with pytest.raises(PayloadTooLarge):
        asyncio.run(read_form(request, 4096))


def test_a_form_within_its_limit_yields_first_values():
    request = _request({}, (b"csrf=t%C3%A9&next=/finance", b"&csrf=second&empty="))
    assert asyncio.run(read_form(request, 4096)) == {"csrf": "té", "next": "/finance", "empty": ""}
    many = "&".join(f"f{i}=x" for i in range(40)).encode()
    with pytest.raises(ValidationFailed):
        asyncio.run(read_form(_request({}, (many,)), 4096))


def test_tls_is_the_scheme_or_what_the_proxy_says():
    host = {"Host": "reporter.local"}
    assert is_tls(_request(host, scheme="https"))
    assert is_tls(_request({**host, "X-Forwarded-Proto": "https, http"}))
    assert not is_tls(_request({**host, "X-Forwarded-Proto": "http"}))
    assert not is_tls(_request(host))
