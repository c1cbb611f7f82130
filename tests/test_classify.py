"""Issue 7: what a request counts for — page-view rules, dimensions, per-site counts, explain."""

from __future__ import annotations

import json
import subprocess
from collections import Counter

import pytest

from logpipe.config import Settings
from logpipe.daemon.pipeline import Pipeline

DAY = "2026-11-21"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
GPTBOT = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)"


def line(path="/", status=200, method="GET", referer="-", ua=CHROME, ip="198.51.100.1", hour="10", vhost=None):
    text = (f'{ip} - - [21/Nov/2026:{hour}:00:00 +0000] "{method} {path} HTTP/1.1" {status} 100 '
            f'"{referer}" "{ua}"')
    return (f"{vhost}:443 {text}" if vhost else text).encode()


def count(lines, **options):
    pipeline = Pipeline(Settings(**options))
    pipeline.feed(b"\n".join(lines) + b"\n")
    return pipeline.take(), pipeline.classifier.stats


# A labelled sample: each line with the outcome the default rules must give it.
LABELLED = [
    (line("/blog/1/"), "page view"),
    (line("/blog/1/", method="HEAD"), "page view"),
    (line("/blog/1/", status=304), "page view"),
    (line("/blog/1/", status=206), "page view"),
    (line("/blog/1/", ua=GOOGLEBOT), "bot"),
    (line("/blog/1/", ua=GPTBOT), "bot"),
    (line("/blog/1/", ua="curl/8.5.0"), "bot"),
    (line("/style.css"), "static"),
    (line("/img/Logo.PNG"), "static"),
    (line("/robots.txt"), "static"),
    (line("/favicon.ico"), "static"),
    (line("/comment", method="POST"), "method"),
    (line("/missing", status=404), "status"),
    (line("/moved", status=301), "status"),
    (line("/error", status=500), "status"),
    (line("/v1.2/page"), "page view"),        # a dot in a directory is not an extension
    (b'1.2.3.4 - - [21/Nov/2026:10:00:00 +0000] "-" 408 0 "-" "-"', "no request line"),
    (b'1.2.3.4 - - [21/Nov/2026:10:00:00 +0000] "\\x16\\x03\\x01" 400 0 "-" "-"', "bad request line"),
    (b'1.2.3.4 - - [21/Nov/2026:10:00:00 +0000] "PRI * HTTP/2.0" 400 0 "-" "-"', "not a path"),
]


@pytest.mark.parametrize("raw, outcome", LABELLED)
def test_page_view_rules_line_by_line(raw, outcome):
    increments, stats = count([raw])
    assert stats == Counter({outcome: 1})
    urls = [k for k in increments if k[1] == "url"]
    assert bool(urls) == (outcome == "page view")


def test_dimensions_of_a_human_page_view():
    increments, _ = count([line("/blog/1/?utm_source=x", referer="https://www.bing.com/search?q=Apache+Logs")])
    assert increments == {
        (DAY, "status", None, "200"): 1,
        (DAY, "url", None, "/blog/1"): 1,
        (DAY, "browser", None, "Chrome"): 1,
        (DAY, "platform", None, "Windows"): 1,
        (DAY, "referrer", None, "https://www.bing.com/search"): 1,
        (DAY, "referrer_host", None, "www.bing.com"): 1,
        (DAY, "keyword", None, "apache logs"): 1,
        (DAY, "visitors", None, "*"): 1,
        (DAY, "visitors", None, "/blog/1"): 1,
    }


def test_bots_404s_and_posts():
    increments, _ = count([
        line("/a", ua=GOOGLEBOT), line("/a", ua=GPTBOT), line("/gone", status=404),
        line("/comment", method="POST", ip="203.0.113.5", hour="14", status=302),
        line("/comment", method="POST", ip="203.0.113.5", hour="14", status=302),
        line("/comment", method="POST", ip="203.0.113.5", hour="15", status=302),
    ])
    assert increments[(DAY, "bot", None, "Googlebot")] == 1
    assert increments[(DAY, "bot", None, "GPTBot")] == 1
    assert increments[(DAY, "notfound", None, "/gone")] == 1
    assert increments[(f"{DAY}T14", "post_ip", None, "203.0.113.5")] == 2
    assert increments[(f"{DAY}T15", "post_ip", None, "203.0.113.5")] == 1
    assert (DAY, "url", None, "/a") not in increments


def test_post_ip_counts_every_post_shape_and_keeps_ips_out_of_line_keys():
    pipeline = Pipeline(Settings())
    pipeline.feed(b"\n".join([
        line("/comment", method="POST", ip="203.0.113.5", hour="14", status=302),
        line("/comment", method="POST", ip="203.0.113.6", hour="14", status=302),
        # An escaped byte in the path: the request line is split later
        # (the "request" field), and it is still a POST.
        line("/caf\\xc3\\xa9", method="POST", ip="203.0.113.6", hour="14", status=302),
        line("/comment", method="GET", ip="203.0.113.7", hour="14"),
    ]) + b"\n")
    # The two plain POSTs differ only in the client IP: one line key.
    assert len(pipeline.raw) == 3
    increments = pipeline.take()
    posts = {k[3]: n for k, n in increments.items() if k[1] == "post_ip"}
    assert posts == {"203.0.113.5": 1, "203.0.113.6": 2}


def test_internal_referrers_are_not_referrers():
    increments, _ = count([line("/x", referer="http://www.example.org/prev"), line("/x", referer="https://example.org:8443/")],
                          site_host=["example.org"])
    assert not [k for k in increments if k[1].startswith("referrer")]


def test_count_all_exclusions_and_kept_query_parameters():
    lines = [line("/a.css"), line("/a", ua=GOOGLEBOT), line("/admin/x"), line("/p?id=3&utm=z"), line("/p", ip="10.1.2.3")]
    every, _ = count(lines, count_all=True, dimensions="url")
    assert sum(n for k, n in every.items() if k[1] == "url") == 5
    kept, stats = count(lines, exclude_path=["/admin/*"], exclude_ip=["10.0.0.0/8"], keep_query_param=["id"],
                        dimensions="url")
    assert {k[3]: n for k, n in kept.items()} == {"/p?id=3": 1}
    assert stats["excluded"] == 2


def test_trailing_slash_folding_is_an_option():
    folded, _ = count([line("/a/"), line("/a")], dimensions="url")
    kept, _ = count([line("/a/"), line("/a")], dimensions="url", keep_trailing_slash=True)
    assert folded == {(DAY, "url", None, "/a"): 2}
    assert kept == {(DAY, "url", None, "/a/"): 1, (DAY, "url", None, "/a"): 1}


def test_every_dimension_is_kept_per_virtual_host():
    lines = [line("/", vhost="a.example"), line("/", vhost="a.example"), line("/", vhost="b.example"),
             line("/", vhost="b.example", referer="http://a.example/")]  # another site of ours refers
    increments, _ = count(lines, format="vhost_combined")
    assert increments[(DAY, "url", "a.example", "/")] == 2
    assert increments[(DAY, "url", "b.example", "/")] == 2
    assert increments[(DAY, "referrer_host", "b.example", "a.example")] == 1
    assert (DAY, "referrer_host", "a.example", "a.example") not in increments


def test_real_vhost_log_is_counted_per_site(real_logs_dir):
    data = (real_logs_dir / "dmjacas-logs-other_vhosts_access.log").read_bytes()
    increments, _ = count(data.splitlines(), format="vhost_combined")
    sites = Counter(k[2] for k in increments if k[1] != "post_ip")
    assert set(sites) == {"neutralbank.app"}
    status_total = sum(n for k, n in increments.items() if k[1] == "status")
    assert status_total == data.count(b"\n")  # every line parses; status counts every request


def test_explain_says_why(logpipe_bin):
    sample = b"\n".join([line("/blog/"), line("/a.css"), line("/x", ua=GOOGLEBOT), b"junk"]) + b"\n"
    out = subprocess.run([logpipe_bin, "--dry-run", "--explain"], input=sample, capture_output=True, timeout=60)
    text = out.stdout.decode()
    assert out.returncode == 0
    assert "page view: url /blog" in text
    assert "not a page view: static" in text
    assert "not a page view: bot Googlebot (search; lists: ai-crawler-index," in text
    assert "rejected: format" in text


def test_status_counts_agree_with_goaccess(real_logs_dir, tmp_path):
    """Cross-check with GoAccess's status-code panel on the same file.

    GoAccess counts every valid line by status; so does logpipe's `status`
    dimension. GoAccess also accepts the 408 lines with a "-" request line, as
    logpipe does for `status` (they are rejected only for `url`).
    """
    goaccess = "/usr/bin/goaccess"
    source = real_logs_dir / "1geek0-weblog-access.log"
    report = tmp_path / "ga.json"
    subprocess.run([goaccess, str(source), "--log-format=COMBINED", "-o", str(report), "--no-progress"],
                   check=True, capture_output=True, timeout=120)
    panel = json.loads(report.read_text())["status_codes"]["data"]
    theirs = {item["data"][:3]: item["hits"]["count"] for group in panel for item in group["items"]}
    increments, _ = count(source.read_bytes().splitlines())
    ours = Counter()
    for (day, dim, site, value), n in increments.items():
        if dim == "status":
            ours[value] += n
    assert dict(ours) == theirs


def test_a_feed_larger_than_its_pieces_counts_every_line_once():
    from logpipe.daemon.pipeline import FEED_PIECE

    lines = [line(f"/p/{i % 997}", ip=f"10.0.{i % 250}.{i % 7}", method="POST" if i % 13 == 0 else "GET")
             for i in range(3 * FEED_PIECE // 150)]
    body = b"\n".join(lines) + b"\n"
    assert len(body) > 2 * FEED_PIECE
    whole = Pipeline(Settings())
    junk = b"not a log line\n"
    assert whole.feed(junk + body + junk, len(junk), len(junk) + len(body)) == []
    one_by_one = Pipeline(Settings())
    for text in lines:
        one_by_one.feed(text + b"\n")
    assert whole.lines == one_by_one.lines == len(lines)
    assert whole.take() == one_by_one.take()
