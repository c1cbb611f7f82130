"""The memcached key contract (logpipe.keys): valid keys for any value, no collisions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from logpipe.keys import MAX_KEY_BYTES, counter_key, encode_value, index_key, index_keys, normalize_path

DAY = "2026-11-21"


def _valid_memcached_key(key: str) -> bool:
    raw = key.encode("ascii")
    return 0 < len(raw) <= MAX_KEY_BYTES and all(0x21 <= b <= 0x7E for b in raw)


def test_plain_key_layout():
    assert counter_key(DAY, "url", "/blog/1") == "logpipe:2026-11-21:url:/blog/1"
    assert counter_key(DAY, "url", "/x", site="example.com") == "logpipe:2026-11-21:url@example.com:/x"
    assert counter_key(DAY, "browser", "Chrome", prefix="site1") == "site1:2026-11-21:browser:Chrome"


@pytest.mark.parametrize("value", [
    "/a b", "/caf\u00e9", "/x\r\nset k 0 0 1", "", "/" + "a" * 8192, "/\x00", "/#frag", "/tab\there",
    "/\udcff", "Mozilla/5.0 (X11; Linux)",
])
def test_unusual_values_become_digests(value):
    key = counter_key(DAY, "url", value)
    assert _valid_memcached_key(key)
    assert key.split(":", 3)[3].startswith("#") and len(key.split(":", 3)[3]) == 41


def test_long_value_is_digested_only_when_it_does_not_fit():
    head = len("logpipe:2026-11-21:url:")
    fits = "/" + "a" * (MAX_KEY_BYTES - head - 1)
    assert counter_key(DAY, "url", fits).endswith(fits)
    assert len(counter_key(DAY, "url", fits)) == MAX_KEY_BYTES
    assert counter_key(DAY, "url", fits + "b").split(":")[-1].startswith("#")


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=400), st.text(max_size=400))
def test_any_values_give_valid_keys_and_distinct_values_distinct_keys(a, b):
    ka, kb = counter_key(DAY, "url", a), counter_key(DAY, "url", b)
    assert _valid_memcached_key(ka) and _valid_memcached_key(kb)
    if a != b:
        assert ka != kb


def test_verbatim_value_never_looks_like_a_digest():
    assert encode_value("#" + "0" * 40) != "#" + "0" * 40


def test_bad_prefix_or_dimension_rejected():
    with pytest.raises(ValueError):
        counter_key(DAY, "url", "/", prefix="has space")
    with pytest.raises(ValueError):
        counter_key(DAY, "u:rl", "/")


def test_index_key_is_one_of_the_shards():
    assert index_key(DAY, "url", "/x") in index_keys(DAY, "url")
    assert all(_valid_memcached_key(k) for k in index_keys(DAY, "url", site="a.example"))


@pytest.mark.parametrize("given_path, expected", [
    ("/blog/1/", "/blog/1"),
    ("/blog/1", "/blog/1"),
    ("/", "/"),
    ("//", "/"),
    ("/caf\u00e9/", "/caf%C3%A9"),          # decoded by a framework
    ("/caf%c3%a9/", "/caf%C3%A9"),          # as the client sent it
    (b"/caf\xc3\xa9", "/caf%C3%A9"),        # raw bytes from the log (\xhh undone)
    ("/%7Euser/%41", "/~user/A"),           # unreserved characters decoded (RFC 3986 6.2.2.2)
    ("/a%2Fb", "/a%2Fb"),                   # reserved ones kept
    ("/a b", "/a%20b"),
])
def test_normalize_path(given_path, expected):
    assert normalize_path(given_path) == expected


def test_normalize_path_keeps_slash_when_asked():
    assert normalize_path("/blog/1/", fold_trailing_slash=False) == "/blog/1/"
