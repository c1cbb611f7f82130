"""``logpipe report --html FILE [--days N]``: one self-contained HTML file from the history database.

The file holds everything it shows -- the numbers (as a JSON block and as
tables) and Chart.js (``logpipe/data/chart.umd.min.js``, MIT, inlined) -- so it
opens offline, from a mail attachment or a static web server.  A
Content-Security-Policy forbids every network request, and every counted value
(URLs and referrers are chosen by visitors, attackers included) reaches the
page as escaped text or JSON, never as markup.

Charts, for the N days ending with ``--date`` (default: the latest rolled-up
day): daily page views and unique visitors (in all, and views for the top URLs), daily requests split
into humans and bots (the bot share), top referrer hosts, search keywords,
browsers, platforms, bots and status codes; tables list the top values of each,
plus the full referrers and the most requested missing pages.  A day that no
rollup covered is a gap, not a zero.
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
    ("status", "Status codes", "bar"),
    ("referrer", "Referrers (full URL)", None),
    ("notfound", "Not found (404)", None),
]


def add_arguments(parser, name: str) -> None:
    """Add ``report``'s options to *parser*."""
    parser.description = "Write one self-contained HTML report (charts + tables) from the history database."
    parser.add_argument("--html", metavar="FILE", required=True,
                        help="write the report to FILE (replaced atomically; - for stdout)")
    parser.add_argument("--days", type=int, default=30, metavar="N", help="how many days (default 30)")
    parser.add_argument("--date", metavar="YYYY-MM-DD",
                        help="the last day (default: the latest day in the database)")
    parser.add_argument("--site", metavar="VHOST", help="only this virtual host (default: every site)")
    parser.add_argument("--top", type=int, default=10, metavar="N", help="values per panel (default 10)")
    parser.add_argument("--title", default=None, help="the report's title")


def run(args) -> int:
    """Run ``logpipe report``; 0 written, 1 no data or database error, 2 bad option."""
    from logpipe.commands.main import settings_from
    from logpipe.history import History, HistoryError

    settings = settings_from(args)
    if args.days < 1 or args.top < 1:
        sys.stderr.write("logpipe report: --days and --top must be 1 or more\n")
        return 2
    history = History(settings.db)
    try:
        end = args.date or history.last_day()
        if end is None:
            sys.stderr.write(f"logpipe report: no rolled-up data in {settings.db} (run logpipe rollup)\n")
            return 1
        data = build_report(history, end, args.days, site=args.site, top=args.top, title=args.title)
    except HistoryError as exc:
        sys.stderr.write(f"logpipe report: {exc}\n")
        return 1
    except ValueError as exc:
        sys.stderr.write(f"logpipe report: {exc}\n")
        return 2
    finally:
        history.close()
    try:
        write_report(render_html(data), args.html)
    except OSError as exc:
        sys.stderr.write(f"logpipe report: cannot write {args.html}: {exc.strerror or exc}\n")
        return 1
    return 0


def build_report(history, end: str, days: int, *, site: str | None = None, top: int = 10,
                 title: str | None = None) -> dict:
    """Everything the report shows, as JSON-ready data (also embedded in the page).

    Args:
        history: a :class:`logpipe.history.History`.
        end: the last day, ``YYYY-MM-DD``.
        days: how many days (≥ 1) ending with *end*.
        site: one vhost, or None for every site together.
        top: values per panel.
        title: the page title (default "logpipe report").

    Returns:
        ``{"days": [...], "covered": [...], "daily": {"page_views", "visitors", "requests", "bots"},
        "summary": {...}, "urls": {"top", "series"}, "panels": {dimension: {"top", "total"}},
        "sources": [...], ...}``; per-day lists follow ``days`` and hold None on days no
        rollup covered.

    Raises:
        ValueError: a bad date.  HistoryError: the database cannot be read.
    """
    last = _dt.date.fromisoformat(end)
    first = last - _dt.timedelta(days=days - 1)
    names = [(first + _dt.timedelta(days=i)).isoformat() for i in range(days)]
    covered_set = history.covered_days(first, last)
    covered = [d in covered_set for d in names]

    def per_day(values: dict[str, int]) -> list[int | None]:
        return [values.get(d, 0) if c else None for d, c in zip(names, covered)]

    page_views = per_day(history.totals("url", first, last, site))
    # site-wide unique visitors (value "*"); with every site together a visitor
    # of two virtual hosts counts once per host.
    visitors = per_day(history.daily("visitors", "*", first, last, site))
    requests = per_day(history.totals("status", first, last, site))
    bots = per_day(history.totals("bot", first, last, site))
    top_urls = history.top("url", first, last, top, site)
    series = history.series("url", [v for v, _ in top_urls], first, last, site)
    panels = {}
    for dimension, panel_title, kind in PANELS:
        rows = history.top(dimension, first, last, top, site)
        total = sum(history.totals(dimension, first, last, site).values())
        panels[dimension] = {"title": panel_title, "chart": kind, "total": total,
                             "top": [[v, n] for v, n in rows]}
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
        "daily": {"page_views": page_views, "visitors": visitors, "requests": requests, "bots": bots},
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


def _table(table_id: str, heading: str, rows: list, total: int | None) -> str:
    out = [f'<table class="numbers" id="{table_id}"><thead><tr><th>{html.escape(heading)}</th>'
           '<th class="n">count</th><th class="n">share</th></tr></thead><tbody>']
    for value, count in rows:
        share = f"{100 * count / total:.1f}\u202f%" if total else ""
        out.append(f'<tr><td class="v">{html.escape(value) or "<i>(empty)</i>"}</td>'
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
    daily_rows = "".join(
        f'<tr data-day="{day}"><td>{day}</td>'
        f'<td class="n" data-count="{"" if pv is None else pv}">{_number(pv)}</td>'
        f'<td class="n" data-count="{"" if uv is None else uv}">{_number(uv)}</td>'
        f'<td class="n" data-count="{"" if rq is None else rq}">{_number(rq)}</td>'
        f'<td class="n" data-count="{"" if bt is None else bt}">{_number(bt)}</td></tr>'
        for day, pv, uv, rq, bt in zip(data["days"], data["daily"]["page_views"], data["daily"]["visitors"],
                                       data["daily"]["requests"], data["daily"]["bots"]))
    panels_html = []
    for dimension, panel in data["panels"].items():
        chart = ""
        if panel["chart"] and panel["top"]:
            chart = f'<div class="chart small"><canvas id="chart-{dimension}" role="img" ' \
                    f'aria-label="{esc(panel["title"])}"></canvas></div>'
        panels_html.append(
            f'<section class="card" id="panel-{dimension}"><h2>{esc(panel["title"])}</h2>{chart}'
            f'{_table("table-" + dimension, dimension, panel["top"], panel["total"])}</section>')
    url_table = _table("table-url", "URL", data["urls"]["top"], summary["page_views"])
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
<div class="meta">{period} · {scope} · {summary["days_with_data"]} of {len(data["days"])} days rolled up · sources: {sources}</div>
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
  function shortLabel(text) { return text.length > 48 ? text.slice(0, 47) + "\u2026" : text; }
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
