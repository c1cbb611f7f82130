"""How well logpipe tells crawlers from browsers, measured on lists that ship as packages.

``python -m bench.botlists [--misses N]`` prints, per corpus, how many known
crawler agents are counted as bots (recall) and how many real browser agents
are wrongly called bots (false positives), each over *distinct* strings.  ``--timing`` times the classifier per distinct agent instead.

Crawler corpora:

* ``crawler-user-agents`` — every ``instances`` sample of the list logpipe
  matches (so not independent of it: a floor check that each pattern works);
* ``matomo-bots`` — Matomo Device Detector's ``bots.yml`` test fixtures
  (shipped in the ``device-detector`` package's tests; a list logpipe does
  *not* use, so an independent measure), with Matomo's bot category;
* ``ai-crawler-index`` — each product token of that list in the usual
  ``Mozilla/5.0 (compatible; TOKEN/1.0; +URL)`` form (generated).

Browser corpora:

* ``matomo-browsers`` — every Device Detector fixture whose client type is
  ``browser`` (desktop, smartphone, tablet, TV … fixtures);
* ``fake-useragent`` — the real browser agents ``fake-useragent`` ships
  (``browsers.jsonl``, collected from real traffic);
* ``apps`` — :data:`HUMAN_APPS`: mail clients, desktop apps embedding a
  browser and new browsers that must stay human (hand-written, from each
  product's own agent string).

The test extra installs ``device-detector`` and ``fake-useragent``; a missing
package skips its corpus.
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

__all__ = ["crawler_corpora", "browser_corpora", "measure", "time_per_agent", "HUMAN_APPS", "MATOMO_CATEGORY"]

#: Agents of people, not crawlers: mail clients opening a link, desktop apps
#: that embed Chromium (Electron) and browsers that are new or rare.
HUMAN_APPS = [
    # Outlook (Windows desktop, "new Outlook", iOS, Android)
    "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; WOW64; Trident/7.0; .NET4.0C; .NET4.0E; "
    "Microsoft Outlook 16.0.17328; ms-office; MSOffice 16)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Safari/537.36 Edg/124.0.0.0 OneOutlook/1.2024.508.400",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 Outlook-iOS/4.2414.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 "
    "Chrome/124.0.6367.82 Mobile Safari/537.36 Outlook-Android/4.2416.0",
    # Apple Mail (macOS, iOS) and Thunderbird
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.10.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.2.0",
    # Desktop apps embedding Chromium
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Slack/4.38.125 "
    "Chrome/124.0.6367.207 Electron/30.0.6 Safari/537.36 Sonic Slack_SSB/4.38.125",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Slack/4.36.140 "
    "Chrome/120.0.6099.291 Electron/28.2.5 Safari/537.36 Sonic Slack_SSB/4.36.140",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) 1Password/8.10.30 "
    "Chrome/120.0.6099.291 Electron/28.2.6 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) 1Password/8.10.36 "
    "Chrome/124.0.6367.243 Electron/30.1.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) discord/1.0.9147 "
    "Chrome/120.0.6099.291 Electron/28.2.10 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Safari/537.36 Edg/120.0.0.0 Teams/24124.2315.2911.3357",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Notion/3.9.2 "
    "Chrome/124.0.6367.243 Electron/30.1.2 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) obsidian/1.6.5 "
    "Chrome/124.0.6367.243 Electron/30.1.2 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Signal/7.15.0 "
    "Chrome/126.0.6478.61 Electron/31.0.2 Safari/537.36",
    # New and rare browsers
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Ladybird/1.0 Chrome/130.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Ladybird/1.0 "
    "Version/17.0 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0 LibreWolf/128.0-2",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
    "Safari/537.36 Arc/1.49.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15 "
    "Epiphany/46.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) QtWebEngine/6.7.1 "
    "Chrome/118.0.5993.220 Safari/537.36 qutebrowser/3.2.0",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 "
    "Chrome/121.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 [FBAN/FBIOS;FBAV/468.0.0.51.108;FBBV/600000000;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;"
    "FBSV/17.5;FBSS/3;FBCR/;FBID/phone;FBLC/en_US;FBOP/80]",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 Instagram 337.0.3.23.54 (iPhone15,2; iOS 17_5; en_US; en; scale=3.00; 1179x2556; 609040000)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "GSA/323.0.647062479 Mobile/15E148 Safari/604.1",
]

#: Matomo Device Detector's bot categories → logpipe's ``bot_category`` (for
#: checking categories against an independent list; None: Matomo's
#: category does not decide ours, e.g. its broad "Crawler").
MATOMO_CATEGORY = {
    "Search bot": "search", "AI Search Crawler": "ai-search", "AI Data Scraper": "ai-training",
    "AI Assistant": "ai-user", "AI Agent": "ai-user", "Site Monitor": "monitoring",
    "Security Checker": "scanner", "Feed Fetcher": "feed", "Feed Reader": "feed", "Feed Parser": "feed",
    "Social Media Agent": "social",
}


def _matomo_fixtures() -> list[dict]:
    try:
        import yaml_rs  # device-detector's YAML reader
        folder = resources.files("device_detector").joinpath("tests/fixtures/upstream")
    except ImportError:
        return []
    rows = []
    for path in sorted(Path(str(folder)).glob("*.yml")):
        rows.extend(r for r in yaml_rs.loads(path.read_text(encoding="utf-8")) or [] if isinstance(r, dict))
    return rows


def crawler_corpora() -> dict[str, list[tuple[str, str | None]]]:
    """``{corpus: [(user agent, expected category or None), ...]}`` of known crawlers, distinct agents."""
    out: dict[str, dict[str, str | None]] = {}
    from logpipe.counting.botlists import category_of_tags

    raw = json.loads(resources.files("crawleruseragents").joinpath("crawler-user-agents.json").read_bytes())
    out["crawler-user-agents"] = {ua: category_of_tags(e.get("tags") or [], "") for e in raw
                                  for ua in e["instances"]}
    index = json.loads(resources.files("ai_crawler_index").joinpath("data.json").read_bytes())["crawlers"]
    out["ai-crawler-index"] = {f"Mozilla/5.0 (compatible; {r['ua']}/1.0; +{r.get('docs') or 'https://example.org'})":
                               r["category"] for r in index if not r["ua"].startswith("(")}
    matomo = {}
    for row in _matomo_fixtures():
        bot = row.get("bot")
        if isinstance(bot, dict) and row.get("user_agent"):
            matomo[str(row["user_agent"])] = MATOMO_CATEGORY.get(bot.get("category") or "")
    if matomo:
        out["matomo-bots"] = matomo
    return {name: sorted(rows.items()) for name, rows in out.items()}


def browser_corpora() -> dict[str, list[str]]:
    """``{corpus: [user agent, ...]}`` of real browsers and apps people use, distinct agents."""
    out = {"apps": sorted(set(HUMAN_APPS))}
    matomo = {str(r["user_agent"]) for r in _matomo_fixtures()
              if isinstance(r.get("client"), dict) and r["client"].get("type") == "browser"
              and not r.get("bot") and r.get("user_agent")}
    if matomo:
        out["matomo-browsers"] = sorted(matomo)
    try:
        text = resources.files("fake_useragent").joinpath("data/browsers.jsonl").read_text(encoding="utf-8")
        out["fake-useragent"] = sorted({json.loads(line)["useragent"] for line in text.splitlines() if line.strip()})
    except (ImportError, FileNotFoundError):
        pass
    return out


def measure(classify=None) -> dict:
    """Recall and false-positive rates of *classify* (``UserAgentClassifier().classify``) per corpus.

    Returns ``{"crawlers": {corpus: {"agents", "bots", "rate", "misses"}},
    "browsers": {corpus: {"agents", "bots", "rate", "false_positives"}}}``;
    rates are fractions of distinct agents.
    """
    if classify is None:
        from logpipe.counting.useragents import UserAgentClassifier

        classify = UserAgentClassifier(cache_size=1 << 20).classify
    result: dict = {"crawlers": {}, "browsers": {}}
    for name, rows in crawler_corpora().items():
        misses = [ua for ua, _ in rows if classify(ua).bot is None]
        result["crawlers"][name] = {"agents": len(rows), "bots": len(rows) - len(misses),
                                    "rate": 1 - len(misses) / len(rows), "misses": misses}
    for name, agents in browser_corpora().items():
        wrong = [(ua, classify(ua)) for ua in agents]
        wrong = [(ua, a.bot, a.source) for ua, a in wrong if a.bot is not None]
        result["browsers"][name] = {"agents": len(agents), "bots": len(wrong),
                                    "rate": len(wrong) / len(agents), "false_positives": wrong}
    return result


def time_per_agent(repeat: int = 7) -> dict:
    """Seconds to build a classifier and to classify each distinct agent of ``shared/data/real`` (best of *repeat*).

    Returns ``{"agents", "build_s", "per_agent_ms"}``; ``agents`` is 0 when the real logs are absent.
    """
    import codecs
    import re
    import time

    from bench import REAL_DIR

    quoted = r'"((?:[^"\\]|\\.)*)"'
    line = re.compile(r'.*?\[[^\]]*\] ' + quoted + r' \S+ \S+ ' + quoted + ' ' + quoted)
    agents = set()
    for path in sorted(REAL_DIR.glob("*.log")) if REAL_DIR.is_dir() else []:
        for text in path.read_text(encoding="latin-1").splitlines():
            m = line.match(text)
            if m:
                agents.add(codecs.escape_decode(m.group(3).encode("latin-1"))[0].decode("utf-8", "replace"))
    start = time.perf_counter()
    from logpipe.counting.useragents import UserAgentClassifier

    classifier = UserAgentClassifier(cache_size=1 << 20)
    build = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeat if agents else 0):
        classifier._cache.clear()
        start = time.perf_counter()
        for agent in agents:
            classifier.classify(agent)
        best = min(best, time.perf_counter() - start)
    return {"agents": len(agents), "build_s": build, "per_agent_ms": 1000 * best / len(agents) if agents else None}


def main(argv: list[str] | None = None) -> int:
    """Print the measurement; ``--misses N`` also lists N misses and false positives per corpus."""
    parser = argparse.ArgumentParser(prog="python -m bench.botlists", description=__doc__.split("\n")[0])
    parser.add_argument("--misses", type=int, default=0, metavar="N",
                        help="also print up to N missed crawlers and false positives per corpus (default 0)")
    parser.add_argument("--timing", action="store_true",
                        help="only time the classifier: build seconds and milliseconds per distinct agent of "
                             "../shared/data/real, best of 7 (default: off)")
    args = parser.parse_args(argv)
    if args.timing:
        t = time_per_agent()
        print(f"{t['agents']} distinct agents; classifier built in {t['build_s']:.3f} s; "
              f"{t['per_agent_ms']:.3f} ms per distinct agent (best of 7)")
        return 0
    result = measure()
    for name, r in result["crawlers"].items():
        print(f"crawlers  {name:22} {r['bots']:>6} of {r['agents']:>6} counted as bots  {100 * r['rate']:6.2f} %")
        for ua in r["misses"][:args.misses]:
            print(f"    missed: {ua[:160]}")
    for name, r in result["browsers"].items():
        print(f"browsers  {name:22} {r['bots']:>6} of {r['agents']:>6} called bots       {100 * r['rate']:6.3f} %")
        for ua, bot, source in r["false_positives"][:args.misses]:
            print(f"    {bot} ({source}): {ua[:160]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
