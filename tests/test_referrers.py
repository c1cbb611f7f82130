"""logpipe.counting.referrers: referring URL/host, search engine and keyword of Referer headers."""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from logpipe.counting import referrers
from logpipe.counting.referrers import MAX_KEYWORD, NOT_PROVIDED, Referrer, ReferrerClassifier

REAL_LOGS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "real"
DATA = Path(referrers.__file__).resolve().parent.parent / "data"
NONE = Referrer(None, None, None, None)

# (referer as logged, url, host, keyword, engine)
SEARCH = [
    # Google with q, and without q (hidden since 2011): the placeholder
    ("https://www.google.com/search?q=apache+piped+log&hl=en&source=hp",
     "https://www.google.com/search", "www.google.com", "apache piped log", "Google"),
    ("https://www.google.com/", "https://www.google.com/", "www.google.com", NOT_PROVIDED, "Google"),
    ("https://www.google.co.uk/", "https://www.google.co.uk/", "www.google.co.uk", NOT_PROVIDED, "Google"),
    ("https://www.google.com.br", "https://www.google.com.br/", "www.google.com.br", NOT_PROVIDED, "Google"),
    ("http://www.google.de/url?sa=t&rct=j&q=&esrc=s&source=web&cd=1&ved=0CC8QFjAA&url=http%3A%2F%2Fexample.org%2F",
     "http://www.google.de/url", "www.google.de", NOT_PROVIDED, "Google"),
    ("http://www.google.co.uk/url?sa=t&rct=j&q=xdotool%20command%20mac&source=web&cd=2",
     "http://www.google.co.uk/url", "www.google.co.uk", "xdotool command mac", "Google"),
    ("http://www.google.com/url?sa=D&q=http://www.example.org/page&usg=AFQjCN",  # q is the clicked result
     "http://www.google.com/url", "www.google.com", NOT_PROVIDED, "Google"),
    ("http://www.google.com/search?q=rage+face&tbm=isch&start=20",
     "http://www.google.com/search", "www.google.com", "rage face", "Google Images"),
    ("android-app://com.google.android.googlequicksearchbox/https/www.google.com",
     "android-app://com.google.android.googlequicksearchbox/https/www.google.com",
     "com.google.android.googlequicksearchbox", NOT_PROVIDED, "Google"),
    # Bing
    ("https://www.bing.com/search?q=logpipe+memcached&form=QBLH&sp=-1",
     "https://www.bing.com/search", "www.bing.com", "logpipe memcached", "Bing"),
    ("https://www.bing.com/", "https://www.bing.com/", "www.bing.com", NOT_PROVIDED, "Bing"),
    ("http://www.bing.com/images/search?q=google.com&qs=ds&form=QBIR",
     "http://www.bing.com/images/search", "www.bing.com", "google.com", "Bing Images"),
    # DuckDuckGo: with q (rare), and as it is sent today
    ("https://duckduckgo.com/?q=%22piped+logs%22&t=h_", "https://duckduckgo.com/", "duckduckgo.com",
     '"piped logs"', "DuckDuckGo"),
    ("https://duckduckgo.com/", "https://duckduckgo.com/", "duckduckgo.com", NOT_PROVIDED, "DuckDuckGo"),
    # Yahoo (p=), country subdomain, and the r.search.yahoo.com redirector
    ("https://search.yahoo.com/search?p=apache+log+format&fr=yfp-t&fp=1",
     "https://search.yahoo.com/search", "search.yahoo.com", "apache log format", "Yahoo!"),
    ("https://uk.search.yahoo.com/search?p=Web+Logs&fr=yfp-t",
     "https://uk.search.yahoo.com/search", "uk.search.yahoo.com", "web logs", "Yahoo!"),
    ("https://r.search.yahoo.com/_ylt=AwrFZ;_ylu=Y29sbw--/RV=2/RE=1717/RO=10/RU=https%3a%2f%2fexample.org%2f/RK=2/RS=x-",
     "https://r.search.yahoo.com/_ylt=AwrFZ;_ylu=Y29sbw--/RV=2/RE=1717/RO=10/RU=https%3a%2f%2fexample.org%2f/RK=2/RS=x-",
     "r.search.yahoo.com", NOT_PROVIDED, "Yahoo!"),
    # Yandex (text=), Cyrillic
    ("https://yandex.ru/search/?text=%D0%BB%D0%BE%D0%B3%D0%B8+apache&lr=213",
     "https://yandex.ru/search/", "yandex.ru", "логи apache", "Yandex"),
    ("https://yandex.com.tr/search/?text=apache", "https://yandex.com.tr/search/", "yandex.com.tr", "apache", "Yandex"),
    # Baidu (wd= and word=), UTF-8 and legacy GB2312 (the charset the list names)
    ("https://www.baidu.com/s?wd=%E6%97%A5%E5%BF%97&rsv_spt=1", "https://www.baidu.com/s", "www.baidu.com",
     "日志", "Baidu"),
    ("https://m.baidu.com/s?word=%E6%97%A5%E5%BF%97+Apache", "https://m.baidu.com/s", "m.baidu.com",
     "日志 apache", "Baidu"),
    ("http://www.baidu.com/s?wd=%C8%D5%D6%BE", "http://www.baidu.com/s", "www.baidu.com", "日志", "Baidu"),
    # Ecosia, Qwant
    ("https://www.ecosia.org/search?q=tree+planting&method=index", "https://www.ecosia.org/search",
     "www.ecosia.org", "tree planting", "Ecosia"),
    ("https://www.ecosia.org/", "https://www.ecosia.org/", "www.ecosia.org", NOT_PROVIDED, "Ecosia"),
    ("https://www.qwant.com/?q=caf%C3%A9+cr%C3%A8me&t=web", "https://www.qwant.com/", "www.qwant.com",
     "café crème", "Qwant"),
    # percent-encoding, '+', NFKC (full-width letters, ß stays), whitespace, case
    ("https://www.google.com/search?q=%EF%BC%A1%EF%BC%A2%EF%BC%A3++Stra%C3%9Fe%09%0A+x",
     "https://www.google.com/search", "www.google.com", "abc straße x", "Google"),
    ("https://www.google.com/search?q=C%2B%2B%20%26%20Rust", "https://www.google.com/search",
     "www.google.com", "c++ & rust", "Google"),
    ("https://www.google.com/search?q=%E0%A4%B9%E0%A4%BF%E0%A4%82%E0%A4%A6%E0%A5%80+%E6%97%A5%E6%9C%AC",
     "https://www.google.com/search", "www.google.com", "हिंदी 日本", "Google"),
    ("https://www.google.com/search?q=%FF%FEbad", "https://www.google.com/search", "www.google.com",
     "\ufffd\ufffdbad", "Google"),
    ("https://www.bing.com/search?q=%20%20", "https://www.bing.com/search", "www.bing.com", NOT_PROVIDED, "Bing"),
    # Apache's escapes in the logged text: raw UTF-8 bytes, \" and \\ in the query
    (r"https://www.google.com/search?q=caf\xc3\xa9+\"x\"+a\\b", "https://www.google.com/search",
     "www.google.com", 'café "x" a\\b', "Google"),
]

# (referer as logged, own_host, expected) for non-search referers
OTHER = [
    ("https://news.ycombinator.com/item?id=1#c2", None,
     Referrer("https://news.ycombinator.com/item", "news.ycombinator.com", None, None)),
    ("https://User:Secret@Other.ORG./a/b?c=d", None, Referrer("https://other.org/a/b", "other.org", None, None)),
    ("https://other.org:8443/x", None, Referrer("https://other.org:8443/x", "other.org", None, None)),
    ("http://other.org:80/x", None, Referrer("http://other.org/x", "other.org", None, None)),
    ("http://[2001:db8::1]:8080/x", None, Referrer("http://[2001:db8::1]:8080/x", "2001:db8::1", None, None)),
    ("https://www.google.com/maps/place/Foo", None,  # on an engine's host but not a search
     Referrer("https://www.google.com/maps/place/Foo", "www.google.com", None, None)),
    ("android-app://com.google.android.gm/", None,
     Referrer("android-app://com.google.android.gm/", "com.google.android.gm", None, None)),
    (r"http://example.org/a\x20b?q=1", None, Referrer("http://example.org/a%20b", "example.org", None, None)),
    # internal: site_hosts = example.com, shop.example.net:8443
    ("http://example.com/page", None, NONE),
    ("https://www.example.com/page?x=1", None, NONE),
    ("https://WWW.Example.COM:8443/page", None, NONE),
    ("http://example.com./page", None, NONE),
    ("https://shop.example.net/cart", None, NONE),
    ("https://www.shop.example.net:443/cart", None, NONE),
    ("https://blog.example.com/", None, Referrer("https://blog.example.com/", "blog.example.com", None, None)),
    ("https://vhost.example.org/a", "vhost.example.org", NONE),  # own_host (%v)
    ("https://www.vhost.example.org/a", "VHOST.example.org:443", NONE),
    ("https://vhost.example.org/a", "other.example.org",
     Referrer("https://vhost.example.org/a", "vhost.example.org", None, None)),
    # no referrer, unparseable
    ("-", None, NONE),
    ("", None, NONE),
    ("foo", None, NONE),
    ("/relative/path", None, NONE),
    ("http://", None, NONE),
    ("http:///path", None, NONE),
    ("http://a.com:99999/", None, NONE),
    ("http://a.com:abc/", None, NONE),
    ("http://[::1/", None, NONE),
    (r"http://\xe4\xe5\xe3\xf2\xff.\xf0\xf4/", None, NONE),  # a cp1251 host, as in the elastic log
    ("http://exa mple.com/", None, NONE),
]


@pytest.fixture(scope="module")
def classifier() -> ReferrerClassifier:
    return ReferrerClassifier(["example.com", "www.shop.example.net:8443"])


@pytest.mark.parametrize("referer, url, host, keyword, engine", SEARCH, ids=[s[0][:50] for s in SEARCH])
def test_search_engines(classifier: ReferrerClassifier, referer: str, url: str, host: str,
                        keyword: str, engine: str) -> None:
    assert classifier.classify(referer) == Referrer(url, host, keyword, engine)


@pytest.mark.parametrize("referer, own_host, expected", OTHER, ids=[o[0][:50] or "empty" for o in OTHER])
def test_other_referers(classifier: ReferrerClassifier, referer: str, own_host: str | None,
                        expected: Referrer) -> None:
    assert classifier.classify(referer, own_host) == expected


def test_keyword_is_capped() -> None:
    c = ReferrerClassifier()
    ref = c.classify("https://www.google.com/search?q=" + "ab+" * 80)
    assert len(ref.keyword) == MAX_KEYWORD
    assert ref.keyword == ("ab " * 80)[:MAX_KEYWORD]
    assert ReferrerClassifier().classify("https://www.google.com/search?q=" + "x" * 99 + "+y").keyword == "x" * 99


def test_long_url_is_capped() -> None:
    ref = ReferrerClassifier().classify("https://other.org/" + "x" * 5000 + "?q=1")
    assert len(ref.url) == referrers.MAX_URL and ref.host == "other.org"


def test_cache_hit_is_one_lookup_and_keyed_on_own_host() -> None:
    c = ReferrerClassifier(cache_size=8)
    first = c.classify("https://vhost.example.org/a")
    assert c.classify("https://vhost.example.org/a") is first
    assert c.misses == 1
    assert c.classify("https://vhost.example.org/a", "vhost.example.org") == NONE
    assert c.misses == 2


def test_cache_is_bounded() -> None:
    c = ReferrerClassifier(cache_size=3)
    for i in range(10):
        c.classify(f"https://site{i}.org/")
    assert len(c._cache) <= 3
    with pytest.raises(ValueError):
        ReferrerClassifier(cache_size=0)


def test_engine_list_is_the_shipped_matomo_list() -> None:
    path = DATA / "search_engines.json"
    notice = (DATA / "search_engines.NOTICE.md").read_text("utf-8")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest in notice, "search_engines.json changed: update its sha256 in search_engines.NOTICE.md"
    engines = json.loads(path.read_text("utf-8"))
    assert len(engines) >= 250
    for name in ("Google", "Bing", "DuckDuckGo", "Yahoo!", "Yandex", "Baidu", "Ecosia", "Qwant"):
        assert name in engines
    table = referrers._load_engines()
    for engine in table.values():  # every /regex/ compiled
        for item in engine.params:
            assert isinstance(item, (str, re.Pattern))
            assert not (isinstance(item, str) and len(item) > 2 and item.startswith("/") and item.endswith("/"))


def test_engines_file_replaces_the_list(tmp_path: Path) -> None:
    custom = tmp_path / "engines.json"
    custom.write_text(json.dumps({"Intranet Search": [{"urls": ["intranet.corp.{}"], "params": ["query"]}]}))
    c = ReferrerClassifier(engines_file=str(custom))
    assert c.classify("https://intranet.corp.de/?query=Holidays") == Referrer(
        "https://intranet.corp.de/", "intranet.corp.de", "holidays", "Intranet Search")
    assert c.classify("https://www.google.com/search?q=x").engine is None


# --- real logs -------------------------------------------------------------

QUOTED = r'"((?:[^"\\]|\\.)*)"'
LINE = re.compile(r'.*?\[[^\]]*\] ' + QUOTED + r' \S+ \S+ ' + QUOTED + ' ' + QUOTED)


@pytest.mark.skipif(not REAL_LOGS.is_dir(), reason=f"real logs not found: {REAL_LOGS} is absent")
def test_real_log_referers() -> None:
    referers = []
    for path in sorted(REAL_LOGS.glob("*.log")):
        for line in path.read_text(encoding="latin-1").splitlines():
            m = LINE.match(line)
            if m:
                referers.append(m.group(2))
    assert len(referers) > 60_000
    c = ReferrerClassifier(["semicomplete.com", "ashioto.in"])
    engines = {}
    for referer in set(referers):
        ref = c.classify(referer)
        plain = codecs.escape_decode(referer.encode("latin-1"))[0].decode("latin-1")
        if ref.url is None:
            assert ref == NONE
            continue
        # the host agrees with the standard library's reading of the same URL
        assert ref.host == urlsplit(plain).hostname.rstrip("."), referer
        assert ref.host not in ("semicomplete.com", "www.semicomplete.com", "ashioto.in")
        assert "?" not in ref.url and "#" not in ref.url and ref.url.isascii()
        if ref.engine:
            assert ref.keyword and len(ref.keyword) <= MAX_KEYWORD
            assert ref.keyword == ref.keyword.lower().strip()
            engines[ref.engine] = engines.get(ref.engine, 0) + 1
        else:
            assert ref.keyword is None
    assert max(engines, key=engines.get) == "Google"
    assert {"Bing", "Baidu", "DuckDuckGo"} <= set(engines)
    assert c.classify("http://semicomplete.com/") == NONE


def test_log_bytes_are_accepted() -> None:
    c = ReferrerClassifier(["example.com"])
    want = Referrer("https://www.google.com/search", "www.google.com", "café", "Google")
    assert c.classify(rb"https://www.google.com/search?q=caf\xc3\xa9") == want
    assert c.classify(b"https://www.google.com/search?q=caf\xc3\xa9") == want  # raw bytes (nginx)
    assert c.classify(b"-") == NONE
    assert c.classify(b"http://www.example.com/") == NONE
