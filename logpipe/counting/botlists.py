"""Two maintained crawler lists, matched with RE2: which list knows an agent, its name, its kind.

crawlerdetect and ua-parser (:mod:`logpipe.counting.useragents`) say *whether*
an agent is a crawler; these lists add the crawlers they miss and say *what
kind* it is (the ``bot_category`` dimension, :data:`CATEGORIES`):

* **crawler-user-agents** (PyPI ``crawler-user-agents``, Martin Monperrus'
  list behind many log analysers' bot filters, MIT): about 1,500 regular
  expressions, each with ``tags`` (``search-engine``, ``ai-crawler``, ``seo``,
  ``monitoring``, ``feed-reader``, ``social-preview``, ``scanner``,
  ``http-library``, ``browser-automation``, ``advertising``, ``archiver``,
  ``academic``) and sample ``instances``.  The patterns are case-sensitive, as
  the list's own ``is_crawler`` uses them by default.
* **ai-crawler-index** (PyPI ``ai-crawler-index``, data CC0-1.0): about 150
  crawlers, each a product token with a curated ``name`` and one ``category``
  checked against the operator's documentation: ``ai-training``, ``dataset``,
  ``ai-search``, ``user-fetch``, ``search``, ``seo``, ``archive``, ``preview``,
  ``tool``.  It is the only list that tells an AI *training* crawler from an AI
  *search* indexer and from a fetch made for one user.  Its tokens are matched
  as whole words, case-insensitively (the package's own ``identify`` matches
  any substring, which would find ``yak`` inside other words).

Both files are read from the installed packages at start-up (``pip install
-U`` updates the lists), only the fields used here are kept, and every
pattern goes into one ``RE2::Set`` per list: one automaton pass per distinct
User-Agent tells which entries match.  The user-agent classifier caches the
answer per distinct string, so none of this runs per line.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import NamedTuple

import re2

__all__ = ["BotLists", "ListMatch", "CATEGORIES", "AI_CATEGORIES", "BROWSER_LIKE_TAGS", "category_of_tags",
           "person_evidence"]

#: Every ``bot_category`` value, in the order reports show them.
CATEGORIES = ("search", "ai-training", "ai-search", "ai-user", "seo", "monitoring", "feed", "social",
              "scanner", "library", "automation", "other")
#: The categories of crawlers run by or for AI models.
AI_CATEGORIES = ("ai-training", "ai-search", "ai-user")

#: ai-crawler-index category → ours; None: not a kind of its own here (its
#: ``tool`` holds AdsBot, Scrapy and FeedFetcher alike; ``archive`` is
#: preservation), so crawler-user-agents' tags decide.
_INDEX_CATEGORY = {
    "ai-training": "ai-training", "dataset": "ai-training", "ai-search": "ai-search",
    "user-fetch": "ai-user", "search": "search", "seo": "seo", "preview": "social",
    "tool": None, "archive": None,
}
#: crawler-user-agents tag → ours, for an entry that is not an AI crawler.
_TAG_CATEGORY = {
    "search-engine": "search", "seo": "seo", "monitoring": "monitoring", "feed-reader": "feed",
    "social-preview": "social", "scanner": "scanner", "http-library": "library",
    "browser-automation": "automation", "advertising": "other", "archiver": "other", "academic": "other",
}
_NOT_A_CRAWLER = "(control token"  # ai-crawler-index rows such as Google-Extended name no User-Agent
#: RE2's memory budget per set, in bytes; a smaller budget makes a miss slower, never wrong.
_SET_MAX_MEM = 16 << 20


def category_of_tags(tags: list[str], name: str = "") -> str:
    """Our category for a crawler-user-agents entry with *tags* (its product *name* helps AI ones).

    The list tags every AI crawler ``ai-crawler`` alone or with a second tag;
    the second tag says which kind: with ``search-engine`` an AI search
    indexer (OAI-SearchBot, DuckAssistBot), with ``browser-automation`` an
    agent working for one user (Devin).  Alone it is a training crawler,
    unless its name ends in ``User`` (OpenAI's, Anthropic's and Perplexity's
    naming for fetches made for one user).  Other entries take their first
    tag's category; no known tag is ``other``.
    """
    if "ai-crawler" in tags:
        if "browser-automation" in tags or name.lower().replace("-", "").endswith("user"):
            return "ai-user"
        if "search-engine" in tags:
            return "ai-search"
        return "ai-training"
    for tag in tags:
        if tag in _TAG_CATEGORY:
            return _TAG_CATEGORY[tag]
    return "other"


#: Tags of entries that are bots whatever the agent looks like: AI agents and
#: automated browsers send a real browser's agent with one product token added.
BROWSER_LIKE_TAGS = frozenset(("ai-crawler", "browser-automation"))
_WORD = re.compile(r"[\w]")
_ENGINE = re.compile(r"^Mozilla/\d\.0 \(.*(?:AppleWebKit/|Gecko/|Trident/)")
_ADDRESS_PATTERN = r"https?://|www\.|\+|@"
_ADDRESS = re.compile(_ADDRESS_PATTERN, re.IGNORECASE)
#: What a crawler adds and a browser never does: a URL, an address, a
#: "compatible; Name" other than old Internet Explorer's, or a crawler word.
_BOT_MARKER = re.compile(_ADDRESS_PATTERN + r"|\bcompatible; (?!MSIE)|bot\b|crawl|spider|headless|scan",
                         re.IGNORECASE)


def person_evidence(ua: str, matched: str, platform_known: bool, *, app: bool = False,
                    whole_words: bool = True) -> bool:
    """True when a pattern's match in *ua* is no evidence of a crawler.

    Patterns without a word boundary match inside other words, and short ones
    match phone models and app names (measured on Matomo's 34,392 browser
    fixtures; README, "Bots").  So the text *matched* (by crawlerdetect or a
    crawler-user-agents entry) does not make a bot when every place it occurs is:

    1. with *whole_words* (crawler-user-agents' patterns name products;
       crawlerdetect's are meant as substrings: ``reader`` in ``8 readers``),
       part of a longer word in an agent whose platform ua-parser knows
       (``Sogou`` in ``SogouMSE``, ``Sonic`` in ``ViewSonic``, ``Butterfly``
       in ``HTC_Butterfly``); or
    2. inside the platform comment of a ``Mozilla/5.0 (…)`` agent whose
       platform ua-parser knows (*platform_known*), a comment without
       ``compatible`` and without a URL or address (``Build/AP3A.240617.008``,
       ``VR BOT 552``: phone models);

    or, with *app* (the caller's judgement that ua-parser names a mail client
    or a desktop app there, or that only crawlerdetect calls it a crawler), when
    the agent is a full browser agent (``Mozilla/N.0 (``, a browser engine, a
    known platform) without any crawler marker (a URL, ``+``, ``@``,
    ``compatible; Name``, bot/crawl/spider/headless/scan): the app token of
    Microsoft Outlook, Slack's ``Sonic``, 1Password.

    ai-crawler-index matches and crawler-user-agents entries tagged
    ``ai-crawler`` or ``browser-automation`` are never second-guessed (the
    caller does not ask).

    Args:
        ua: the User-Agent (unescaped, at most ``MAX_AGENT_CHARS`` characters).
        matched: the text the pattern matched in *ua*.
        platform_known: ua-parser found the operating system.
        app: allow the full-browser-agent rule (see above).
        whole_words: apply rule 1.
    """
    if app and platform_known and _ENGINE.match(ua) is not None and _BOT_MARKER.search(ua) is None:
        return True
    comment_end = ua.find(")") if platform_known and ua.startswith("Mozilla/5.0 (") else -1
    if comment_end > 0 and ("compatible" in ua[:comment_end].lower() or _ADDRESS.search(ua, 0, comment_end)):
        comment_end = -1
    needle = matched.lower()
    if not needle:
        return False
    hay = ua.lower()
    start = hay.find(needle)
    while start >= 0:
        end = start + len(needle)
        # joined to the word before it ("ViewSonic", "HTC_Butterfly") or to letters after it ("SogouMSE")
        inside_word = whole_words and platform_known and ((_WORD.match(needle[0]) and start > 0 and _WORD.match(hay[start - 1]))
                       or (needle[-1].isalnum() and end < len(hay) and hay[end].isalnum()))
        if not inside_word and not (start > 12 and end <= comment_end):
            return False
        start = hay.find(needle, start + 1)
    return True


class ListMatch(NamedTuple):
    """What a list says of one User-Agent.

    Attributes:
        source: ``"ai-crawler-index"`` or ``"crawler-user-agents"``.
        name: the list's product name (ai-crawler-index), or the text the
            pattern matched (crawler-user-agents; the caller grows it into the
            product token around it).
        category: one of :data:`CATEGORIES` (crawler-user-agents: by
            :func:`category_of_tags`), or None when ai-crawler-index has no
            kind for it (its ``tool`` and ``archive``).
        tags: crawler-user-agents' tags (empty for ai-crawler-index).
    """

    source: str
    name: str
    category: str | None
    tags: tuple[str, ...] = ()


_PIP_NAMES = {"crawleruseragents": "crawler-user-agents", "ai_crawler_index": "ai-crawler-index"}


def _package_file(package: str, name: str) -> bytes:
    """The bytes of data file *name* shipped in *package*, without importing the package.

    Both packages load their whole list when imported (ai-crawler-index also
    compiles it with Python's ``re``): about 4 MB and 0.1 s the worker does
    not need.

    Raises:
        ImportError: *package* is not installed.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{package} is not installed (pip install {_PIP_NAMES.get(package, package)})")
    return (Path(list(spec.submodule_search_locations)[0]) / name).read_bytes()


def _compiled_set(patterns: list[str], case_sensitive: bool):
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.max_mem = _SET_MAX_MEM
    found = re2.Set.SearchSet(options)
    for pattern in patterns:
        found.Add(pattern)
    found.Compile()
    return found, options


class BotLists:
    """crawler-user-agents and ai-crawler-index, loaded once and matched with RE2.

    Raises:
        ImportError: a list's package is not installed.
        re2.error: a future list has a pattern RE2 cannot compile (checked by
            the tests on every release the project pins).
    """

    def __init__(self) -> None:
        # Each entry becomes (pattern, tags) as soon as it is decoded: the samples and
        # descriptions are never all in memory at once.
        rows = json.loads(_package_file("crawleruseragents", "crawler-user-agents.json"),
                          object_hook=lambda e: (e["pattern"], tuple(e.get("tags") or ())) if "pattern" in e else e)
        self._patterns = [pattern for pattern, _ in rows]
        self._tags = [tags for _, tags in rows]
        del rows
        self._cua, self._cua_options = _compiled_set(self._patterns, case_sensitive=True)
        self._cua_single: dict[int, object] = {}
        data = json.loads(_package_file("ai_crawler_index", "data.json"))
        rows = [r for r in data["crawlers"] if r.get("ua") and not r["ua"].startswith(_NOT_A_CRAWLER)]
        del data
        self._tokens = [r["ua"] for r in rows]
        self._names = [r["name"] for r in rows]
        self._index_categories = [_INDEX_CATEGORY.get(r["category"]) for r in rows]
        # Whole words only: "YaK/1.0" is Meltwater's crawler, "Yakima" is not.
        # and not inside a URL ("…/details/archive.org_bot" names the crawler's help page).
        words = [r"(?:^|[^\w/.])" + re2.escape(t) + r"(?:$|[^\w])" for t in self._tokens]
        self._index, _ = _compiled_set(words, case_sensitive=False)

    def match(self, user_agent: str) -> tuple[ListMatch | None, ListMatch | None]:
        """``(ai-crawler-index match, crawler-user-agents match)`` for one User-Agent; None where no entry matches.

        Of several ai-crawler-index tokens the longest wins (``Googlebot-Image``
        over ``Googlebot``, as the package's own ``identify`` decides); of
        several crawler-user-agents patterns the one matching the longest text
        wins, then the earlier one in the list.
        """
        index_hit = None
        found = self._index.Match(user_agent)
        if found:
            best = max(found, key=lambda i: (len(self._tokens[i]), -i))
            index_hit = ListMatch("ai-crawler-index", self._names[best], self._index_categories[best])
        list_hit = None
        found = self._cua.Match(user_agent)
        if found:
            spans = []
            for i in found:
                regex = self._cua_single.get(i)
                if regex is None:
                    regex = self._cua_single[i] = re2.compile(self._patterns[i], self._cua_options)
                m = regex.search(user_agent)
                if m is not None:
                    spans.append((-(m.end() - m.start()), i, m.group()))
            if spans:
                _, i, text = min(spans)
                list_hit = ListMatch("crawler-user-agents", text, category_of_tags(self._tags[i], text),
                                     self._tags[i])
        return index_hit, list_hit

    def __len__(self) -> int:
        """How many entries the two lists hold together."""
        return len(self._patterns) + len(self._tokens)
