"""The RESP2 encoding and decoding of `dialogs.redis_pipe`, and the Redis URLs it reads."""

from __future__ import annotations

import pytest

from dialogs.redis_pipe import NoScript, RedisAddress, RedisError, Script, _Incomplete, pack, parse


def test_a_command_is_an_array_of_bulk_strings():
    assert pack(("SET", "k", "vé", 1500)) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\xc3\xa9\r\n$4\r\n1500\r\n"
    assert pack(("GET", b"\r\n")) == b"*2\r\n$3\r\nGET\r\n$2\r\n\r\n\r\n"  # binary-safe: lengths, not delimiters
    with pytest.raises(TypeError):
        pack(("SET", "k", 1.5))
    with pytest.raises(TypeError):
        pack(("SET", "k", True))


def test_replies_of_every_kind_and_where_the_next_one_starts():
    stream = b"+OK\r\n:42\r\n$-1\r\n$5\r\nhe\r\nl\r\n*3\r\n$1\r\na\r\n$-1\r\n:7\r\n*-1\r\n"
    replies, pos = [], 0
    while pos < len(stream):
        reply, pos = parse(stream, pos)
        replies.append(reply)
    assert replies == [b"OK", 42, None, b"he\r\nl", [b"a", None, 7], None]


def test_errors_are_replies_not_exceptions_at_parse_time():
    error, pos = parse(b"-ERR wrong number of arguments\r\n", 0)
    assert isinstance(error, RedisError) and not isinstance(error, NoScript) and pos == 32
    missing, _ = parse(b"-NOSCRIPT No matching script\r\n", 0)
    assert isinstance(missing, NoScript)


@pytest.mark.parametrize("partial", [b"", b"$5\r\nhel", b"$5\r\nhello", b"*2\r\n:1\r\n", b":12"])
def test_a_reply_cut_short_waits_for_more_bytes(partial):
    with pytest.raises(_Incomplete):
        parse(partial, 0)


def test_bytes_that_are_not_resp_are_refused():
    with pytest.raises(ValueError):
        parse(b"HTTP/1.1 400 Bad Request\r\n", 0)


def test_urls_in_the_forms_redis_py_accepts():
    assert RedisAddress.from_url("redis://127.0.0.1:6379/0") == RedisAddress("127.0.0.1", 6379)
    a = RedisAddress.from_url("rediss://app:p%40ss@cache.example:6380/3")
    assert (a.host, a.port, a.db, a.username, a.password, a.tls) == ("cache.example", 6380, 3, "app", "p@ss", True)
    assert a.handshake() == [("AUTH", "app", "p@ss"), ("SELECT", "3")]
    assert "p@ss" not in str(a) and str(a) == "cache.example:6380/3"
    b = RedisAddress.from_url("redis://:secret@localhost")
    assert (b.port, b.db, b.handshake()) == (6379, 0, [("AUTH", "secret")])
    u = RedisAddress.from_url("unix:///run/redis.sock?db=2&password=pw")
    assert (u.path, u.db, u.handshake()) == ("/run/redis.sock", 2, [("AUTH", "pw"), ("SELECT", "2")])
    assert RedisAddress.from_url("redis://h?db=4").db == 4


@pytest.mark.parametrize("url", ["http://localhost:6379", "redis://localhost/zero", "unix://"])
def test_urls_that_name_no_redis_are_refused(url):
    with pytest.raises(ValueError):
        RedisAddress.from_url(url)


def test_a_script_is_named_by_its_sha1():
    assert Script("return 1").sha == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
