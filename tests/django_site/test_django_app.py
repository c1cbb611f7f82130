"""Issue 15: the ``logpipe.django`` app in a real Django site (this directory), through
Django's test client, against a real memcached fed by the real ``logpipe`` daemon and a real
SQLite history database filled by ``logpipe rollup``.

Apache's ``%t`` is at UTC-12 (:func:`web_helpers.site_data`), and the tests that move
Django's TIME_ZONE pick zones 26 hours apart from it, so "today" differs between the writer and
the Django process at any hour of the day.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import os
import re

import django
import pytest
from django.core.checks import ERROR, run_checks

from logpipe.web import Day, PageCounts
from press.models import PressRelease
from web_helpers import clf, feed, site_data, zone

pytestmark = pytest.mark.django_db


def element(page: str, ident: str) -> str:
    """The text inside the element with id *ident* of *page*."""
    match = re.search(rf'<(\w+) id="{ident}">(.*?)</\1>', page, re.S)
    assert match, f"no #{ident} in {page}"
    return html.unescape(match.group(2))


@pytest.fixture
def site(memcached, logpipe_bin, tmp_path, settings):
    data = site_data(logpipe_bin, memcached.spec, tmp_path)
    settings.LOGPIPE = {"MEMCACHED": memcached.spec, "DB": data["db"], "PREFIX": "logpipe", "SITE": None}
    data["release"] = PressRelease.objects.create(slug="first-light", title="First light")
    PressRelease.objects.create(slug="other", title="Other")
    data["memcached"] = memcached
    return data


def test_the_expected_django_version():
    """The Django 4.2 run (tests/test_django_versions.py) really runs Django 4.2."""
    expected = os.environ.get("LOGPIPE_EXPECT_DJANGO")
    if expected:
        assert django.get_version().startswith(expected + ".")


def test_hits_today_and_history_on_the_model(site):
    release = PressRelease.objects.get(slug="first-light")
    assert release.hits_today == 5                      # a query string is the same page
    assert PressRelease.objects.get(slug="other").hits_today == 2
    assert [(d.date, d.views, d.source) for d in release.hits] == [
        (site["today"], 5, "memcached"),                 # today, from memcached
        (site["yesterday"], 3, "database"),              # rolled up
        (site["before"], 1, "database"),
    ]
    assert all(isinstance(day, Day) and isinstance(day.date, dt.date) for day in release.hits)
    assert [d.views for d in release.hits_for_days(2)] == [5, 3]
    if PageCounts().has_visitors:                        # one client address and User-Agent each day
        assert release.visitors_today == 1 and [d.visitors for d in release.hits] == [1, 1, 1]
    else:                                                # logpipe counts no unique visitors
        assert not hasattr(release, "visitors_today") and {d.visitors for d in release.hits} == {None}


def test_the_page_renders_counts_history_and_every_tag(site, client):
    response = client.get("/press/first-light/")
    assert response.status_code == 200
    page = response.content.decode()
    assert element(page, "views") == "5"
    assert element(page, "history") == (
        f"<li>{site['today']} 5 memcached</li><li>{site['yesterday']} 3 database</li>"
        f"<li>{site['before']} 1 database</li>")
    assert element(page, "tag-path") == "2"
    assert element(page, "tag-object") == "5"
    assert element(page, "tag-request") == "5"           # request.path
    assert element(page, "tag-as") == "5 views"
    assert element(page, "top") == "<li>/press/first-light 5</li><li>/press/other 2</li>"
    visitors = "1" if PageCounts().has_visitors else ""
    assert element(page, "visitors") == visitors and element(page, "tag-visitors") == visitors


@pytest.mark.parametrize("django_zone, writer_offset", [
    ("Pacific/Kiritimati", "-1200"),   # Django's date 1 or 2 days ahead of Apache's
    ("Etc/GMT+12", "+1400"),           # Django's date 1 or 2 days behind Apache's
])
def test_today_is_the_day_logpipe_counts_in(memcached, logpipe_bin, tmp_path, settings, client,
                                            django_time_zone, django_zone, writer_offset):
    now = dt.datetime.now(zone(writer_offset))
    feed(logpipe_bin, memcached.spec, clf(now, "/press/first-light/", 7), tmp_path)
    settings.LOGPIPE = {"MEMCACHED": memcached.spec, "DB": f"sqlite:///{tmp_path}/none.sqlite3"}
    django_time_zone(django_zone)
    assert dt.date.today() != now.date()                # the Django process's local date differs
    release = PressRelease.objects.create(slug="first-light", title="First light")
    assert release.hits_today == 7
    # yesterday is not rolled up: memcached still has it (0 here)
    assert [(d.date, d.views) for d in release.hits] == [(now.date(), 7), (now.date() - dt.timedelta(days=1), 0)]
    assert element(client.get("/press/first-light/").content.decode(), "views") == "7"
    # without the writer's item: LOGPIPE["TIME_ZONE"], else the local date (the wrong day here)
    memcached.command("delete logpipe:#today")
    settings.LOGPIPE = {"MEMCACHED": memcached.spec, "TIME_ZONE": "Etc/GMT" + ("+12" if writer_offset == "-1200"
                                                                                  else "-14")}
    assert release.hits_today == 7
    settings.LOGPIPE = {"MEMCACHED": memcached.spec}
    assert release.hits_today == 0


def test_memcached_stopped_gives_none_and_one_warning_not_a_500(site, client, caplog):
    site["memcached"].stop()
    caplog.set_level(logging.WARNING, logger="logpipe.web")
    response = client.get("/press/first-light/")
    assert response.status_code == 200
    page = response.content.decode()
    assert element(page, "views") == ""
    assert element(page, "tag-as") == "unknown"
    assert element(page, "top") == ""
    # the database's days still show; today is unknown
    assert element(page, "history") == (
        f"<li>{site['today']} ? unavailable</li><li>{site['yesterday']} 3 database</li>"
        f"<li>{site['before']} 1 database</li>")
    assert site["release"].hits_today is None
    warnings = [r for r in caplog.records if r.name == "logpipe.web" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "memcached cannot be read" in warnings[0].getMessage()


def test_the_system_check_warns(settings, memcached):
    del settings.LOGPIPE
    assert "logpipe.W001" in {m.id for m in run_checks(tags=["logpipe"])}
    spec = memcached.spec
    memcached.stop()
    settings.LOGPIPE = {"MEMCACHED": spec}
    messages = run_checks(tags=["logpipe"])
    assert [m.id for m in messages] == ["logpipe.W002"] and spec in messages[0].msg
    assert all(m.level < ERROR for m in messages)       # a warning: the site still starts
    settings.LOGPIPE = {"MEMCACHED": spec, "DB": "sqlite://", "SITES": "typo"}
    assert [m.id for m in run_checks(tags=["logpipe"])] == ["logpipe.E001"]
    memcached.start()
    settings.LOGPIPE = {"MEMCACHED": spec}
    assert run_checks(tags=["logpipe"]) == []


def test_unusable_settings_make_counts_unknown_not_a_500(site, settings, client, caplog):
    settings.LOGPIPE = {"MEMCACHED": site["memcached"].spec, "MEMCACHE_TYPO": 1}
    caplog.set_level(logging.ERROR, logger="logpipe.web")
    response = client.get("/press/first-light/")
    assert response.status_code == 200
    assert element(response.content.decode(), "views") == ""
    assert element(response.content.decode(), "tag-as") == "unknown"
    assert [r.getMessage() for r in caplog.records if r.name == "logpipe.web"] == [
        "logpipe: settings.LOGPIPE cannot be used: LOGPIPE: unknown key(s) MEMCACHE_TYPO; known: "
        "MEMCACHED, DB, PREFIX, SITE, TIME_ZONE, TIMEOUT, DAYS, KEEP_TRAILING_SLASH"]
