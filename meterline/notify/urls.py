"""Endpoint URLs: http or https only, and no internal addresses unless allowed (SSRF care).

`check_url` runs when an endpoint is created or changed: scheme, host, no credentials in the
URL, and an IP-literal or `localhost` host must be public. `check_resolved` runs before every
attempt: every address the host resolves to must be public, so a name that points inside the
network (or is re-pointed later) is refused then. A name could still change between that look-up
and the connection; deployments that need more put an egress proxy in front (the spec suggests
stripe/smokescreen).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from meterline.errors import FieldError, ValidationFailed

MAX_URL = 2048


class RefusedAddress(Exception):
    """The endpoint's host resolves to an address webhooks may not reach."""


def check_url(url: str, allow_private: bool, field: str = "url") -> str:
    """The URL, or ValidationFailed naming `field` with what is wrong."""
    problem = url_problem(url, allow_private)
    if problem:
        raise ValidationFailed([FieldError(field, problem)])
    return url


def url_problem(url: str, allow_private: bool) -> str | None:
    if len(url) > MAX_URL:
        return f"at most {MAX_URL} characters"
    if any(c <= " " or c == "\x7f" for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not host:
        return "must name a host"
    if parts.username or parts.password:
        return "must not carry credentials"
    if not allow_private and not _public_literal(host):
        return "must not point at a loopback, private or link-local address"
    return None


def _public_literal(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return is_public(ipaddress.ip_address(host))
    except ValueError:
        return True  # a name: checked when it is resolved, before each attempt


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check_resolved(url: str, allow_private: bool) -> None:
    """Raise RefusedAddress if the host resolves to a non-public address (or not at all)."""
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise RefusedAddress(f"cannot resolve {host}: {exc}") from None
    for info in infos:
        if not is_public(ipaddress.ip_address(info[4][0])):
            raise RefusedAddress(f"{host} resolves to a non-public address")
