"""logpipe.daemon.pipeline.Pipeline alone: lines in, exact memcached keys and counts out.

No server: the pipeline does no I/O.  Keys are built with the public
:func:`logpipe.keys.counter_key` (the contract apps read), so a change in what the
pipeline counts, or in how it spells keys, fails here.
"""

from __future__ import annotations

from logpipe.config import Settings
from logpipe.daemon.pipeline import RAW_LIMIT, Pipeline
from logpipe.keys import counter_key

FIREFOX = b"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
GOOGLEBOT = b"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def line(ip: str, when: str, request: str, status: int, referer: str = "-",
         agent: bytes = FIREFOX) -> bytes:
    return (f'{ip} - - [{when} +0000] "{request}" {status} 5 "{referer}" "'.encode()
            + agent + b'"\n')


def keys(pipeline: Pipeline) -> dict[str, int]:
    counts, _appends = pipeline.to_keys(pipeline.take())
    return counts


def test_page_views_bots_and_rejects_give_exact_keys():
    pipeline = Pipeline(Settings())
    data = b"".join([
        line("10.0.0.1", "21/Nov/2026:10:00:00", "GET /blog/1/ HTTP/1.1", 200,
             referer="https://www.google.com/search?q=hello+world"),
        line("10.0.0.2", "21/Nov/2026:10:00:01", "GET /blog/1/ HTTP/1.1", 200, agent=GOOGLEBOT),
        line("10.0.0.3", "21/Nov/2026:10:00:02", "GET /blog/1/?x=1 HTTP/1.1", 200),
        line("10.0.0.3", "21/Nov/2026:23:59:59", "GET /style.css HTTP/1.1", 200),
        line("10.0.0.4", "22/Nov/2026:00:00:01", "GET /missing HTTP/1.1", 404),
        b"garbage\n",
    ])
    rejected = pipeline.feed(data)
    assert rejected == [("format", b"garbage")]
    day, next_day = "2026-11-21", "2026-11-22"
    assert keys(pipeline) == {
        counter_key(day, "url", "/blog/1"): 2,  # the query string and the trailing slash fold
        counter_key(day, "browser", "Firefox"): 2,
        counter_key(day, "platform", "Linux"): 2,
        counter_key(day, "referrer", "https://www.google.com/search"): 1,
        counter_key(day, "referrer_host", "www.google.com"): 1,
        counter_key(day, "keyword", "hello world"): 1,
        counter_key(day, "bot", "Googlebot"): 1,
        counter_key(day, "bot_category", "search"): 1,
        counter_key(day, "status", "200"): 4,
        counter_key(day, "visitors", "*"): 2,  # two (address, User-Agent) pairs viewed pages
        counter_key(day, "visitors", "/blog/1"): 2,
        counter_key(next_day, "status", "404"): 1,
        counter_key(next_day, "notfound", "/missing"): 1,
    }
    assert pipeline.lines == 6
    assert pipeline.rejected_counts() == {"format": 1}
    assert pipeline.classifier.stats["page view"] == 2
    assert pipeline.take() == {}, "take() hands each increment out once"


def test_counts_add_up_across_feeds_and_pieces_of_one_buffer():
    one = line("10.0.0.1", "21/Nov/2026:10:00:00", "GET /a HTTP/1.1", 200)
    two = line("10.0.0.1", "21/Nov/2026:10:00:00", "GET /b HTTP/1.1", 200)
    pipeline = Pipeline(Settings(dimensions="url"))
    buffer = b"junk-before" + one * 3 + two * 2 + b"junk-after"
    start = len(b"junk-before")
    middle = start + 2 * len(one)
    pipeline.feed(buffer, start, middle)  # a range of a larger buffer, no copy
    pipeline.feed(buffer, middle, len(buffer) - len(b"junk-after"))
    assert keys(pipeline) == {counter_key("2026-11-21", "url", "/a"): 3,
                              counter_key("2026-11-21", "url", "/b"): 2}
    assert pipeline.lines == 5


def test_post_ip_counts_posts_per_client_and_hour():
    pipeline = Pipeline(Settings(dimensions="post_ip"))
    pipeline.feed(b"".join([
        line("10.0.0.9", "21/Nov/2026:10:00:00", "POST /login HTTP/1.1", 302),
        line("10.0.0.9", "21/Nov/2026:10:59:59", "POST /login HTTP/1.1", 302),
        line("10.0.0.9", "21/Nov/2026:11:00:00", "POST /login HTTP/1.1", 302),
        line("10.0.0.8", "21/Nov/2026:10:00:00", "GET /login HTTP/1.1", 200),
    ]))
    assert keys(pipeline) == {counter_key("2026-11-21T10", "post_ip", "10.0.0.9"): 2,
                              counter_key("2026-11-21T11", "post_ip", "10.0.0.9"): 1}


def test_index_appends_a_value_once_until_forgotten():
    pipeline = Pipeline(Settings(dimensions="url"))
    hit = line("10.0.0.1", "21/Nov/2026:10:00:00", "GET /a HTTP/1.1", 200)
    pipeline.feed(hit)
    _, appends = pipeline.to_keys(pipeline.take())
    assert list(appends.values()) == [["/a"]]
    pipeline.feed(hit)
    counts, appends = pipeline.to_keys(pipeline.take())
    assert counts == {counter_key("2026-11-21", "url", "/a"): 1} and appends == {}
    pipeline.forget_index()  # after a memcached failure: the index may be gone
    pipeline.feed(hit)
    _, appends = pipeline.to_keys(pipeline.take())
    assert list(appends.values()) == [["/a"]]


def test_many_distinct_urls_are_classified_early_and_none_is_lost():
    pipeline = Pipeline(Settings(dimensions="url"))
    n = RAW_LIMIT + 500
    pipeline.feed(b"".join(line("10.0.0.1", "21/Nov/2026:10:00:00", f"GET /p{i} HTTP/1.1", 200)
                           for i in range(n)))
    assert pipeline.held() > RAW_LIMIT, "classified before the flush, so memory stays bounded"
    counts = keys(pipeline)
    assert len(counts) == n and set(counts.values()) == {1}
    assert counts[counter_key("2026-11-21", "url", f"/p{n - 1}")] == 1


def test_prefix_and_per_site_keys():
    settings = Settings(dimensions="url", prefix="shop", format="vhost_combined")
    pipeline = Pipeline(settings)
    pipeline.feed(b"www.example.org:443 "
                  + line("10.0.0.1", "21/Nov/2026:10:00:00", "GET /a HTTP/1.1", 200))
    assert keys(pipeline) == {
        counter_key("2026-11-21", "url", "/a", site="www.example.org", prefix="shop"): 1}
