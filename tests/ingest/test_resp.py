"""The dedupe fast path's RESP connection: parsing, pipelining, reconnects, scripts, errors."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
import uvloop
from hypothesis import given
from hypothesis import strategies as st

from meterline.dedupe import RedisDeduper
from meterline.dedupe.resp import RespConnection, RespError, encode, parse
from meterline.devstack.process import free_port

replies = st.recursive(
    st.none() | st.binary(max_size=20) | st.integers(-(2**40), 2**40),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=10,
)


def _wire(reply: object) -> bytes:
    if reply is None:
        return b"$-1\r\n"
    if isinstance(reply, bytes):
        return b"$%d\r\n%s\r\n" % (len(reply), reply)
    if isinstance(reply, int):
        return b":%d\r\n" % reply
    assert isinstance(reply, list)
    return b"*%d\r\n" % len(reply) + b"".join(_wire(r) for r in reply)


@given(replies)
def test_parse_reads_a_whole_reply_and_waits_for_a_partial_one(reply: object) -> None:
    wire = _wire(reply)
    assert parse(bytearray(wire + b"+next\r\n"), 0) == (reply, len(wire))
    for cut in range(len(wire)):
        assert parse(bytearray(wire[:cut]), 0) is None


def test_parse_simple_strings_and_errors() -> None:
    assert parse(bytearray(b"+OK\r\n"), 0) == (b"OK", 5)
    error, end = parse(bytearray(b"-NOSCRIPT No matching script\r\n"), 0)  # type: ignore[misc]
    assert isinstance(error, RespError) and str(error).startswith("NOSCRIPT") and end == 30


def test_encode_is_an_array_of_bulk_strings() -> None:
    assert encode(b"GET", b"k") == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_pipelined_calls_get_their_own_replies(redis_url: str, loop: str) -> None:
    """Also on uvloop, which ingest runs on (its transports are not asyncio.Transport)."""

    async def scenario() -> None:
        conn = RespConnection(redis_url)
        await conn.call(b"SET", b"n", b"0")
        replies = await asyncio.gather(*(conn.call(b"INCR", b"n") for _ in range(200)))
        assert sorted(replies) == list(range(1, 201))  # type: ignore[type-var]
        assert await conn.call(b"GET", b"missing") is None
        with pytest.raises(RespError):
            await conn.call(b"NOSUCHCOMMAND")
        assert await conn.call(b"PING") == b"PONG"  # still usable after an error reply
        await conn.close()

    (uvloop.run if loop == "uvloop" else asyncio.run)(scenario())


def test_a_lost_connection_fails_its_call_and_the_next_reconnects(redis_url: str) -> None:
    async def scenario() -> None:
        conn = RespConnection(redis_url)
        await conn.call(b"CLIENT", b"SETNAME", b"resp-test")
        redis.Redis.from_url(redis_url).client_kill_filter(skipme=False, _type="normal")
        with pytest.raises(ConnectionError):
            await conn.call(b"BLPOP", b"nothing", b"1")
        assert await conn.call(b"PING") == b"PONG"
        await conn.close()

    asyncio.run(scenario())


def test_scripts_survive_a_script_flush(redis_url: str) -> None:
    async def scenario() -> None:
        d = RedisDeduper(RespConnection(redis_url), f"rf{uuid.uuid4().hex[:6]}", 60)
        await d.mark(1, ["a"])
        redis.Redis.from_url(redis_url).script_flush()
        assert await d.seen(1, ["a", "b"]) == [True, False]
        await d.close()

    asyncio.run(scenario())


def test_an_unreachable_redis_is_a_connection_error() -> None:
    async def scenario() -> None:
        d = RedisDeduper(RespConnection(f"redis://127.0.0.1:{free_port()}/0"), "x", 60)
        with pytest.raises(OSError):
            await d.seen(1, ["a"])
        assert not await d.ping()

    asyncio.run(scenario())


def test_urls_select_the_database_and_refuse_other_schemes(redis_url: str) -> None:
    async def scenario() -> None:
        conn = RespConnection(redis_url.rsplit("/", 1)[0] + "/3")
        await conn.call(b"SET", b"where", b"db3")
        await conn.close()

    asyncio.run(scenario())
    assert redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/3").get("where") == b"db3"
    with pytest.raises(ValueError):
        RespConnection("http://127.0.0.1:6379")
