"""``logpipe report --html FILE [--days N]``: one self-contained HTML file from the history database.

The file holds everything it shows -- the numbers (as a JSON block and as
tables) and Chart.js (``logpipe/data/chart.umd.min.js``, MIT, inlined) -- so it
opens offline, from a mail attachment or a static web server.  A
Content-Security-Policy forbids every network request, and every counted value
(URLs and referrers are chosen by visitors, attackers included) reaches the
page as escaped text or JSON, never as markup.

Charts, for the N days ending with ``--date`` (default: the latest rolled-up
day): daily page views and unique visitors (in all, and views for the top URLs), daily requests split
into humans and bots (the bot share) and into humans and each bot category,
the top AI crawlers of each kind (training, AI search, fetches for one user), top referrer hosts, search keywords,
browsers, platforms, bots and status codes; tables list the top values of each,
plus the full referrers and the most requested missing pages.  A day that no
rollup covered is a gap, not a zero.

When the period reaches the live days (``--date today``; yesterday until it is
rolled up) their numbers come from memcached.  If memcached cannot be reached
the report is still written with every day the database has, the live days
are marked "unavailable" (a gap, not a zero), one line says so on stderr and
the exit status is 3 (:data:`logpipe.commands.query.EXIT_INCOMPLETE`).

Values are shown decoded for reading (``/café.html``, control characters
escaped: :mod:`logpipe.commands.display`); the embedded JSON keeps them as
counted, with the shown form in ``"shown"``.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
import sys
import tempfile
from importlib import resources

from logpipe import __version__

__all__ = ["add_arguments", "run", "build_report", "render_html", "write_report", "chart_js"]

#: Dimensions shown as "top values" panels, in page order: (dimension, title, chart kind).
PANELS = [
    ("referrer_host", "Referring sites", "bar"),
    ("keyword", "Search keywords", "bar"),
    ("browser", "Browsers", "doughnut"),
    ("platform", "Platforms", "doughnut"),
    ("bot", "Bots", "bar"),
    ("bot_category", "Bot categories", "doughnut"),
    ("status", "Status codes", "bar"),
    ("referrer", "Referrers (full URL)", None),
    ("notfound", "Not found (404)", None),
]


def add_arguments(parser, name: str) -> None:
    """Add ``report``'s options to *parser*."""
    from logpipe.commands.query import EXIT_INCOMPLETE

    parser.description = "Write one self-contained HTML report (charts + tables) from the history database."
    from logpipe.commands.dates import DATE_HELP, day_arg

    parser.epilog = ("Live days in the period (today, yesterday until rolled up) are read from memcached. "
                     "Exit status: 0 written; 1 no data or database error; 2 bad option; "
                     f"{EXIT_INCOMPLETE} written, but memcached could not be reached: live days are "
                     "marked unavailable.")
    parser.add_argument("--html", metavar="FILE", required=True,
                        help="write the report to FILE, replaced atomically; - for stdout (required)")
    parser.add_argument("--days", type=int, default=30, metavar="N",
                        help="how many days, ending with --date (default: 30; days)")
    parser.add_argument("--date", metavar="DAY", type=day_arg,
                        help=f"the last day ({DATE_HELP}; default: the latest day in the database; "
                             "today adds today's counts from memcached)")
    parser.add_argument("--site", metavar="VHOST", help="only this virtual host (default: every site)")
    parser.add_argument("--top", type=int, default=10, metavar="N",
                        help="values per panel and table (default: 10; values)")
    parser.add_argument("--title", default=None, metavar="TEXT",
                        help="the page title (default: logpipe report)")


def run(args) -> int:
    """Run ``logpipe report``; 0 written, 1 no data or database error, 2 bad option, 3 written without memcached."""
    from logpipe.api import Reader
    from logpipe.commands.main import settings_from
    from logpipe.commands.query import EXIT_INCOMPLETE
    from logpipe.history import History, HistoryError

    settings = settings_from(args)
    if args.days < 1 or args.top < 1:
        sys.stderr.write("logpipe report: --days and --top must be 1 or more\n")
        return 2
    history = History(settings.db)
    reader = Reader(settings.memcached, prefix=settings.prefix, timeout=max(settings.timeout, 1.0))
    try:
        end = args.date or history.last_day()
        if end is None:
            sys.stderr.write(f"logpipe report: no rolled-up data in {settings.db} (run logpipe rollup)\n")
            return 1
        data = build_report(history, end, args.days, site=args.site, top=args.top, title=args.title,
                            reader=reader)
    except HistoryError as exc:
        sys.stderr.write(f"logpipe report: {exc}\n")
        return 1
    except ValueError as exc:
        sys.stderr.write(f"logpipe report: {exc}\n")
        return 2
    finally:
        history.close()
        reader.close()
    try:
        write_report(render_html(data), args.html)
    except OSError as exc:
        sys.stderr.write(f"logpipe report: cannot write {args.html}: {exc.strerror or exc}\n")
        return 1
    missing = data["unavailable_days"]
    if missing:
        sys.stderr.write(f"logpipe report: memcached {settings.memcached} cannot be reached: "
                         f"{', '.join(missing)} unavailable in the report (every database day is there)\n")
        return EXIT_INCOMPLETE
    return 0


def build_report(history, end: str, days: int, *, site: str | None = None, top: int = 10,
                 title: str | None = None, reader=None, today: str | None = None) -> dict:
    """Everything the report shows, as JSON-ready data (also embedded in the page).

    Args:
        history: a :class:`logpipe.history.History`.
        end: the last day, ``YYYY-MM-DD``.
        days: how many days (≥ 1) ending with *end*.
        site: one vhost, or None for every site together.
        top: values per panel.
        title: the page title (default "logpipe report").
        reader: a :class:`logpipe.api.Reader` for the live days in the period, or
            None (then they are unavailable).
        today: today's date (default: the local date).

    Returns:
        ``{"days": [...], "covered": [...], "daily": {"page_views", "visitors", "requests", "bots"},
        "summary": {...}, "urls": {"top", "series"}, "panels": {dimension: {"top", "total"}},
        "sources": [...], ...}``; per-day lists follow ``days`` and hold None on days no
        rollup covered or memcached could not give (``"unavailable_days"``); ``"live"``
        marks the days read from memcached; ``"shown"`` maps values to their display form
        where it differs.

    Raises:
        ValueError: a bad date.  HistoryError: the database cannot be read.
    """
    last = _dt.date.fromisoformat(end)
    first = last - _dt.timedelta(days=days - 1)
    names = [(first + _dt.timedelta(days=i)).isoformat() for i in range(days)]
    covered_set = history.covered_days(first, last)
    live = _Live(history, reader, first, last, covered_set, site, today)
    daily = {dimension: {**history.totals(dimension, first, last, site), **live.totals(dimension)}
             for dimension in ("url", "status", "bot")}

    def ranked(dimension: str) -> tuple[list, int]:
        if not live.days:
            return (history.top(dimension, first, last, top, site),
                    sum(history.totals(dimension, first, last, site).values()))
        found = live.top(dimension, top)
        return found.rows, found.total

    top_urls, _ = ranked("url")
    series = history.series("url", [v for v, _ in top_urls], first, last, site)
    for value, per in live.series("url", [v for v, _ in top_urls]).items():
        series.setdefault(value, {}).update(per)
    panels = {}
    shown_as: dict[str, str] = {}
    for dimension, panel_title, kind in PANELS:
        rows, total = ranked(dimension)
        panels[dimension] = {"title": panel_title, "chart": kind, "total": total,
                             "top": [[v, n] for v, n in rows]}
        shown_as.update(_shown_map(dimension, [v for v, _ in rows]))
    shown_as.update(_shown_map("url", [v for v, _ in top_urls]))
    # after every memcached read: a live day that failed on the way is a gap, never a zero
    covered = [d in covered_set and d not in live.days or d in live.read for d in names]

    def per_day(values: dict[str, int]) -> list[int | None]:
        return [values.get(d, 0) if c else None for d, c in zip(names, covered)]

    page_views, requests, bots = (per_day(daily[d]) for d in ("url", "status", "bot"))
    bot_kinds = _bot_kinds(history, first, last, site, top)
    for category, per in live.series("bot_category", list(bot_kinds["categories"])).items():
        if any(per.values()):
            bot_kinds["series"].setdefault(category, {}).update(per)
    # site-wide unique visitors (value "*"); with every site together a visitor
    # of two virtual hosts counts once per host.
    visitor_days = history.daily("visitors", "*", first, last, site)
    visitor_days.update({d: n for d, n in live.series("visitors", ["*"])["*"].items()})
    visitors = per_day(visitor_days)
    total_views = sum(v for v in page_views if v)
    total_requests = sum(v for v in requests if v)
    total_bots = sum(v for v in bots if v)
    return {
        "title": title or "logpipe report",
        "generated": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "logpipe_version": __version__,
        "site": site,
        "start": names[0],
        "end": names[-1],
        "days": names,
        "covered": covered,
        "live": [d in live.days for d in names],
        "unavailable_days": live.unavailable,
        "shown": shown_as,
        "daily": {"page_views": page_views, "visitors": visitors, "requests": requests, "bots": bots,
                  "bot_categories": {c: per_day(v) for c, v in bot_kinds["series"].items()}},
        "ai_crawlers": bot_kinds["ai"],
        "summary": {
            "page_views": total_views,
            "requests": total_requests,
            "bot_requests": total_bots,
            "bot_share": (total_bots / total_requests) if total_requests else None,
            "days_with_data": sum(covered),
        },
        "urls": {"top": [[v, n] for v, n in top_urls],
                 "series": {v: per_day(series.get(v, {})) for v, _ in top_urls}},
        "panels": panels,
        "sites": history.sites(first, last),
        "sources": history.sources(first, last),
    }


class _Live:
    """The report's live days (today; yesterday until rolled up), read from memcached once.

    Each live day's per-dimension totals are read when first asked; after the
    first failure memcached is not asked again (one timeout, not one per panel)
    and the days from that one on are :attr:`unavailable`.
    """

    def __init__(self, history, reader, first, last, covered: set[str], site: str | None, today: str | None):
        import datetime as dt

        from logpipe.history import live_days

        now = dt.date.fromisoformat(today) if today else dt.date.today()
        self.history, self.reader, self.first, self.last, self.site, self.now = (
            history, reader, first, last, site, now)
        self.days = [d.isoformat() for d in live_days(first, last, now, covered)]
        # every site together: the counters without a site and each site the database knows
        self.sites = [site] if site else [None] + [s for s in history.sites(first, last) if s]
        self.unavailable: list[str] = [] if reader is not None else list(self.days)
        self._totals: dict[str, dict[str, int]] = {}

    @property
    def read(self) -> list[str]:
        """The live days memcached gave."""
        return [d for d in self.days if d not in self.unavailable]

    def _fail(self, day: str) -> None:
        self.unavailable = [d for d in self.days if d >= day or d in self.unavailable]
        self.reader = None

    def totals(self, dimension: str) -> dict[str, int]:
        """``{live day: sum of every value of dimension}`` for the days memcached gave."""
        from logpipe.daemon.store import StoreError

        if dimension not in self._totals:
            out: dict[str, int] = {}
            for day in self.read:
                try:
                    out[day] = sum(e.count for s in self.sites for e in self.reader.top(dimension, day, None, s))
                except StoreError:
                    self._fail(day)
                    break
            self._totals[dimension] = out
        return {d: n for d, n in self._totals[dimension].items() if d in self.read}

    def top(self, dimension: str, n: int):
        """:func:`logpipe.history.top_range` over the whole period, database and live days."""
        from logpipe.history import top_range

        found = top_range(dimension, self.first, self.last, n=n, reader=self.reader, history=self.history,
                          today=self.now, sites=self.sites)
        for day in found.unavailable_days:
            if day not in self.unavailable:
                self._fail(day)
        return found

    def series(self, dimension: str, values: list[str]) -> dict[str, dict[str, int]]:
        """``{value: {live day: count}}`` for the days memcached gave."""
        from logpipe.daemon.store import StoreError

        out: dict[str, dict[str, int]] = {v: {} for v in values}
        for day in self.read:
            try:
                for value in values:
                    out[value][day] = sum(self.reader.count(dimension, value, day, s) for s in self.sites)
            except StoreError:
                self._fail(day)
                break
        return out


def _shown_map(dimension: str, values) -> dict[str, str]:
    """``{value: display form}`` for the values whose display form differs (JSON stays raw)."""
    from logpipe.commands.display import shown

    return {v: shown(v, dimension) for v in values if shown(v, dimension) != v}
def _bot_kinds(history, first, last, site: str | None, top: int) -> dict:
    """Requests per day of each bot category, and the top AI crawlers of each AI kind.

    Returns ``{"series": {category: {day: n}}, "ai": {kind: [[bot, n], ...]}, "categories": (...)}``,
    categories in :data:`~logpipe.counting.botlists.CATEGORIES` order (only
    those counted), kinds ``ai-training``, ``ai-search``, ``ai-user``.  The
    rollup stores ``bot`` and ``bot_category`` apart, so a bot name's kind is
    found again by classifying the name itself (every name logpipe writes is a
    product token its lists know, e.g. ``GPTBot`` → ``ai-training``).
    """
    from logpipe.counting.botlists import AI_CATEGORIES, CATEGORIES

    counted = history.totals("bot_category", first, last, site)  # {day: n}; only tells whether any
    series = history.series("bot_category", CATEGORIES, first, last, site) if counted else {}
    series = {c: days for c, days in series.items() if days}
    ai: dict[str, list] = {kind: [] for kind in AI_CATEGORIES}
    bots = history.top("bot", first, last, None, site)
    if bots:
        from logpipe.counting.useragents import UserAgentClassifier

        classify = UserAgentClassifier().classify
        for name, n in bots:
            kind = classify(name).category
            if kind in ai and len(ai[kind]) < top:
                ai[kind].append([name, n])
    return {"series": series, "ai": ai, "categories": CATEGORIES}


def chart_js() -> str:
    """The vendored Chart.js UMD build, ready to inline in a ``<script>`` element."""
    text = resources.files("logpipe").joinpath("data/chart.umd.min.js").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.startswith("//# sourceMappingURL=")]
    return "\n".join(lines).replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")


def _json_for_script(data: dict) -> str:
    """JSON that cannot end its ``<script>`` element or open markup."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _number(n: int | None) -> str:
    return "–" if n is None else f"{n:,}".replace(",", "\u202f")


def _table(table_id: str, heading: str, rows: list, total: int | None, dimension: str = "url") -> str:
    from logpipe.commands.display import shown

    out = [f'<table class="numbers" id="{table_id}"><thead><tr><th>{html.escape(heading)}</th>'
           '<th class="n">count</th><th class="n">share</th></tr></thead><tbody>']
    for value, count in rows:
        share = f"{100 * count / total:.1f}\u202f%" if total else ""
        out.append(f'<tr><td class="v">{html.escape(shown(value, dimension)) or "<i>(empty)</i>"}</td>'
                   f'<td class="n" data-count="{int(count)}">{_number(count)}</td>'
                   f'<td class="n">{share}</td></tr>')
    if not rows:
        out.append('<tr><td colspan="3" class="empty">nothing counted in this period</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


def render_html(data: dict) -> str:
    """The self-contained HTML page for *data* (from :func:`build_report`)."""
    esc = html.escape
    summary = data["summary"]
    share = summary["bot_share"]
    share_text = "–" if share is None else f"{100 * share:.1f}\u202f%"
    period = f'{data["start"]} – {data["end"]}'
    scope = f'site {esc(data["site"])}' if data["site"] else "all sites"
    sources = ", ".join(f'{esc(s["source_host"])} ({s["days"]} days)' for s in data["sources"]) or "none"
    missing = data.get("unavailable_days", [])

    def cell(day: str, n: int | None) -> str:
        if day in missing:  # memcached could not give this live day: say so, never 0
            return '<td class="n unavailable" data-count="">unavailable</td>'
        return f'<td class="n" data-count="{"" if n is None else n}">{_number(n)}</td>'

    daily_rows = "".join(
        f'<tr data-day="{day}"><td>{day}</td>{cell(day, pv)}{cell(day, uv)}{cell(day, rq)}{cell(day, bt)}</tr>'
        for day, pv, uv, rq, bt in zip(data["days"], data["daily"]["page_views"], data["daily"]["visitors"],
                                       data["daily"]["requests"], data["daily"]["bots"]))
    outage = (f' · <span id="unavailable">{esc(", ".join(missing))} unavailable: memcached could not be '
              'reached</span>' if missing else "")
    panels_html = []
    for dimension, panel in data["panels"].items():
        chart = ""
        if panel["chart"] and panel["top"]:
            chart = f'<div class="chart small"><canvas id="chart-{dimension}" role="img" ' \
                    f'aria-label="{esc(panel["title"])}"></canvas></div>'
        panels_html.append(
            f'<section class="card" id="panel-{dimension}"><h2>{esc(panel["title"])}</h2>{chart}'
            f'{_table("table-" + dimension, dimension, panel["top"], panel["total"], dimension)}</section>')
    url_table = _table("table-url", "URL", data["urls"]["top"], summary["page_views"])
    ai_titles = {"ai-training": "training crawlers", "ai-search": "AI search indexers",
                 "ai-user": "fetches for one user (assistants, agents)"}
    ai_tables = "".join(f"<h3>{esc(kind)}: {ai_titles.get(kind, '')}</h3>"
                        + _table("table-" + kind, "bot", rows, summary["bot_requests"])
                        for kind, rows in data["ai_crawlers"].items())
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="logpipe {esc(data["logpipe_version"])}">
<title>{esc(data["title"])} — {period}</title>
<style>
:root {{ --fg:#1d2433; --muted:#5b6475; --line:#dde2ea; --bg:#f5f7fa; --card:#fff; --accent:#2f6fdf; }}
* {{ box-sizing: border-box; }}
body {{ margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); background:var(--bg); }}
header {{ padding:20px 28px 8px; }}
h1 {{ margin:0 0 4px; font-size:22px; }}
h2 {{ margin:0 0 10px; font-size:15px; }}
h3 {{ margin:12px 0 4px; font-size:13px; color:var(--muted); }}
.meta {{ color:var(--muted); }}
.tiles {{ display:flex; flex-wrap:wrap; gap:12px; padding:8px 28px; }}
.tile {{ background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px 16px; min-width:150px; }}
.tile b {{ display:block; font-size:22px; }}
.tile span {{ color:var(--muted); font-size:12px; }}
main {{ display:grid; grid-template-columns:repeat(auto-fill,minmax(420px,1fr)); gap:16px; padding:12px 28px 28px; }}
.card {{ background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 16px; min-width:0; }}
.wide {{ grid-column:1/-1; }}
.chart {{ position:relative; height:300px; margin-bottom:10px; }}
.chart.small {{ height:240px; }}
table.numbers {{ width:100%; border-collapse:collapse; font-size:13px; }}
table.numbers th, table.numbers td {{ border-bottom:1px solid var(--line); padding:3px 6px; text-align:left; vertical-align:top; }}
table.numbers th {{ color:var(--muted); font-weight:600; }}
td.v {{ word-break:break-all; }}
.n {{ text-align:right !important; font-variant-numeric:tabular-nums; white-space:nowrap; }}
.empty {{ color:var(--muted); font-style:italic; }}
details summary {{ cursor:pointer; color:var(--accent); margin:6px 0; }}
footer {{ color:var(--muted); padding:0 28px 24px; font-size:12px; }}
</style>
</head>
<body>
<header>
<h1>{esc(data["title"])}</h1>
<div class="meta">{period} · {scope} · {summary["days_with_data"]} of {len(data["days"])} days rolled up · sources: {sources}{outage}</div>
</header>
<div class="tiles">
<div class="tile" id="tile-page-views"><b data-count="{summary["page_views"]}">{_number(summary["page_views"])}</b><span>page views</span></div>
<div class="tile" id="tile-requests"><b data-count="{summary["requests"]}">{_number(summary["requests"])}</b><span>requests</span></div>
<div class="tile" id="tile-bots"><b data-count="{summary["bot_requests"]}">{_number(summary["bot_requests"])}</b><span>bot requests</span></div>
<div class="tile" id="tile-bot-share"><b>{share_text}</b><span>bot share of requests</span></div>
</div>
<main>
<section class="card" id="panel-daily"><h2>Page views and unique visitors per day</h2>
<div class="chart"><canvas id="chart-daily" role="img" aria-label="page views per day"></canvas></div>
<details><summary>numbers per day</summary>
<table class="numbers" id="table-daily"><thead><tr><th>day</th><th class="n">page views</th><th class="n">unique visitors</th><th class="n">requests</th><th class="n">bot requests</th></tr></thead><tbody>{daily_rows}</tbody></table>
</details>
</section>
<section class="card" id="panel-bot-share"><h2>Requests per day: humans and bots</h2>
<div class="chart"><canvas id="chart-bot-share" role="img" aria-label="bot share"></canvas></div></section>
<section class="card" id="panel-bot-category-daily"><h2>Requests per day: humans and each kind of bot</h2>
<div class="chart"><canvas id="chart-bot-category" role="img" aria-label="requests per day by humans and bot category"></canvas></div></section>
<section class="card" id="panel-ai-crawlers"><h2>Top AI crawlers</h2>{ai_tables}</section>
<section class="card wide" id="panel-url-daily"><h2>Page views per day of the top URLs</h2>
<div class="chart"><canvas id="chart-urls" role="img" aria-label="page views per day of the top URLs"></canvas></div></section>
<section class="card" id="panel-url"><h2>Top URLs (page views)</h2>{url_table}</section>
{"".join(panels_html)}
</main>
<footer>Generated {esc(data["generated"])} by logpipe {esc(data["logpipe_version"])} from the rolled-up history.
Page views follow the live counters' rules (humans, GET/HEAD, 2xx/304, not static). Charts: Chart.js (MIT), included in this file.</footer>
<script id="logpipe-data" type="application/json">{_json_for_script(data)}</script>
<script>{chart_js()}</script>
<script>{_SCRIPT}</script>
</body>
</html>
"""


_SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("logpipe-data").textContent);
  var palette = ["#2f6fdf", "#e8833a", "#3aa57a", "#d2455b", "#8a62d0", "#c9a227", "#2aa6b8",
                 "#a35d3c", "#6b7a8f", "#d46fb0", "#7fb03a", "#4b4fa8"];
  var charts = 0;
  Chart.defaults.animation = false;
  Chart.defaults.responsive = true;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.family = "system-ui, sans-serif";
  var shown = data.shown || {};  // display forms (decoded, controls escaped); values stay as counted
  function shortLabel(text) {
    text = shown[text] || text;
    return text.length > 48 ? text.slice(0, 47) + "\u2026" : text;
  }
  function draw(id, config) {
    var canvas = document.getElementById(id);
    if (!canvas) { return; }
    new Chart(canvas, config);
    charts += 1;
  }
  draw("chart-daily", {type: "bar", data: {labels: data.days, datasets: [
      {label: "page views", data: data.daily.page_views, backgroundColor: "#2f6fdf"},
      {label: "unique visitors", data: data.daily.visitors, backgroundColor: "#e8833a"}]},
    options: {scales: {y: {beginAtZero: true}}, plugins: {legend: {position: "bottom"}}}});
  if (data.urls.top.length) {
    draw("chart-urls", {type: "line", data: {labels: data.days, datasets: data.urls.top.map(function (row, i) {
        var color = palette[i % palette.length];
        return {label: shortLabel(row[0]), data: data.urls.series[row[0]], borderColor: color,
                backgroundColor: color, borderWidth: 2, tension: 0.2, spanGaps: false};
      })},
      options: {interaction: {mode: "index", intersect: false}, scales: {y: {beginAtZero: true}},
                plugins: {legend: {position: "bottom"}}}});
  }
  var humans = data.daily.requests.map(function (n, i) {
    return n === null ? null : Math.max(0, n - (data.daily.bots[i] || 0)); });
  draw("chart-bot-share", {type: "bar", data: {labels: data.days, datasets: [
      {label: "humans", data: humans, backgroundColor: "#3aa57a", stack: "r"},
      {label: "bots", data: data.daily.bots, backgroundColor: "#d2455b", stack: "r"}]},
    options: {scales: {x: {stacked: true}, y: {stacked: true, beginAtZero: true}},
              plugins: {legend: {position: "bottom"}}}});
  var kinds = Object.keys(data.daily.bot_categories);
  var kindColors = {"search": "#2f6fdf", "ai-training": "#d2455b", "ai-search": "#e8833a", "ai-user": "#c9a227",
                    "seo": "#8a62d0", "monitoring": "#2aa6b8", "feed": "#7fb03a", "social": "#d46fb0",
                    "scanner": "#a35d3c", "library": "#6b7a8f", "automation": "#4b4fa8", "other": "#9aa3b0"};
  draw("chart-bot-category", {type: "bar", data: {labels: data.days, datasets: [
      {label: "humans", data: humans, backgroundColor: "#3aa57a", stack: "r"}].concat(kinds.map(function (kind) {
        return {label: kind, data: data.daily.bot_categories[kind], backgroundColor: kindColors[kind] || "#9aa3b0",
                stack: "r"}; }))},
    options: {scales: {x: {stacked: true}, y: {stacked: true, beginAtZero: true}},
              plugins: {legend: {position: "bottom"}}}});
  Object.keys(data.panels).forEach(function (dimension) {
    var panel = data.panels[dimension];
    if (!panel.chart || !panel.top.length) { return; }
    var labels = panel.top.map(function (row) { return shortLabel(row[0] || "(empty)"); });
    var values = panel.top.map(function (row) { return row[1]; });
    if (panel.chart === "doughnut") {
      var shown = values.reduce(function (a, b) { return a + b; }, 0);
      if (panel.total > shown) { labels.push("other"); values.push(panel.total - shown); }
      draw("chart-" + dimension, {type: "doughnut", data: {labels: labels, datasets: [
          {data: values, backgroundColor: labels.map(function (_, i) { return palette[i % palette.length]; })}]},
        options: {plugins: {legend: {position: "right"}}}});
    } else {
      draw("chart-" + dimension, {type: "bar", data: {labels: labels, datasets: [
          {label: panel.title, data: values, backgroundColor: palette[0]}]},
        options: {indexAxis: "y", plugins: {legend: {display: false}}, scales: {x: {beginAtZero: true}}}});
    }
  });
  document.documentElement.setAttribute("data-charts", String(charts));
  window.logpipeChartsDrawn = charts;
})();
"""


def write_report(text: str, path: str) -> None:
    """Write *text* to *path* atomically (a temporary file in the same directory, then rename).

    ``-`` writes to stdout.

    Raises:
        OSError: the directory is not writable.
    """
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".logpipe-report-", suffix=".html", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
