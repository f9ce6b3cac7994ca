"""The pure parts the clients share: event ids and the event shape."""

from __future__ import annotations

import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from meterline_sdk._core import encode, new_event, uuid7


def test_uuid7_carries_the_time_the_version_and_the_variant() -> None:
    before = time.time_ns() // 1_000_000
    ids = [uuid.UUID(uuid7()) for _ in range(10_000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    assert {(u.version, u.variant) for u in ids} == {(7, uuid.RFC_4122)}
    assert all(before <= u.int >> 80 <= after for u in ids)


def test_uuid7_random_bits_ignore_the_apps_seed_and_differ_in_a_forked_child() -> None:
    random.seed(7)
    first = uuid7()
    random.seed(7)
    assert uuid7()[19:] != first[19:]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, uuid7().encode())
        os._exit(0)
    mine = uuid7()
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert uuid.UUID(child).version == 7 and child[19:] != mine[19:]


def test_the_timestamp_is_fixed_at_record_time_in_epoch_milliseconds() -> None:
    at = datetime(2026, 11, 21, 10, 15, tzinfo=timezone(timedelta(hours=2)))
    event = new_event("c", "m", 2, "e1", at, {"k": "v"})
    assert event == {
        "id": "e1",
        "customer": "c",
        "meter": "m",
        "value": 2,
        "timestamp": int(datetime(2026, 11, 21, 8, 15, tzinfo=UTC).timestamp() * 1000),
        "properties": {"k": "v"},
    }
    assert new_event("c", "m", 1, None, 5, None)["timestamp"] == 5
    with pytest.raises(ValueError, match="time zone"):
        new_event("c", "m", 1, None, datetime(2026, 1, 1), None)


def test_a_decimal_value_is_sent_as_its_exact_digits() -> None:
    event = new_event("c", "m", Decimal("0.1"), "e1", 1, None)
    big = new_event("c", "m", Decimal("123456789012345.6"), "e2", 1, None)
    assert encode([event, big]).count(b'"value":0.1,') == 1
    assert b'"value":123456789012345.6,' in encode([big])
