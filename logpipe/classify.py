"""What a request counts for: page-view rules and the dimensions.

One :class:`Classifier` turns a parsed field tuple (see :mod:`logpipe.parsing`)
into counter increments ``(day, dimension, site, value) → n``.  It runs once per
distinct tuple per flush interval, not once per line, and caches every
derived value (day, normalized path, user agent, referrer) on its raw bytes.

Page-view rules (each an option; the README's "What is counted" lists them):

* ``url`` counts page views: a human (not a bot), method GET or HEAD
  (``--page-methods``), status 2xx or 304, not a static asset (an extension in
  ``--static-ext``, ``/robots.txt``, ``/favicon.ico``), not excluded by
  ``--exclude-path``/``--exclude-ip``.  The query string is dropped
  (``--keep-query-param`` keeps listed parameters) and ``/path/`` counts as
  ``/path`` (``--keep-trailing-slash``).  ``--count-all`` counts every request.
* ``referrer``/``referrer_host``/``keyword``/``browser``/``platform`` are
  counted for page views; ``bot`` for every bot request; ``status`` for every
  request; ``notfound`` for every 404; ``post_ip`` for every POST, per hour.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections import Counter
from typing import Callable
from urllib.parse import parse_qsl, urlencode

from .config import Settings
from .keys import normalize_path
from .parsing import day_from_clf, split_request, unescape

__all__ = ["Classifier", "NOT_COUNTED", "REJECTED"]

#: Reasons a parsed request is not a page view (``stats`` keys).
NOT_COUNTED = ("bot", "static", "method", "status", "excluded", "not a path")
#: Reasons a parsed line is rejected altogether.
REJECTED = ("bad request line", "no request line", "bad timestamp")

_ALWAYS_STATIC = ("/robots.txt", "/favicon.ico")


class Classifier:
    """Apply the counting rules to parsed tuples.

    Args:
        settings: the rules' options (``count_all``, ``static_ext`` …).
        fields: the names of the tuple items (``LineParser.fields``).

    Attributes:
        stats: a Counter of outcomes: ``page view`` and the reasons in
            :data:`NOT_COUNTED` and :data:`REJECTED`, in lines.
    """

    def __init__(self, settings: Settings, fields: tuple[str, ...]):
        self.settings = settings
        self.dimensions = settings.dimension_set()
        self.stats: Counter = Counter()
        index = {name: i for i, name in enumerate(fields)}
        for name in ("site", "ip", "day", "hour", "method", "path", "query", "request", "status", "referer"):
            setattr(self, "_i" + name, index.get(name))
        self._iua = index.get("user_agent")
        dims = self.dimensions
        for name in ("status", "notfound", "bot", "url", "browser", "platform", "referrer",
                     "referrer_host", "keyword"):
            setattr(self, "_count_" + name, name in dims)
        self._sites: dict[bytes, str] = {}
        self._statuses: dict[bytes, int] = {}
        self._agent_cache: dict[bytes, object] = {}
        self._referrer_cache: dict[tuple, object] = {}
        self._count_all = settings.count_all
        self._methods = {m.strip().upper().encode() for m in settings.page_methods.split(",") if m.strip()}
        self._static_ext = {"." + e.strip().lower().lstrip(".") for e in settings.static_ext.split(",") if e.strip()}
        self._keep_params = set(settings.keep_query_param)
        self._fold = not settings.keep_trailing_slash
        self._exclude_path = [p for p in settings.exclude_path]
        self._exclude_net = [ipaddress.ip_network(c, strict=False) for c in settings.exclude_ip]
        self._days: dict[bytes, str | None] = {}
        self._paths: dict[tuple[bytes, bytes], tuple[str | None, bool, bool]] = {}
        self._ips: dict[bytes, bool] = {}
        self._agents = None
        self._referrers = None
        wants_agent = self.dimensions & {"browser", "platform", "bot"} or not self._count_all
        if wants_agent and "user_agent" in index:
            from .useragents import UserAgentClassifier

            self._agents = UserAgentClassifier()
        if self.dimensions & {"referrer", "referrer_host", "keyword"} and "referer" in index:
            from .referrers import ReferrerClassifier

            self._referrers = ReferrerClassifier(settings.site_host)

    def add(self, fields: tuple, n: int, out: dict, explain: Callable[[str], None] | None = None) -> None:
        """Count one distinct tuple seen *n* times into *out*.

        Args:
            fields: a tuple from :meth:`LineParser.scan`.
            n: how many lines had exactly these fields.
            out: ``{(day, dimension, site, value): count}``, updated in place;
                *day* is ``YYYY-MM-DD`` (``YYYY-MM-DDTHH`` for ``post_ip``).
            explain: called with a note per decision (``--dry-run --explain``).
        """
        # The hot loop of a flush: locals and inlined dict updates on purpose.
        stats = self.stats
        get = out.get
        raw_day = fields[self._iday] if self._iday is not None else None
        day = self._days.get(raw_day)
        if day is None:
            day = self._days[raw_day] = day_from_clf(raw_day) if raw_day else None
            if day is None:
                stats["bad timestamp"] += n
                if explain:
                    explain("rejected: bad timestamp")
                return
        site = None
        if self._isite is not None:
            raw_site = fields[self._isite]
            site = self._sites.get(raw_site)
            if site is None and raw_site:
                site = self._sites[raw_site] = raw_site.decode("ascii", "replace").lower()
            if site == "-":
                site = None
        status_raw = fields[self._istatus] if self._istatus is not None else b"200"
        if self._count_status:
            key = (day, "status", site, status_raw.decode("ascii"))
            out[key] = get(key, 0) + n
        method = fields[self._imethod] if self._imethod is not None else None
        if method:  # None from parse_line, b"" from scan: the request line had another shape
            path = fields[self._ipath]
            query = (fields[self._iquery] or b"") if self._iquery is not None else b""
        else:
            raw_request = fields[self._irequest] if self._irequest is not None else None
            parts = split_request(raw_request) if raw_request else None
            if parts is None:
                reason = "no request line" if raw_request in (None, b"-", b"") else "bad request line"
                stats[reason] += n
                if explain:
                    explain(f"rejected: {reason}")
                return
            method, path, query = parts
        if self._exclude_net and self._iip is not None and self._excluded_ip(fields[self._iip]):
            stats["excluded"] += n
            if explain:
                explain("not counted: excluded ip")
            return
        cached = self._paths.get((path, query))
        if cached is None:
            if len(self._paths) > 100_000:  # bounded: one day of a large site's URLs
                self._paths.clear()
            cached = self._paths[(path, query)] = self._path_facts(path, query)
        value, static, excluded = cached
        if value is None:
            stats["not a path"] += n
            if explain:
                explain("not a page view: request target is not a path")
            return
        if excluded:
            stats["excluded"] += n
            if explain:
                explain("not counted: excluded path")
            return
        status = self._statuses.get(status_raw)
        if status is None:
            status = self._statuses[status_raw] = int(status_raw)
        if status == 404 and self._count_notfound:
            key = (day, "notfound", site, value)
            out[key] = get(key, 0) + n
        agent = None
        if self._agents is not None:
            agent = self._classify_agent(fields[self._iua])
            if agent.bot is not None and self._count_bot:
                key = (day, "bot", site, agent.bot)
                out[key] = get(key, 0) + n
        if self._count_all:
            stats["page view"] += n
            if self._count_url:
                key = (day, "url", site, value)
                out[key] = get(key, 0) + n
            if explain:
                explain(f"counted (--count-all): url {value}")
            return
        if agent is not None and agent.bot is not None:
            reason = "bot"
        elif static:
            reason = "static"
        elif method not in self._methods:
            reason = "method"
        elif not (200 <= status < 300 or status == 304):
            reason = "status"
        else:
            reason = None
        if reason is not None:
            stats[reason] += n
            if explain:
                explain(f"not a page view: {reason}" + (f" ({agent.bot})" if reason == "bot" else ""))
            return
        stats["page view"] += n
        if self._count_url:
            key = (day, "url", site, value)
            out[key] = get(key, 0) + n
        if agent is not None:
            if self._count_browser:
                key = (day, "browser", site, agent.browser)
                out[key] = get(key, 0) + n
            if self._count_platform:
                key = (day, "platform", site, agent.platform)
                out[key] = get(key, 0) + n
        if self._referrers is not None:
            ref = self._classify_referrer(fields[self._ireferer], site)
            if ref.url is not None and self._count_referrer:
                key = (day, "referrer", site, ref.url)
                out[key] = get(key, 0) + n
            if ref.host is not None and self._count_referrer_host:
                key = (day, "referrer_host", site, ref.host)
                out[key] = get(key, 0) + n
            if ref.keyword is not None and self._count_keyword:
                key = (day, "keyword", site, ref.keyword)
                out[key] = get(key, 0) + n
        if explain:
            explain(f"page view: url {value}")

    def add_post(self, raw_day: bytes, raw_hour: bytes, raw_ip: bytes, n: int, out: dict) -> None:
        """Count *n* POST requests from one client IP in one hour (``post_ip``)."""
        day = self._days.get(raw_day)
        if day is None:
            day = self._days[raw_day] = day_from_clf(raw_day)
            if day is None:
                return
        key = (f"{day}T{raw_hour.decode('ascii')}", "post_ip", None, raw_ip.decode("ascii", "replace"))
        out[key] = out.get(key, 0) + n

    def _classify_agent(self, raw: bytes):
        agent = self._agent_cache.get(raw)
        if agent is None:
            if len(self._agent_cache) > 50_000:
                self._agent_cache.clear()
            agent = self._agent_cache[raw] = self._agents.classify(unescape(raw).decode("utf-8", "replace"))
        return agent

    def _classify_referrer(self, raw: bytes, site: str | None):
        cache_key = (raw, site)
        ref = self._referrer_cache.get(cache_key)
        if ref is None:
            if len(self._referrer_cache) > 50_000:
                self._referrer_cache.clear()
            ref = self._referrer_cache[cache_key] = self._referrers.classify(raw, site)
        return ref

    def _path_facts(self, path: bytes, query: bytes) -> tuple[str | None, bool, bool]:
        """(normalized value or None, is static, is excluded) for a request target.

        *path* and *query* are the bytes the client sent: the fast parser's
        path has no escapes (its pattern excludes ``\\``) and
        :func:`~logpipe.parsing.split_request` has already undone them, so
        nothing is unescaped here (a second pass would read a literal
        backslash as an escape).
        """
        raw = path
        if raw.startswith((b"http://", b"https://")):
            # absolute-form request target (RFC 9112 §3.2.2): keep its path.
            slash = raw.find(b"/", raw.find(b"//") + 2)
            raw = raw[slash:] if slash > 0 else b"/"
        if not raw.startswith(b"/"):
            return None, False, False
        value = normalize_path(raw, fold_trailing_slash=self._fold)
        lower = value.lower()
        last = lower.rsplit("/", 1)[-1]
        dot = last.rfind(".")
        static = lower in _ALWAYS_STATIC or (dot > 0 and last[dot:] in self._static_ext)
        excluded = any(fnmatch.fnmatchcase(value, glob) for glob in self._exclude_path)
        if query and self._keep_params:
            kept = [(k, v) for k, v in parse_qsl(query[1:].decode("latin-1"), keep_blank_values=True)
                    if k in self._keep_params]
            if kept:
                value = value + "?" + urlencode(sorted(kept))
                value = normalize_path(value, fold_trailing_slash=False)
        return value, static, excluded

    def _excluded_ip(self, raw_ip: bytes) -> bool:
        hit = self._ips.get(raw_ip)
        if hit is None:
            try:
                address = ipaddress.ip_address(raw_ip.decode("ascii"))
                hit = any(address in net for net in self._exclude_net)
            except ValueError:
                hit = False
            self._ips[raw_ip] = hit
        return hit


def needed_fields(settings: Settings) -> set[str]:
    """The tuple fields the counting rules read, given *settings*.

    The client IP makes nearly every line distinct, so it is captured only
    when ``--exclude-ip`` needs it.
    """
    dims = settings.dimension_set()
    fields = {"site", "day", "method", "path", "request", "status", "user_agent"}
    if settings.keep_query_param:
        fields.add("query")
    if dims & {"referrer", "referrer_host", "keyword"}:
        fields.add("referer")
    if settings.exclude_ip:
        fields.add("ip")
    # post_ip is counted from a side pass over POST lines (Pipeline.feed), so
    # the client address stays out of the main tuple.
    return fields
