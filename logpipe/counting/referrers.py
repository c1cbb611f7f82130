"""Referring URL, host, search engine and search keyword of a Referer header.

The search-engine rules are Matomo's community list (``SearchEngines.yml`` from
matomo-org/searchengine-and-social-list, CC0/Unlicense), shipped as
``logpipe/data/search_engines.json`` exactly as Parse.ly's serpextract 0.7.3
(PyPI) converted it; ``logpipe/data/search_engines.NOTICE.md`` gives the source,
licences and how to refresh it.  No PyPI package ships a maintained copy (see
the notice), so logpipe carries the file instead of a dependency.

Lookup and keyword extraction follow Matomo's ``Referrers/SearchEngine.php``:

1. The definition is found by ``host + path``, then ``host``, then the "lossy"
   host (``www.``/``search.``/``m.`` dropped, a country label or TLD, with an
   optional ``com.``/``co.``... before it, replaced by ``{}``) ``+ path``, then
   the lossy host, then Matomo's special cases (``cx=partner-pub-`` → Google
   Custom Search, ``*.search.yahoo.com``).  Any two-letter label counts as a
   country code (Matomo uses its ISO 3166 list; every ccTLD has two letters).
2. The keyword is the first listed parameter present in the query (the
   fragment is searched too), or the first group of a listed ``/regex/``
   applied to the whole URL.  Google's ``tbm=isch|vid|shop`` selects Google
   Images, Video or Shopping.  logpipe's one addition: in Google's old-style
   ``/url?q=http...`` redirects ``q`` is the clicked result, not the query, so
   it counts as hidden.
3. A parameter that is present but empty, or no keyword where the engine's
   ``hiddenkeyword`` patterns (default: ``/^$/`` and ``/``) match path + query
   + fragment, credits the engine with :data:`NOT_PROVIDED` (Matomo: "keyword
   not defined").  Google has sent no ``q`` since 2011, so most Google
   referrals land there.  Any other URL on an engine's host is an ordinary
   referring site (``engine`` is ``None``).
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from collections.abc import Iterable
from importlib import resources
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

__all__ = [
    "Referrer",
    "ReferrerClassifier",
    "NOT_PROVIDED",
    "MAX_KEYWORD",
    "MAX_URL",
    "normalize_keyword",
    "unescape_logged",
]

#: Keyword counted when a search engine is recognised but hides the terms
#: (the name Google Analytics gave it; Matomo says "keyword not defined").
NOT_PROVIDED = "(not provided)"
#: Longest keyword kept, in characters (after normalization).
MAX_KEYWORD = 100
#: Longest referring URL kept, in characters; the path is cut to fit.
MAX_URL = 1024


class Referrer(NamedTuple):
    """What :meth:`ReferrerClassifier.classify` returns; all ``None`` for no referrer.

    Attributes:
        url: ``scheme://host[:port]/path`` of the referring page, without user
            info, query and fragment; the host lowercased, the path as sent
            (percent-encoded), cut to :data:`MAX_URL` characters.
        host: the referring host, lowercase, without port or trailing dot.
        keyword: the normalized search terms, or :data:`NOT_PROVIDED`, for a
            search-engine referral; else ``None``.
        engine: the search engine's name from Matomo's list ("Google", "Bing",
            "Yahoo!", "Yandex", "Baidu", "DuckDuckGo", ...); else ``None``.
    """

    url: str | None
    host: str | None
    keyword: str | None
    engine: str | None


NONE = Referrer(None, None, None, None)

# Apache's ap_escape_logitem: \" \\ \xhh and \b \n \r \t \v (nginx writes \xhh too).
_ESCAPE = re.compile(rb'\\(x[0-9A-Fa-f]{2}|["\\bnrtv])')
_SIMPLE_ESCAPES = {b'"': b'"', b"\\": b"\\", b"b": b"\b", b"n": b"\n",
                   b"r": b"\r", b"t": b"\t", b"v": b"\v"}


def _unescape_one(m: re.Match[bytes]) -> bytes:
    code = m.group(1)
    if len(code) == 3:
        return bytes((int(code[1:], 16),))
    return _SIMPLE_ESCAPES[code]


def unescape_logged(text: str | bytes) -> bytes:
    """Undo Apache's log escaping and return the header's bytes.

    Args:
        text: a quoted log field without its quotes, e.g. ``http://x/\\xc3\\xa9``,
            as the log's bytes or as text.  Apache writes only ASCII; other
            characters of a str are taken as UTF-8 text (lone surrogates from
            ``surrogateescape`` decoding become their bytes).

    Returns:
        The bytes the client sent: ``\\xhh`` → one byte, ``\\"`` → ``"``,
        ``\\\\`` → ``\\``, ``\\n``/``\\t``/... → the control byte.
    """
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    if b"\\" not in raw:
        return raw
    return _ESCAPE.sub(_unescape_one, raw)


# Bytes kept as they are when the referer is turned into ASCII: printable
# ASCII except space; everything else is percent-encoded (as a browser would).
_UNSAFE = re.compile(rb"[^!-~]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
_HOSTNAME = re.compile(r"[a-z0-9_\-]+(?:\.[a-z0-9_\-]+)*")
_IPV6 = re.compile(r"[0-9a-f:.]+")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_TBM = {"isch": "Google Images", "vid": "Google Video", "shop": "Google Shopping"}

# Matomo's UrlHelper::getLossyUrl, with [a-z]{2} standing for its country list.
_LOSSY = (
    (re.compile(r"^(?:w+[0-9]*|search)\."), ""),
    (re.compile(r"(^|\.)m\."), r"\1"),
    (re.compile(r"(?:\.(?:com|org|net|co|it|edu))?\.[a-z]{2}(/|$)"), r".{}\1"),
    (re.compile(r"(^|\.)[a-z]{2}\."), r"\1{}."),
)


def _lossy(host: str) -> str:
    for pattern, repl in _LOSSY:
        host = pattern.sub(repl, host)
    return host


def _php_regex(text: str) -> re.Pattern[str] | None:
    """``'/pattern/flags'`` → compiled pattern; ``None`` when *text* is not one."""
    if len(text) < 2 or text[0] != "/":
        return None
    end = text.rfind("/")
    if end <= 0 or not set(text[end + 1:]) <= set("imsx"):
        return None
    flags = 0
    for letter in text[end + 1:]:
        flags |= {"i": re.I, "m": re.M, "s": re.S, "x": re.X}[letter]
    try:
        return re.compile(text[1:end], flags)
    except re.error:
        return None


class _Engine(NamedTuple):
    name: str
    params: tuple[str | re.Pattern[str], ...]
    hidden: tuple[str | re.Pattern[str], ...]  # literal path strings or patterns
    charsets: tuple[str, ...]


def _load_engines(path: str | None = None) -> dict[str, _Engine]:
    """Map every URL of Matomo's list to its engine definition (last one wins, as in Matomo)."""
    if path is None:
        text = resources.files("logpipe").joinpath("data/search_engines.json").read_text("utf-8")
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    table: dict[str, _Engine] = {}
    for name, configs in json.loads(text).items():
        for config in configs or ():
            params = tuple(_php_regex(p) or p for p in config.get("params", ()))
            hidden_raw = config.get("hiddenkeyword", ["/^$/", "/"])
            hidden = tuple(
                (_php_regex(h) if len(h) > 1 and h.startswith("/") and h.endswith("/") else None) or h
                for h in hidden_raw
            )
            engine = _Engine(name, params, hidden, tuple(config.get("charsets", ())))
            for url in config.get("urls", ()):
                table[url.lower()] = engine
    return table


def _site_key(host: str) -> str:
    """Host as compared for "internal": lowercase, no port, no trailing dot, no ``www.``."""
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port → v6, as classify() reports IPv6 hosts
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    host = host.rstrip(".")
    return host[4:] if host.startswith("www.") else host


def _query_params(query: str) -> list[tuple[str, str]]:
    pairs = []
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((unquote_to_bytes(name.replace("+", " ")).decode("utf-8", "replace"), value))
    return pairs


def _decode_terms(raw: str, charsets: tuple[str, ...]) -> str:
    """Percent-decode (``+`` is a space) and decode as UTF-8, else the engine's charsets."""
    data = unquote_to_bytes(raw.replace("+", " "))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        for charset in charsets:
            try:
                return data.decode(charset)
            except (UnicodeDecodeError, LookupError):
                continue
    return data.decode("utf-8", "replace")


def normalize_keyword(text: str) -> str:
    """NFKC, lowercase, control characters as spaces, whitespace collapsed, trimmed, cut to 100."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    return " ".join(text.split())[:MAX_KEYWORD].rstrip()


class ReferrerClassifier:
    """Classify Referer headers: referring URL and host, search engine and keyword.

    Args:
        site_hosts: the site's own host names (``example.com``, ``www.example.com:8080``
            ...); a referer from one of them is internal and gives all ``None``.
            Compared case-insensitively, without port and without a leading ``www.``.
        cache_size: how many distinct (referer, own host) pairs to remember; the
            cache is emptied when full.
        engines_file: another copy of the engine list (same JSON layout as
            ``logpipe/data/search_engines.json``), e.g. a newer conversion.

    Raises:
        ValueError: *cache_size* is less than 1.
        OSError, ValueError: *engines_file* cannot be read or is not JSON.
    """

    def __init__(
        self,
        site_hosts: Iterable[str] = (),
        cache_size: int = 8192,
        engines_file: str | None = None,
    ) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, not {cache_size!r}")
        self.cache_size = cache_size
        self.site_hosts = frozenset(_site_key(h) for h in site_hosts if h and h.strip())
        self._engines = _load_engines(engines_file)
        self._cache: dict[object, Referrer] = {}
        self._lock = threading.Lock()
        self.misses = 0

    def classify(self, referer: str | bytes, own_host: str | None = None) -> Referrer:
        """Return the :class:`Referrer` of one Referer header.

        Args:
            referer: the ``%{Referer}i`` field as logged, Apache escapes and all
                (``\\xhh``, ``\\"``, ``\\\\`` are undone here); ``-`` or ``""``
                when there was none.  The log's raw bytes are accepted too
                (a str should be ASCII, or UTF-8 decoded with ``surrogateescape``;
                not Latin-1, whose non-ASCII characters would be re-encoded).
            own_host: the request's virtual host (``%v`` or the Host header),
                internal like *site_hosts*; ``None`` when unknown.

        Returns:
            ``Referrer(url, host, keyword, engine)``; all four ``None`` for
            ``-``, empty, unparseable (no ``scheme://host``, a malformed host or
            port) or internal referers.  A repeated call costs one dict lookup.
        """
        key = referer if own_host is None else (referer, own_host)
        try:
            return self._cache[key]
        except KeyError:
            return self._miss(key, referer, own_host)

    def _miss(self, key: object, referer: str | bytes, own_host: str | None) -> Referrer:
        result = self._classify_uncached(referer, own_host)
        with self._lock:
            self.misses += 1
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[key] = result
        return result

    def _classify_uncached(self, referer: str | bytes, own_host: str | None) -> Referrer:
        if referer in ("-", "", b"-", b""):
            return NONE
        raw = unescape_logged(referer.strip())
        text = _UNSAFE.sub(lambda m: b"%%%02X" % m.group()[0], raw).decode("ascii")
        m = _SCHEME.match(text)
        if m is None:
            return NONE
        scheme = m.group(1).lower()
        rest = text[m.end():]
        cut = len(rest)
        for sep in "/?#":
            i = rest.find(sep)
            if 0 <= i < cut:
                cut = i
        netloc, rest = rest[:cut], rest[cut:]
        path, _, fragment = rest.partition("#")
        path, _, query = path.partition("?")
        netloc = netloc.rpartition("@")[2].lower()  # drop user:password@
        if netloc.startswith("["):
            close = netloc.find("]")
            host, port = netloc[1:close], netloc[close + 1:]
            if close < 0 or not _IPV6.fullmatch(host) or (port and not port.startswith(":")):
                return NONE
            port = port[1:]
            url_host = f"[{host}]"
        else:
            host, _, port = netloc.partition(":")
            host = host.rstrip(".")
            if not _HOSTNAME.fullmatch(host):
                return NONE
            url_host = host
        if port and (not port.isdigit() or int(port) > 65535):
            return NONE
        site = host[4:] if host.startswith("www.") else host
        if site in self.site_hosts or (own_host is not None and site == _site_key(own_host)):
            return NONE
        if port and port != _DEFAULT_PORTS.get(scheme):
            url_host = f"{url_host}:{port}"
        path = path or "/"
        url = f"{scheme}://{url_host}{path}"
        if len(url) > MAX_URL:
            url = url[:MAX_URL]
        engine, keyword = self._search(text, host, path, query, fragment)
        return Referrer(url, host, keyword, engine)

    def _search(self, text: str, host: str, path: str, query: str, fragment: str) -> tuple[str | None, str | None]:
        """(engine, keyword) per Matomo's SearchEngine::extractInformationFromUrl, or (None, None)."""
        engines = self._engines
        lossy = _lossy(host)
        for candidate in (host + path, host, lossy + path, lossy):
            engine = engines.get(candidate)
            if engine is not None:
                break
        else:
            if query.startswith("cx=partner-pub-"):
                engine = engines.get("google.com/cse")
            elif ".images.search.yahoo.com" in host:
                engine = engines.get("images.search.yahoo.com")
            elif ".search.yahoo.com" in host:
                engine = engines.get("search.yahoo.com")
            else:
                engine = None
            if engine is None:
                return None, None
        name = engine.name
        search = f"{query}&{fragment}" if fragment else query
        params = _query_params(search)
        if name == "Google":
            tbm = next((v for k, v in params if k == "tbm"), None)
            name = _TBM.get(tbm or "", name)
        keyword: str | None = None  # None: not found; "": found but empty
        for param in engine.params:
            if isinstance(param, str):
                value = next((v for k, v in params if k == param), None)
                if value is None:
                    continue
                keyword = normalize_keyword(_decode_terms(value, engine.charsets))
                break
            m = param.search(text)
            if m and m.groups() and m.group(1):
                keyword = normalize_keyword(_decode_terms(m.group(1), engine.charsets))
                if keyword:
                    break
        if keyword and name == "Google" and path == "/url" and keyword.startswith(("http://", "https://")):
            keyword = ""  # old-style redirect: q is the clicked result's address, not the query
        if keyword:
            return name, keyword
        if keyword == "":
            return name, NOT_PROVIDED
        where = path + (f"?{query}" if query else "") + (f"#{fragment}" if fragment else "")
        for hidden in engine.hidden:
            if hidden.search(where) if isinstance(hidden, re.Pattern) else hidden == where:
                return name, NOT_PROVIDED
        return None, None
