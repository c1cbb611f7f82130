"""Browser, platform and bot of a User-Agent header, behind one bounded cache.

Rules come from maintained libraries and lists, not from a table of our own:

* **ua-parser 1.x** (uap-core's regexes) with the **ua-parser-rs** Rust
  resolver gives the browser family (user-agent domain), the platform (OS
  domain) and the device family; device ``"Spider"`` marks a crawler.  The
  Rust resolver is built explicitly (:class:`ua_parser.regex.Resolver`), so a
  missing accelerator is an :class:`ImportError` at start-up rather than a
  silent 50x slowdown (ua-parser would otherwise fall back to pure ``re``).
* **crawlerdetect** (a port of JayBizzle/Crawler-Detect) adds scripted clients
  that ua-parser does not call spiders: curl, python-requests, Go-http-client,
  Wget, zgrab, feed fetchers, uptime monitors...

* **crawler-user-agents** and **ai-crawler-index**
  (:mod:`logpipe.counting.botlists`) add the crawlers both miss (AI agents,
  monitoring, SEO audits, scanners) and each bot's kind, ``Agent.category``.

A line is a bot when one of them says so (``libraries.md`` §3, "Recommended
combination"), unless the match is a phone model or a desktop app's token
(:func:`~logpipe.counting.botlists.person_evidence`; the README's "Bots"
has the precedence and the measured rates).  All are slow on a miss, so
every distinct string is classified once and kept in a dict; the worker sees
a single dict lookup per line.  crawlerdetect's one regex of 1,462 alternatives costs 0.42 ms per
agent with Python's ``re``; **google-re2** (RE2's automaton) runs a superset
of it in 0.009 ms, so crawlerdetect itself only runs when RE2 finds a
candidate (about one agent in ten on ``shared/data/real``; the superset drops
its one negative lookahead, ``Yandex(?!Search)``, which RE2 lacks).

Empty user agents (``-`` as Apache logs a missing header, or ``""``) are *not*
bots: browser and platform are ``"Other"``.  This is what GoAccess does by
default (an unknown agent is "Unknown", a crawler only with
``--unknowns-as-crawlers``) and what Matomo does (Device Detector's
``parse()`` skips an agent that is empty or has no letter, so ``isBot()`` is
false and everything is "Unknown"; ``import_logs.py``'s excluded substrings do
not match ``-``); logpipe follows both.
"""

from __future__ import annotations

import re
import threading
from typing import NamedTuple

import re2
from crawlerdetect import CrawlerDetect
from crawlerdetect.crawlerdetect import get_compiled_exclusions_regex
from crawlerdetect.providers.crawlers import data as _crawler_patterns
from ua_parser import Domain, load_lazy_builtins
from ua_parser.regex import Resolver as RustResolver  # needs ua-parser-rs

from logpipe.counting.botlists import BROWSER_LIKE_TAGS, BotLists, ListMatch, person_evidence

__all__ = ["Agent", "UserAgentClassifier", "OTHER", "UNNAMED", "is_bot"]

#: Family used when ua-parser has no match (ua-parser's own default name).
OTHER = "Other"
#: Longest bot name kept; longer names are cut.
MAX_BOT_NAME = 64
#: Only this many characters of a User-Agent are classified: crawlerdetect's
#: regex is quadratic in the length (an 8 KB header took about 4 s), and every
#: real browser or crawler names itself well within the first few hundred.
MAX_AGENT_CHARS = 512
#: The domains resolved per distinct UA: browser, platform, and device (for "Spider").
_DOMAINS = Domain.USER_AGENT | Domain.OS | Domain.DEVICE


class Agent(NamedTuple):
    """What :meth:`UserAgentClassifier.classify` returns.

    Attributes:
        browser: ua-parser's user-agent family ("Chrome", "Mobile Safari",
            "Googlebot", "curl", ...), ``"Other"`` when unknown.
        platform: ua-parser's OS family ("Windows", "Android", "iOS", "Mac OS X",
            "Linux", ...), ``"Other"`` when unknown.
        bot: ``None`` for a (presumed) human browser, else the crawler's
            product name (``"other"`` when it has none).
        category: the bot's kind, one of :data:`~logpipe.counting.botlists.CATEGORIES`
            (``None`` for a human).
        source: the lists that called it a bot, comma-separated, the one that
            gave the category first (``None`` for a human); for ``--explain``.
    """

    browser: str
    platform: str
    bot: str | None
    category: str | None = None
    source: str | None = None


_EMPTY_AGENT = Agent(OTHER, OTHER, None)
#: Memory budget of the RE2 prefilter's automaton, in bytes (RE2's default is
#: 8 MiB; a smaller budget only makes a rare miss slower, never wrong).
_PREFILTER_MAX_MEM = 8 << 20


def _crawler_prefilter() -> "re2._Regexp | None":
    """An RE2 pattern that matches whenever crawlerdetect's crawler regex does.

    Negative lookaheads (``Yandex(?!Search)``) are dropped, which can only
    widen the match.  Returns None when RE2 cannot compile the superset (a
    future crawlerdetect with other Perl-only syntax): then every agent goes
    to crawlerdetect, slower but the same answer.
    """
    superset = [re.sub(r"\(\?!(?:[^()\\]|\\.)*\)", "", p) for p in _crawler_patterns]
    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = _PREFILTER_MAX_MEM
    try:
        return re2.compile("|".join(superset), options)
    except re2.error:
        return None

# Bot naming --------------------------------------------------------------

# A name made only of one of crawlerdetect's generic words (its last,
# catch-all pattern) says nothing about who is crawling.
_GENERIC = re.compile(
    r"[\W_]*(?:bots?|crawl(?:er)?s?|headless|archivers?|transcoder|spiders?|uptime|"
    r"validators?|fetchers?|cron|checkers?|readers?|extractors?|monitoring|analy[sz]ers?|"
    r"scrapers?|robots?)[\W_]*",
    re.IGNORECASE,
)
_TOKEN_CHAR = re.compile(r"[\w.\-]")
# A trailing version: "nutch-1.4", "binlar_2.6.3", "Reeder/2.1.1", "fetch/2.0".
_VERSION_TAIL = re.compile(r"(?:[/_\-]v?\d[\w.]*|/)+$")
_LEADING_PRODUCT = re.compile(r"[A-Za-z][\w.\-]*(?: [A-Za-z][\w.\-]*)*")
_PLAIN_WORDS = re.compile(r"[A-Za-z][\w.\-]*(?: [\w.\-]+)*")


_SEPARATORS = re.compile(r"[;()\[\],]|\s-\s")
_LEADING_NUMBERS = re.compile(r"^(?:v?\d[\d.]*\s+)+")


def _clean(name: str) -> str:
    words = name.split()
    # "Nutch Nutch", "Screaming Frog SEO Spider Screaming Frog SEO Spider": one product, once.
    half = len(words) // 2
    if words and len(words) % 2 == 0 and [w.lower() for w in words[:half]] == [w.lower() for w in words[half:]]:
        words = words[:half]
    name = " ".join(words)
    # One product out of a match that ran over punctuation: "Owler (ows.eu" → "Owler",
    # "robot;Owler" → "Owler", "537.36 PTST" → "PTST".
    parts = [_LEADING_NUMBERS.sub("", p.strip()) for p in _SEPARATORS.split(name)]
    name = next((p for p in parts if p and not _is_generic(p)), parts[0])
    name = _VERSION_TAIL.sub("", name).strip(" .-_:;,+()")
    return name[:MAX_BOT_NAME].rstrip(" .-_:;,+(")


def _expand_token(ua: str, matched: str) -> str:
    """Grow crawlerdetect's match to the whole product token around it."""
    m = re.search(re.escape(matched), ua, re.IGNORECASE)
    if m is None:  # the match spanned a part crawlerdetect's exclusions removed
        return _clean(matched)
    start, end = m.span()
    while start > 0 and _TOKEN_CHAR.match(ua[start - 1]):
        start -= 1
    while end < len(ua) and _TOKEN_CHAR.match(ua[end]):
        end += 1
    return _clean(ua[start:end])


def _is_generic(name: str) -> bool:
    return "/" in name or _GENERIC.fullmatch(name) is not None


def _bot_name(ua: str, family: str | None, matched: str | None) -> str:
    """A stable, readable crawler name; never the whole UA string.

    ``family`` is ua-parser's user-agent family (``None`` when unknown),
    ``matched`` the text a list's pattern matched (``None`` if none).

    1. ua-parser's family and the list's token (grown to the product token
       around it, version removed) are compared case-insensitively.  When one
       contains the other the longer wins ("Yahoo! Slurp" over "Slurp",
       "special_archiver" over "archiver"); when they are unrelated the token
       wins, because ua-parser then named the browser the bot imitates
       ("Chrome" for Google Web Preview, "Firefox" for FlipboardProxy) or a URL
       fragment ("com/bot" for ChatGPT-User).  With one of them, that one.
    2. A name that is only a generic word ("crawler", "readers", "monitoring")
       is replaced by the UA's leading product token, or else by the plain
       words around the match ("Yahoo Ad monitoring").
    3. A name that is still not a product name (:func:`_is_product_name`): ``""``.
    """
    token = _expand_token(ua, matched) if matched else ""
    if family and token:
        f, t = family.lower(), token.lower()
        if f in t or t in f:
            name = family if len(family) >= len(token) else token
        else:
            name = token
    else:
        name = family or token
    if name and _is_generic(name):
        lead = _LEADING_PRODUCT.match(ua.strip())
        if lead and lead.group().lower() not in ("mozilla", "opera") and not _is_generic(
            _clean(lead.group())
        ):
            name = _clean(lead.group())
        elif matched:
            for segment in re.split(r"[;()]", ua):
                if matched.lower() in segment.lower():
                    plain = segment.strip()
                    if _PLAIN_WORDS.fullmatch(plain) and not _is_generic(plain):
                        name = _clean(plain)
                    break
    name = _clean(name) if name else ""
    return name if _is_product_name(name) else ""


#: Words that are parts of a User-Agent's syntax or of a URL, never a product.
_NOT_NAMES = frozenset(("http", "https", "www", "com", "org", "net", "html", "htm", "compatible",
                        "mozilla", "like", "gecko", "khtml", "version", "mobile", "safari", "chrome",
                        "other", "unknown", "null", "none", "test", "user", "agent", "user-agent"))
_URL_TAIL = re.compile(r"\.(?:s?html?|php|aspx?|jsp|cgi)$|^(?:https?|www)\b", re.IGNORECASE)


def _is_product_name(name: str) -> bool:
    """False for a fragment: empty, a generic word, a URL part (``bot.html``,
    ``http``), a syntax word (``compatible``), or without any letter."""
    if not name or "@" in name or _is_generic(name) or _URL_TAIL.search(name):
        return False
    return name.lower() not in _NOT_NAMES and any(c.isalpha() for c in name)


def _names(family: str | None, matched: str) -> bool:
    """ua-parser's family names the very product a crawler pattern matched (Outlook, 1Password)."""
    if not family:
        return False
    product, family = matched.strip(" /;").lower(), family.lower()
    return product in family or (len(family) >= 4 and family in product)


def _app_token(ua: str, matched: str) -> bool:
    """*matched* is a product token with a version in *ua* ("Outlook-iOS/4.2414.0"), as apps write theirs."""
    return re.search(re.escape(matched) + r"[\w\-]*/\d", ua, re.IGNORECASE) is not None


#: Name of a crawler no list names (``bot`` dimension).
UNNAMED = "other"


def _judge_bot(ua: str, family: str | None, spider: bool, crawler: bool, matched: str | None,
               index_hit: ListMatch | None, list_hit: ListMatch | None) -> tuple[str, str, str]:
    """``(name, category, source)`` of an agent some list calls a crawler.

    *spider*: ua-parser's device is "Spider"; *crawler*: crawlerdetect says
    crawler, having matched the text *matched*; *index_hit*, *list_hit*: what
    :meth:`BotLists.match <logpipe.counting.botlists.BotLists.match>` found.

    Precedence, most specific first (README, "Bots"): ai-crawler-index (a
    curated product name and a kind checked against the operator's
    documentation), then crawler-user-agents (its pattern's product token and
    its tags), then crawlerdetect and ua-parser's "Spider" device (a name, no
    kind: ``other``).  The first list with a kind gives the category and the
    name (ai-crawler-index's ``tool``/``archive`` rows give neither a kind nor
    precedence); a list without a product name passes naming on; nothing
    left: ``other``.
    """
    names = []
    if index_hit:
        names.append(index_hit.name)
    if list_hit:
        # the list that gives the kind names the bot ("Feedly … like FeedFetcher-Google" is Feedly)
        names.insert(0 if index_hit and index_hit.category is None else len(names),
                     _bot_name(ua, family, list_hit.name))
    if crawler or spider:
        # a list's match inside a URL ("…/details/archive.org_bot") names a help page, not the agent
        url_only = list_hit is not None and re.search(r"(?<![/.])" + re.escape(list_hit.name), ua) is None
        names.insert(len(names) - 1 if url_only else len(names), _bot_name(ua, family, matched))
    name = next((n for n in names if n), UNNAMED)
    sources = []
    category = None
    for hit in (index_hit, list_hit):
        if hit is not None:
            if category is None and hit.category is not None:
                category = hit.category
                sources.insert(0, hit.source)
            else:
                sources.append(hit.source)
    if crawler:
        sources.append("crawlerdetect")
    if spider:
        sources.append("ua-parser")
    return name, category or "other", ",".join(sources)


class UserAgentClassifier:
    """Classify User-Agent strings into browser, platform and bot.

    Args:
        cache_size: how many distinct user agents to remember (default 8192).
            A few hundred distinct strings cover most traffic; when the cache
            is full it is emptied and refilled.  Measured on the 64,186 lines
            (1,648 distinct UAs) of ``shared/data/real``, a hit costs the same
            ~50 ns per line in :meth:`classify` as through a bare
            ``functools.lru_cache`` (15 interleaved passes), and 8,192 entries
            never fill; an LRU saves misses only when the cache is much smaller
            than the set of distinct agents (256 entries: 1,781 misses instead
            of 2,218), and a miss costs about 0.37 ms.

    Raises:
        ValueError: *cache_size* is less than 1.
        ImportError: ua-parser-rs (the Rust resolver), crawler-user-agents or
            ai-crawler-index is not installed.

    Not safe to share between threads without a lock; each worker thread or
    process should own one instance (a miss is serialised by an internal lock,
    so sharing is merely slower, not wrong).
    """

    def __init__(self, cache_size: int = 8192) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, not {cache_size!r}")
        self.cache_size = cache_size
        agents, systems, devices = load_lazy_builtins()
        # Only "Spider" is wanted from the device domain.  A Rust resolver with
        # just the Spider rules costs 2 MB instead of 14 MB; when it says
        # Spider, the whole device list decides in order (Python re, compiled
        # on first use), because an earlier non-spider rule may win (Kindle's
        # "Silk" is in the generic bot rule).
        self._devices = devices
        self._device_regexes: list | None = None
        spiders = [m for m in devices if m.family == "Spider"]
        self._resolver = RustResolver((agents, systems, spiders))
        self._crawlers = CrawlerDetect()  # one instance: it compiles its regex once
        self._lists = BotLists()
        self._exclusions = get_compiled_exclusions_regex()
        self._prefilter = _crawler_prefilter()
        self._lock = threading.Lock()
        self._cache: dict[str, Agent] = {}
        self.misses = 0

    def classify(self, user_agent: str) -> Agent:
        """Return the :class:`Agent` of one User-Agent header.

        Args:
            user_agent: the User-Agent header with Apache's log escapes
                already undone (``logpipe.counting.parsing.unescape``); ``-`` or ``""``
                when the header was missing.  Used verbatim as the cache key.

        Returns:
            ``Agent(browser, platform, bot, category, source)``; ``bot`` is
            ``None`` unless ua-parser's device family is ``"Spider"`` or
            crawlerdetect, crawler-user-agents or ai-crawler-index says
            crawler (README, "Bots").  A repeated string costs one dict
            lookup.  Only the first :data:`MAX_AGENT_CHARS` characters are
            looked at.
        """
        try:
            return self._cache[user_agent]
        except KeyError:
            return self._miss(user_agent)

    def is_bot(self, user_agent: str) -> bool:
        """``True`` when :meth:`classify` gives a bot name for *user_agent*."""
        return self.classify(user_agent).bot is not None

    def _miss(self, user_agent: str) -> Agent:
        agent = self._classify_uncached(user_agent[:MAX_AGENT_CHARS])
        with self._lock:
            self.misses += 1
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[user_agent] = agent
        return agent

    def _classify_uncached(self, user_agent: str) -> Agent:
        ua = user_agent.strip()
        if not ua or ua == "-":
            return _EMPTY_AGENT
        result = self._resolver(ua, _DOMAINS)
        family = result.user_agent.family if result.user_agent else None
        if family == OTHER:
            family = None
        platform = result.os.family if result.os else OTHER
        spider = result.device is not None and result.device.family == "Spider" and self._first_device_is_spider(ua)
        crawler, matched = False, None
        if self._may_be_crawler(ua):
            with self._lock:  # CrawlerDetect keeps the last match on the instance
                crawler = self._crawlers.is_crawler(ua)
                matched = self._crawlers.get_matches() if crawler else None
        index_hit, list_hit = self._lists.match(ua)
        # Where the lists disagree (README, "Bots"): see botlists.person_evidence.
        known = platform != OTHER
        app = family is not None and (family == "Electron" or family.endswith(" Desktop Client"))
        if list_hit and not BROWSER_LIKE_TAGS.intersection(list_hit.tags) and person_evidence(
                ua, list_hit.name, known, app=app or _names(family, list_hit.name)):
            list_hit = None
        if matched and not spider and person_evidence(
                ua, matched, known, whole_words=False,
                app=app or _names(family, matched) or (list_hit is None and _app_token(ua, matched))):
            crawler, matched = False, None
        if not (spider or crawler or index_hit or list_hit):
            return Agent(family or OTHER, platform, None)
        return Agent(family or OTHER, platform,
                     *_judge_bot(ua, family, spider, crawler, matched, index_hit, list_hit))


    def _first_device_is_spider(self, ua: str) -> bool:
        # What the full device list says: its first matching rule decides.
        if self._device_regexes is None:
            self._device_regexes = [(re.compile(m.regex, m.flags), m.family == "Spider") for m in self._devices]
        for regex, spider in self._device_regexes:
            if regex.search(ua):
                return spider
        return False

    def _may_be_crawler(self, ua: str) -> bool:
        # crawlerdetect removes its exclusions (browser tokens) first, then
        # searches what is left; the prefilter sees the same text.
        if self._prefilter is None:
            return True
        rest = self._exclusions.sub("", ua)
        return bool(rest) and self._prefilter.search(rest) is not None


_default: UserAgentClassifier | None = None


def is_bot(user_agent: str) -> bool:
    """Module-level shortcut: :meth:`UserAgentClassifier.is_bot` on a shared instance.

    The instance is created on first use (about 0.1 s to build the Rust matchers).
    """
    global _default
    if _default is None:
        _default = UserAgentClassifier()
    return _default.is_bot(user_agent)
