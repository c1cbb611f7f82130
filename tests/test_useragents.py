"""logpipe.counting.useragents: browser, platform and bot of User-Agent strings.

The real-log test recomputes everything with ua-parser's global parser and a
fresh CrawlerDetect, called directly, and compares the counts.

Cache choice (measured on the 64,186 lines / 1,648 distinct UAs of
``shared/data/real``; see UserAgentClassifier's docstring for the numbers): a dict cleared
when full: a hit is one dict lookup, as fast as ``functools.lru_cache`` (~50
ns/line both), and the default 8,192 entries never fill on these logs; an LRU
only wins when the cache is far too small.
"""

from __future__ import annotations

import codecs
import re
from collections import Counter
from pathlib import Path

import pytest
import ua_parser
from crawlerdetect import CrawlerDetect

from logpipe.counting import useragents
from logpipe.counting.useragents import Agent, UserAgentClassifier

REAL_LOGS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "real"

CHROME_WIN = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0.0.0 Safari/537.36")
FIREFOX_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
SAFARI_MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "Version/17.4.1 Safari/605.1.15")
EDGE_WIN = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80")
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1")
CHROME_ANDROID = ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/124.0.0.0 Mobile Safari/537.36")
GOOGLEBOT_DESKTOP = ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; "
                     "+http://www.google.com/bot.html) Chrome/120.0.6099.129 Safari/537.36")
GOOGLEBOT_CLASSIC = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
GOOGLEBOT_SMARTPHONE = ("Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
                        "(KHTML, like Gecko) Chrome/120.0.6099.129 Mobile Safari/537.36 (compatible; "
                        "Googlebot/2.1; +http://www.google.com/bot.html)")
BINGBOT = ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
           "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36")
BINGBOT_CLASSIC = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
GPTBOT = ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
          "+https://openai.com/gptbot)")
CLAUDEBOT = ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; "
             "+claudebot@anthropic.com)")
PERPLEXITYBOT = ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; PerplexityBot/1.0; "
                 "+https://perplexity.ai/perplexitybot)")
BYTESPIDER = ("Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile "
              "Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)")
CCBOT = "CCBot/2.0 (https://commoncrawl.org/faq/)"
CHATGPT_USER = ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; ChatGPT-User/1.0; "
                "+https://openai.com/bot")
AHREFSBOT = "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)"

# (user agent, browser, platform, bot)
TABLE = [
    (CHROME_WIN, "Chrome", "Windows", None),
    (FIREFOX_WIN, "Firefox", "Windows", None),
    (FIREFOX_LINUX, "Firefox", "Linux", None),
    (SAFARI_MAC, "Safari", "Mac OS X", None),
    (EDGE_WIN, "Edge", "Windows", None),
    (SAFARI_IPHONE, "Mobile Safari", "iOS", None),
    (CHROME_ANDROID, "Chrome Mobile", "Android", None),
    (GOOGLEBOT_DESKTOP, "Googlebot", "Other", "Googlebot"),
    (GOOGLEBOT_CLASSIC, "Googlebot", "Other", "Googlebot"),
    (GOOGLEBOT_SMARTPHONE, "Googlebot", "Android", "Googlebot"),
    (BINGBOT, "bingbot", "Other", "bingbot"),
    (BINGBOT_CLASSIC, "bingbot", "Other", "bingbot"),
    (GPTBOT, "GPTBot", "Other", "GPTBot"),
    (CLAUDEBOT, "ClaudeBot", "Other", "ClaudeBot"),
    (PERPLEXITYBOT, "PerplexityBot", "Other", "PerplexityBot"),
    (BYTESPIDER, "Bytespider", "Android", "Bytespider"),
    (CCBOT, "CCBot", "Other", "CCBot"),
    # ua-parser calls it "com/bot" (from the URL); crawlerdetect's token wins.
    (CHATGPT_USER, "com/bot", "Other", "ChatGPT-User"),
    (AHREFSBOT, "AhrefsBot", "Other", "AhrefsBot"),
    ("curl/8.5.0", "curl", "Other", "curl"),
    ("python-requests/2.31.0", "Python Requests", "Other", "python-requests"),
    ("Go-http-client/1.1", "Go-http-client", "Other", "Go-http-client"),
    ("Wget/1.21.4", "Wget", "Other", "Wget"),
    ("Mozilla/5.0 zgrab/0.x", "Other", "Other", "zgrab"),
    # empty agents: not bots, like GoAccess (without --unknowns-as-crawlers) and Matomo
    ("-", "Other", "Other", None),
    ("", "Other", "Other", None),
    ("   ", "Other", "Other", None),
]


@pytest.fixture(scope="module")
def classifier() -> UserAgentClassifier:
    return UserAgentClassifier()


@pytest.mark.parametrize("ua, browser, platform, bot", TABLE, ids=[row[0][:40] or "empty" for row in TABLE])
def test_table(classifier: UserAgentClassifier, ua: str, browser: str, platform: str, bot: str | None) -> None:
    assert classifier.classify(ua)[:3] == (browser, platform, bot)
    assert classifier.is_bot(ua) is (bot is not None)


def test_real_log_bot_names_are_readable() -> None:
    # names the classifier gives to bots found in shared/data/real, checked by hand
    c = UserAgentClassifier()
    cases = {
        "Barkrowler/0.9 (+http://www.exensa.com/crawl)": "Barkrowler",  # ua-parser: "crawl"
        "Mozilla/5.0 (compatible; archive.org_bot +http://www.archive.org/details/archive.org_bot)":
            "archive.org_bot",
        "Mozilla/5.0 (compatible; special_archiver/3.1.1 +http://www.archive.org/details/archive.org_bot)":
            "special_archiver",  # ua-parser: "archiver"
        "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)": "Yahoo! Slurp",
        "Mozilla/5.0 (compatible; PRTG Network Monitor (www.paessler.com); Windows)": "PRTG Network Monitor",
        "Feedfetcher-Google; (+http://www.google.com/feedfetcher.html; 22 subscribers; feed-id=8321906634162087507)":
            "Feedfetcher-Google",
        "nutch-1.4/Nutch-1.4": "Nutch",
        "binlar_2.6.3 (test@mgmt.mic)": "binlar",
        "Reeder/2.1.1 CFNetwork/672.0.8 Darwin/14.0.0": "Reeder",
        "LiveJournal.com (webmaster@livejournal.com; for http://www.livejournal.com/users/x/; 8 readers)":
            "LiveJournal.com",  # crawlerdetect matched only "reader"
        "Mozilla/5.0 (compatible; Yahoo Ad monitoring; https://help.yahoo.com/kb/yahoo-ad-monitoring-SLN24857.html)":
            "Yahoo Ad monitoring",
        "meta-externalagent/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)":
            "meta-externalagent",  # both libraries say only "crawler"
        ("Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10.6; en-US; rv:1.9.2) Gecko/20100115 Firefox/3.6 "
         "(FlipboardProxy/1.1; +http://flipboard.com/browserproxy)"): "FlipboardProxy",  # ua-parser: Firefox
    }
    for ua, name in cases.items():
        assert c.classify(ua).bot == name, ua


def test_cache_hit_is_the_same_object_and_counts_one_miss() -> None:
    c = UserAgentClassifier(cache_size=4)
    first = c.classify(CHROME_WIN)
    assert c.classify(CHROME_WIN) is first
    assert c.misses == 1


def test_cache_is_bounded() -> None:
    c = UserAgentClassifier(cache_size=3)
    for i in range(10):
        c.classify(f"curl/7.{i}")
    assert len(c._cache) <= 3
    assert c.classify("curl/7.9") == Agent("curl", "Other", "curl", "library", "crawler-user-agents,crawlerdetect")


def test_cache_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        UserAgentClassifier(cache_size=0)


def test_rust_resolver_is_the_one_used(classifier: UserAgentClassifier) -> None:
    import ua_parser_rs  # the accelerator must be installed
    from ua_parser.regex import Resolver

    assert isinstance(classifier._resolver, Resolver)
    assert isinstance(classifier._resolver.ua, ua_parser_rs.UserAgentExtractor)


def test_re2_prefilter_answers_like_crawlerdetect_alone() -> None:
    # The RE2 superset may only skip crawlerdetect when crawlerdetect would say "no".
    with_prefilter = UserAgentClassifier()
    assert with_prefilter._prefilter is not None, "google-re2 must compile crawlerdetect's patterns"
    without = UserAgentClassifier()
    without._prefilter = None
    agents = [row[0] for row in TABLE] + [
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        "Mozilla/5.0 (Linux; Android 11) AppleWebKit/537.36 YandexSearch/21.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/120.0 YaBrowser/24.1 Safari/537.36",
    ]
    for path in real_log_files():
        for line in path.read_text(encoding="latin-1").splitlines():
            m = LINE.match(line)
            if m:
                agents.append(unescape(m.group(3)))
    distinct = sorted(set(agents))
    assert [with_prefilter.classify(ua) for ua in distinct] == [without.classify(ua) for ua in distinct]
    skipped = sum(not with_prefilter._may_be_crawler(ua) for ua in distinct)
    assert skipped > len(distinct) // 2, "the prefilter should spare crawlerdetect most browsers"


def test_spider_only_device_rules_answer_like_the_full_list() -> None:
    # Kindle's Silk browser: the generic bot rule (device family "Spider")
    # matches "silk", but an earlier Kindle rule wins in the full list.
    silk = ("Mozilla/5.0 (Linux; U; Android 4.0.3; en-us; KFTT Build/IML74K) AppleWebKit/535.19 "
            "(KHTML, like Gecko) Silk/3.4 Mobile Safari/535.19 Silk-Accelerated=true")
    assert ua_parser.parse(silk).with_defaults().device.family != "Spider"
    assert UserAgentClassifier().classify(silk).bot is None
    assert UserAgentClassifier().classify("Mozilla/5.0 (compatible; Googlebot/2.1)").bot == "Googlebot"


def test_module_is_bot() -> None:
    assert useragents.is_bot(GPTBOT) is True
    assert useragents.is_bot(FIREFOX_WIN) is False
    assert useragents.is_bot("-") is False


# --- real logs -------------------------------------------------------------

QUOTED = r'"((?:[^"\\]|\\.)*)"'
# ... [time] "request" status bytes "referer" "user agent" (any trailing fields ignored)
LINE = re.compile(r'.*?\[[^\]]*\] ' + QUOTED + r' \S+ \S+ ' + QUOTED + ' ' + QUOTED)


def unescape(field: str) -> str:
    """Apache's \\xhh, \\" and \\\\ escapes, undone with Python's own escape decoder."""
    return codecs.escape_decode(field.encode("latin-1"))[0].decode("utf-8", "replace")


def real_log_files() -> list[Path]:
    if not REAL_LOGS.is_dir():
        return []
    return sorted(REAL_LOGS.glob("*.log"))


@pytest.mark.skipif(not REAL_LOGS.is_dir(), reason=f"real logs not found: {REAL_LOGS} is absent")
@pytest.mark.parametrize("path", real_log_files(), ids=lambda p: p.name)
def test_real_logs_match_the_libraries_called_directly(path: Path) -> None:
    agents = []
    lines = 0
    for line in path.read_text(encoding="latin-1").splitlines():
        lines += 1
        m = LINE.match(line)
        if m:
            agents.append(unescape(m.group(3)))
    assert len(agents) >= 0.99 * lines, "the test's regex should match nearly every line"

    # what the libraries say when called directly
    crawler_detect = CrawlerDetect()
    direct: dict[str, tuple[str, str, bool]] = {}
    for ua in set(agents):
        result = ua_parser.parse(ua).with_defaults()
        spider = result.device.family == "Spider"
        direct[ua] = (result.user_agent.family, result.os.family, spider or crawler_detect.is_crawler(ua))
    want_browsers = Counter(direct[ua][0] for ua in agents)
    want_platforms = Counter(direct[ua][1] for ua in agents)

    classifier = UserAgentClassifier()
    got = [classifier.classify(ua) for ua in agents]
    # Every agent crawlerdetect or ua-parser calls a crawler still is one; the
    # ones added come from the two other lists.
    lost = {ua for ua in agents if direct[ua][2]} - {ua for ua, a in zip(agents, got) if a.bot is not None}
    assert lost == set()
    for ua, agent in zip(agents, got):
        if agent.bot is not None and not direct[ua][2]:
            assert {"ai-crawler-index", "crawler-user-agents"} & set(agent.source.split(",")), ua
    assert Counter(a.browser for a in got) == want_browsers
    assert Counter(a.platform for a in got) == want_platforms
    for ua, agent in zip(agents, got):
        if agent.bot is not None:  # a name, never the whole string
            assert agent.bot and len(agent.bot) <= useragents.MAX_BOT_NAME
            if agent.bot == ua:  # only when the agent is nothing but a name ("Ruby", "LumiBot 2.0" is cut)
                assert not re.search(r"[/;()]", ua), ua


@pytest.mark.skipif(not REAL_LOGS.is_dir(), reason=f"real logs not found: {REAL_LOGS} is absent")
def test_real_logs_bot_shares() -> None:
    # facts stated in shared/data/real/SOURCES.md
    c = UserAgentClassifier()

    def share(name: str) -> float:
        agents = [unescape(m.group(3)) for m in map(LINE.match, (REAL_LOGS / name).read_text("latin-1").splitlines()) if m]
        return sum(c.is_bot(ua) for ua in agents) / len(agents)

    assert share("dmjacas-logs-other_vhosts_access.log") > 0.85  # ~85% PRTG monitor + scanners
    assert 0.3 < share("zaki1003-bot-detection-prototype-access_10000.log") < 0.5  # "about 39%"
