"""What a request counts for: page-view rules and the dimensions.

One :class:`Classifier` turns parsed field tuples (see :mod:`logpipe.counting.parsing`)
into counter increments ``(day, dimension, site, value) → n``.  Per line only C
code runs (:meth:`Classifier.line_keys`: the fields but the User-Agent, and the
agent's cached classification); the rules run once per distinct line key, and
once per distinct *head* (virtual host, method, path, status) for the parts
that do not depend on the day, Referer or User-Agent.  Every derived value
(day, normalized path, user agent, referrer) is cached on its raw bytes.

Page-view rules (each an option; the README's "What is counted" lists them):

* ``url`` counts page views: a human (not a bot), method GET or HEAD
  (``--page-methods``), status 2xx or 304, not a static asset (an extension in
  ``--static-ext``, ``/robots.txt``, ``/favicon.ico``), not excluded by
  ``--exclude-path``/``--exclude-ip``.  The query string is dropped
  (``--keep-query-param`` keeps listed parameters) and ``/path/`` counts as
  ``/path`` (``--keep-trailing-slash``).  ``--count-all`` counts every request.
* ``referrer``/``referrer_host``/``keyword``/``browser``/``platform`` are
  counted for page views; ``visitors`` (unique (client address, User-Agent)
  pairs of page views) is collected apart, from the same tuples and verdicts,
  by :class:`logpipe.counting.visitors.VisitCollector`; ``bot`` (the crawler's
  name) and ``bot_category`` (its kind) for every bot request; ``status`` for every
  request; ``notfound`` for every 404; ``post_ip`` for every POST, per hour.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import operator
from collections import Counter
from itertools import repeat
from typing import Callable, Iterable
from urllib.parse import parse_qsl, urlencode

from logpipe.config import Settings
from logpipe.keys import normalize_path
from logpipe.counting.parsing import day_from_clf, split_request, unescape

__all__ = ["Classifier", "NOT_COUNTED", "REJECTED"]

#: Reasons a parsed request is not a page view (``stats`` keys).
NOT_COUNTED = ("bot", "static", "method", "status", "excluded", "not a path")
#: Reasons a parsed line is rejected altogether.
REJECTED = ("bad request line", "no request line", "bad timestamp")

_ALWAYS_STATIC = ("/robots.txt", "/favicon.ico")
#: Entries kept in each per-value cache (heads, paths) before it is emptied:
#: a day of a busy site repeats far fewer heads; a burst of new URLs must not
#: grow memory without bound.
HEAD_CACHE_SIZE = 10_000
#: Distinct User-Agent strings kept classified before the cache starts again.
AGENT_CACHE_SIZE = 20_000


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
        # Counted keys are (every field but the User-Agent, its Agent): see
        # line_keys.  _i<name> is a field's position in that first part.
        self._iua = fields.index("user_agent") if "user_agent" in fields else None
        # The hour and (unless --exclude-ip) the client IP are only for
        # post_ip, counted apart (Pipeline._count_posts): in the key they
        # would make nearly every line distinct.
        apart = {"user_agent", "hour"} | (set() if settings.exclude_ip else {"ip"})
        rest = [i for i, name in enumerate(fields) if name not in apart]
        rest_fields = [fields[i] for i in rest]
        index = {name: i for i, name in enumerate(rest_fields)}
        for name in ("site", "ip", "day", "hour", "method", "path", "query", "request", "status", "referer"):
            setattr(self, "_i" + name, index.get(name))
        self._rest_of = _getter(rest)
        self._ua_of = operator.itemgetter(self._iua) if self._iua is not None else None
        dims = self.dimensions
        for name in ("status", "notfound", "bot", "bot_category", "url", "browser", "platform", "referrer",
                     "referrer_host", "keyword"):
            setattr(self, "_count_" + name, name in dims)
        self._sites: dict[bytes, str] = {}
        self._statuses: dict[bytes, int] = {}
        self._agent_cache: _AgentCache | None = None
        self._referrer_cache: dict[tuple, object] = {}
        self._count_all = settings.count_all
        self._methods = {m.strip().upper().encode() for m in settings.page_methods.split(",") if m.strip()}
        self._static_ext = {"." + e.strip().lower().lstrip(".") for e in settings.static_ext.split(",") if e.strip()}
        self._keep_params = set(settings.keep_query_param)
        self._fold = not settings.keep_trailing_slash
        self._exclude_path = [p for p in settings.exclude_path]
        self._exclude_net = [ipaddress.ip_network(c, strict=False) for c in settings.exclude_ip]
        self._days: dict[bytes, str] = {}
        self._paths: dict[tuple[bytes, bytes], tuple[str | None, bool, bool]] = {}
        # A tuple's *head*: every field but the day, hour, Referer and
        # User-Agent; _h<name> is a field's position in it.
        in_head = [i for i, name in enumerate(rest_fields) if name not in ("day", "hour", "referer")]
        for position, i in enumerate(in_head):
            setattr(self, "_h" + rest_fields[i], position)
        self._head_of = _getter(in_head)
        #: The head's positions in the parsed tuple (VisitCollector builds heads from those).
        self.head_fields = [rest[i] for i in in_head]
        self._day_of = operator.itemgetter(self._iday) if self._iday is not None else (lambda f: None)
        self._heads: dict[tuple, tuple] = {}
        self._ips: dict[bytes, bool] = {}
        self._agents = None
        self._referrers = None
        wants_agent = self.dimensions & {"browser", "platform", "bot", "bot_category"} or not self._count_all
        if wants_agent and self._iua is not None:
            from logpipe.counting.useragents import UserAgentClassifier

            self._agents = UserAgentClassifier()
            self._agent_cache = _AgentCache(self._agents.classify)
        if self.dimensions & {"referrer", "referrer_host", "keyword"} and "referer" in index:
            from logpipe.counting.referrers import ReferrerClassifier

            self._referrers = ReferrerClassifier(settings.site_host)

    def add(self, fields: tuple, n: int, out: dict, explain: Callable[[str], None] | None = None) -> None:
        """Count one distinct tuple seen *n* times into *out*.

        Args:
            fields: a tuple from :meth:`LineParser.scan` or ``parse_line``.
            n: how many lines had exactly these fields.
            out: ``{(day, dimension, site, value): count}``, updated in place;
                *day* is ``YYYY-MM-DD`` (``YYYY-MM-DDTHH`` for ``post_ip``).
            explain: called with a note per decision (``--dry-run --explain``).
        """
        (key,) = self.line_keys([fields])
        self.add_counts(((key, n),), out, explain)

    def line_keys(self, tuples: list[tuple]) -> Iterable[tuple]:
        """What to count per parsed line: ``(fields but the User-Agent, Agent or None)``;
        the hour and client IP (kept for ``post_ip``) are left out as well.

        Runs in C per line (``zip``/``map``/``itemgetter`` and a dict lookup
        per User-Agent, :class:`_AgentCache`): many distinct agents share one
        ``Agent(browser, platform, bot)``, so counting these keys instead of
        the raw tuples leaves fewer distinct keys to :meth:`add_counts` (on
        ``bench/``'s real logs, 218,377 instead of 464,432 in 1,018,430 lines)
        and no copy of each User-Agent string in memory.

        Args:
            tuples: tuples from :meth:`LineParser.scan` or ``parse_line``.
        """
        if self._agent_cache is None:
            return zip(map(self._rest_of, tuples), repeat(None))
        return zip(map(self._rest_of, tuples), map(self._agent_cache.__getitem__, map(self._ua_of, tuples)))

    def add_counts(self, counted, out: dict, explain: Callable[[str], None] | None = None) -> None:
        """Count many distinct keys: *counted* yields ``(key, n)`` pairs, *key*
        from :meth:`line_keys` (e.g. ``dict.items()`` of a count of them).

        The fields other than the day, Referer and User-Agent (the *head*:
        virtual host, method, path, status …) are judged once per distinct
        head (:meth:`_judge_head`, cached); per tuple only the day, head,
        user-agent and referrer cache lookups and the increments remain.  The
        real logs of ``bench/`` have 35× fewer distinct heads than distinct
        tuples (13,221 and 464,432 in 1,018,430 lines).
        """
        # The hot loop of a flush: locals and inlined dict updates on purpose.
        stats = self.stats
        get = out.get
        heads = self._heads
        head_get = heads.get
        head_of = self._head_of
        day_of = self._day_of
        day_get = self._days.get
        iref = self._ireferer
        referrers = self._referrers is not None
        count_bot, count_all, count_url = self._count_bot, self._count_all, self._count_url
        count_bot_category = self._count_bot_category
        count_browser, count_platform = self._count_browser, self._count_platform
        count_ref, count_host, count_keyword = self._count_referrer, self._count_referrer_host, self._count_keyword
        for (fields, agent), n in counted:
            raw_day = day_of(fields)
            day = day_get(raw_day) or self._day(raw_day)
            if day is None:
                stats["bad timestamp"] += n
                if explain:
                    explain("rejected: bad timestamp")
                continue
            head = head_of(fields)
            verdict = head_get(head)
            if verdict is None:
                if len(heads) >= HEAD_CACHE_SIZE:
                    heads.clear()
                verdict = heads[head] = self._judge_head(head)
            status, final, note, notfound, reason, site, value = verdict
            if status is not None:
                key = (day, "status", site, status)
                out[key] = get(key, 0) + n
            if final is not None:
                stats[final] += n
                if explain:
                    explain(note)
                continue
            if notfound:
                key = (day, "notfound", site, value)
                out[key] = get(key, 0) + n
            if agent is not None:
                if agent.bot is not None:
                    if count_bot:
                        key = (day, "bot", site, agent.bot)
                        out[key] = get(key, 0) + n
                    if count_bot_category:
                        key = (day, "bot_category", site, agent.category)
                        out[key] = get(key, 0) + n
                    if not count_all:
                        stats["bot"] += n
                        if explain:
                            explain(f"not a page view: bot {agent.bot} ({agent.category}; lists: {agent.source})")
                        continue
            if count_all:
                stats["page view"] += n
                if count_url:
                    key = (day, "url", site, value)
                    out[key] = get(key, 0) + n
                if explain:
                    explain(f"counted (--count-all): url {value}")
                continue
            if reason is not None:
                stats[reason] += n
                if explain:
                    explain(f"not a page view: {reason}")
                continue
            stats["page view"] += n
            if count_url:
                key = (day, "url", site, value)
                out[key] = get(key, 0) + n
            if agent is not None:
                if count_browser:
                    key = (day, "browser", site, agent.browser)
                    out[key] = get(key, 0) + n
                if count_platform:
                    key = (day, "platform", site, agent.platform)
                    out[key] = get(key, 0) + n
            if referrers:
                ref = self._classify_referrer(fields[iref], site)
                if ref.url is not None and count_ref:
                    key = (day, "referrer", site, ref.url)
                    out[key] = get(key, 0) + n
                if ref.host is not None and count_host:
                    key = (day, "referrer_host", site, ref.host)
                    out[key] = get(key, 0) + n
                if ref.keyword is not None and count_keyword:
                    key = (day, "keyword", site, ref.keyword)
                    out[key] = get(key, 0) + n
            if explain:
                explain(f"page view: url {value}")

    @property
    def count_all(self) -> bool:
        """``--count-all``: every request counts, bots' too."""
        return self._count_all

    def agent_lookup(self) -> Callable[[bytes], object] | None:
        """The cached User-Agent verdicts as a C-level lookup (raw User-Agent bytes →
        an ``Agent`` with ``.bot``), or None when User-Agents are not classified."""
        return self._agent_cache.__getitem__ if self._agent_cache is not None else None

    def page_of(self, head: tuple) -> tuple[str | None, str] | None:
        """``(site, url)`` when a request with *head* (its :attr:`head_fields`) is a page
        view for a human User-Agent — the ``url`` dimension's rules, judged once per
        head and cached; None when it is not (static, method, status, excluded, rejected)."""
        verdict = self._heads.get(head)
        if verdict is None:
            if len(self._heads) >= HEAD_CACHE_SIZE:
                self._heads.clear()
            verdict = self._heads[head] = self._judge_head(head)
        _status, final, _note, _notfound, reason, site, value = verdict
        if final is not None or (reason is not None and not self._count_all):
            return None
        return site, value

    def day(self, raw_day: bytes | None) -> str | None:
        """``YYYY-MM-DD`` of a ``%t`` day (``21/Nov/2026``), cached; None when invalid."""
        return self._days.get(raw_day) or self._day(raw_day)

    def _day(self, raw_day: bytes | None) -> str | None:
        """``YYYY-MM-DD`` of a ``%t`` day (``21/Nov/2026``), cached; None when invalid."""
        day = day_from_clf(raw_day) if raw_day else None
        if day is not None:
            self._days[raw_day] = day
        return day

    def _judge_head(self, head: tuple) -> tuple:
        """The verdict shared by every tuple with these fields (all but the
        day, Referer and User-Agent; see :meth:`add_counts`).

        Returns ``(status, final, note, notfound, reason, site, value)``:
        *status* is the status code to count (None when ``status`` is not a
        dimension); *final* the stats reason when the request is not counted
        whatever its User-Agent, with *note* for ``--explain``; *notfound*
        whether it counts as a 404; *reason* the reason it is not a page view
        unless it is a bot (``static``, ``method``, ``status``), None for a
        page view; *site* the virtual host or None; *value* the normalized
        URL path.
        """
        site = None
        if self._isite is not None:
            raw_site = head[self._hsite]
            site = self._sites.get(raw_site)
            if site is None and raw_site:
                site = self._sites[raw_site] = raw_site.decode("ascii", "replace").lower()
            if site == "-":
                site = None
        status_raw = head[self._hstatus] if self._istatus is not None else b"200"
        status_value = status_raw.decode("ascii") if self._count_status else None
        method = head[self._hmethod] if self._imethod is not None else None
        if method:  # None from parse_line, b"" from scan: the request line had another shape
            path = head[self._hpath]
            query = (head[self._hquery] or b"") if self._iquery is not None else b""
        else:
            raw_request = head[self._hrequest] if self._irequest is not None else None
            parts = split_request(raw_request) if raw_request else None
            if parts is None:
                reason = "no request line" if raw_request in (None, b"-", b"") else "bad request line"
                return (status_value, reason, f"rejected: {reason}", False, None, site, None)
            method, path, query = parts
        if self._exclude_net and self._iip is not None and self._excluded_ip(head[self._hip]):
            return (status_value, "excluded", "not counted: excluded ip", False, None, site, None)
        cached = self._paths.get((path, query))
        if cached is None:
            if len(self._paths) >= HEAD_CACHE_SIZE:
                self._paths.clear()
            cached = self._paths[(path, query)] = self._path_facts(path, query)
        value, static, excluded = cached
        if value is None:
            return (status_value, "not a path", "not a page view: request target is not a path",
                    False, None, site, None)
        if excluded:
            return (status_value, "excluded", "not counted: excluded path", False, None, site, None)
        status = self._statuses.get(status_raw)
        if status is None:
            status = self._statuses[status_raw] = int(status_raw)
        if static:
            reason = "static"
        elif method not in self._methods:
            reason = "method"
        elif not (200 <= status < 300 or status == 304):
            reason = "status"
        else:
            reason = None
        return (status_value, None, None, status == 404 and self._count_notfound, reason, site, value)

    def add_post(self, raw_day: bytes, raw_hour: bytes, raw_ip: bytes, n: int, out: dict) -> None:
        """Count *n* POST requests from one client IP in one hour (``post_ip``)."""
        day = self.day(raw_day)
        if day is None:
            return
        key = (f"{day}T{raw_hour.decode('ascii')}", "post_ip", None, raw_ip.decode("ascii", "replace"))
        out[key] = out.get(key, 0) + n

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
        :func:`~logpipe.counting.parsing.split_request` has already undone them, so
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


class _AgentCache(dict):
    """Raw User-Agent bytes (as logged, escaped) → :class:`~logpipe.counting.useragents.Agent`.

    A dict so that a hit is C code when called through ``__getitem__`` by
    ``map``; a miss unescapes, classifies and stores.  Holds at most
    :data:`AGENT_CACHE_SIZE` agents, then starts again empty.
    """

    def __init__(self, classify: Callable[[str], object]):
        super().__init__()
        self._classify = classify

    def __missing__(self, raw: bytes):
        if len(self) >= AGENT_CACHE_SIZE:
            self.clear()
        agent = self[raw] = self._classify(unescape(raw).decode("utf-8", "replace"))
        return agent


def _getter(indices: list[int]) -> Callable[[tuple], tuple]:
    """A C-level function returning the items at *indices* of a tuple, as a tuple."""
    if len(indices) > 1:
        return operator.itemgetter(*indices)
    if indices:  # itemgetter of one index returns the item itself, not a tuple
        only = indices[0]
        return lambda fields: (fields[only],)
    return lambda fields: ()


def needed_fields(settings: Settings) -> set[str]:
    """The tuple fields the counting rules read, given *settings*.

    The client IP and hour make nearly every line distinct: they are
    captured for ``--exclude-ip`` and ``post_ip`` only, and only the former
    puts the IP in the classifier's line keys.
    """
    dims = settings.dimension_set()
    fields = {"site", "day", "method", "path", "request", "status", "user_agent"}
    if settings.keep_query_param:
        fields.add("query")
    if dims & {"referrer", "referrer_host", "keyword"}:
        fields.add("referer")
    if settings.exclude_ip or "visitors" in dims:
        # visitors: read by VisitCollector only, not put in the line keys
        fields.add("ip")
    if "post_ip" in dims:
        # Read by Pipeline._count_posts only; Classifier leaves them out of
        # its line keys.
        fields |= {"ip", "hour"}
    return fields
