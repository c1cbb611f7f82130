"""Issue 15: ``logpipe.flask`` in a real Flask application, through Flask's test client,
against a real memcached fed by the real ``logpipe`` daemon and a SQLite history database
filled by ``logpipe rollup`` (the scenario of :func:`web_helpers.site_data`)."""

from __future__ import annotations

import logging

import pytest

flask = pytest.importorskip("flask")

from logpipe.flask import LogPipe  # noqa: E402
from web_helpers import site_data  # noqa: E402

PAGE = """\
<p id="views">{{ views_today() if views_today() is not none else "unknown" }}</p>
<p id="other">{{ views_today("/press/other/") }}</p>
<p id="release">{{ views_today(release) }}</p>
<ol id="history">{% for day in hits() %}<li>{{ day.date.isoformat() }} {{ day.views }} {{ day.source }}</li>{% endfor %}</ol>
<ul id="top">{% for page in top_pages(2) %}<li>{{ page.path }} {{ page.views }}</li>{% endfor %}</ul>
<p id="today">{{ logpipe_today() }}</p>
"""


class Release:
    def get_absolute_url(self) -> str:
        return "/press/first-light/"


def make_app(memcached_spec: str, db: str):
    app = flask.Flask(__name__)
    app.config["LOGPIPE"] = {"MEMCACHED": memcached_spec, "DB": db}
    LogPipe(app)

    @app.route("/press/<slug>/")
    def release(slug):
        return flask.render_template_string(PAGE, release=Release())

    return app


@pytest.fixture
def site(memcached, logpipe_bin, tmp_path):
    data = site_data(logpipe_bin, memcached.spec, tmp_path)
    data["app"] = make_app(memcached.spec, data["db"])
    data["memcached"] = memcached
    return data


def lines(page: str) -> dict[str, str]:
    import re

    return {m.group(2): m.group(3) for m in re.finditer(r'<(\w+) id="(\w+)">(.*?)</\1>', page, re.S)}


def test_template_globals_show_counts_history_and_top_pages(site):
    response = site["app"].test_client().get("/press/first-light/")
    assert response.status_code == 200
    shown = lines(response.get_data(as_text=True))
    assert shown["views"] == "5" and shown["release"] == "5" and shown["other"] == "2"
    assert shown["history"] == (f"<li>{site['today']} 5 memcached</li><li>{site['yesterday']} 3 database</li>"
                                f"<li>{site['before']} 1 database</li>")
    assert shown["top"] == "<li>/press/first-light 5</li><li>/press/other 2</li>"
    assert shown["today"] == site["today"].isoformat()     # the writer's day (UTC-12), not the local one
    assert site["app"].extensions["logpipe"].views_today("/press/first-light/") == 5


def test_memcached_stopped_gives_none_and_one_warning(site, caplog):
    site["memcached"].stop()
    caplog.set_level(logging.WARNING, logger="logpipe.web")
    client = site["app"].test_client()
    for _ in range(2):
        response = client.get("/press/first-light/")
        assert response.status_code == 200
    shown = lines(response.get_data(as_text=True))
    assert shown["views"] == "unknown" and shown["other"] == "None" and shown["top"] == ""
    assert shown["history"].endswith(f"<li>{site['yesterday']} 3 database</li><li>{site['before']} 1 database</li>")
    warnings = [r for r in caplog.records if r.name == "logpipe.web" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


def test_counts_come_back_when_memcached_does(site, caplog, monkeypatch):
    import time

    import logpipe.web

    monkeypatch.setattr(logpipe.web, "RETRY_SECONDS", 0.5)
    caplog.set_level(logging.INFO, logger="logpipe.web")
    extension = site["app"].extensions["logpipe"]
    site["memcached"].stop()
    assert extension.views_today("/press/first-light/") is None
    site["memcached"].start()                           # restarted empty, on the same port
    assert extension.views_today("/press/first-light/") is None   # still backing off
    time.sleep(0.6)
    assert extension.views_today("/press/first-light/") == 0
    assert [r.levelname for r in caplog.records if r.name == "logpipe.web"] == ["WARNING", "INFO"]


def test_a_bad_setting_is_reported_at_init_app():
    from logpipe.config import ConfigError

    app = flask.Flask(__name__)
    app.config["LOGPIPE"] = {"MEMCACHE": "127.0.0.1:11211"}
    with pytest.raises(ConfigError, match="unknown key.*MEMCACHE"):
        LogPipe(app)
