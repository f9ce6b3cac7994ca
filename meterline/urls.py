"""Service URLs made safe to print."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_PASSWORD_PARAM = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


def redact(url: str) -> str:
    """`url` with every password replaced by `***`, for messages and logs: the userinfo one
    (including the password-only form Redis uses, `redis://:secret@host`) and a `password=`
    parameter (a query string, or a libpq `key=value` string)."""
    url = _PASSWORD_PARAM.sub(r"\1***", url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
