"""logpipe in a Flask application: page counts as Jinja template globals.

::

    from flask import Flask
    from logpipe.flask import LogPipe

    app = Flask(__name__)
    app.config["LOGPIPE"] = {"MEMCACHED": "127.0.0.1:11211"}   # the Django app's keys and defaults
    logpipe = LogPipe(app)

    # in a template
    {{ views_today() }}              today's page views of request.path
    {{ views_today("/press/1/") }}   of a path (or an object with get_absolute_url)
    {{ visitors_today() }}           unique visitors today, when logpipe counts them
    {% for day in hits("/press/1/") %}{{ day.date }} {{ day.views }}{% endfor %}
    {% for page in top_pages(10) %}{{ page.path }} {{ page.views }}{% endfor %}

A count is None when memcached cannot be read (one warning on the
``logpipe.web`` logger), never an exception.  Needs Flask (``pip install
flask``); reads through :class:`logpipe.web.PageCounts`.
"""

from __future__ import annotations

from typing import Any

from logpipe.web import PageCounts

__all__ = ["LogPipe"]


class LogPipe:
    """The Flask extension: ``LogPipe(app)`` or ``LogPipe()`` then ``init_app(app)``.

    Args:
        app: a Flask application; its ``config["LOGPIPE"]`` dict holds the
            settings (:data:`logpipe.web.DEFAULTS`; missing keys take the defaults).

    Raises:
        logpipe.config.ConfigError: ``LOGPIPE`` cannot be used (at ``init_app``).
    """

    GLOBALS = ("views_today", "visitors_today", "hits", "top_pages", "logpipe_today")

    def __init__(self, app=None):
        self.counts: PageCounts | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app) -> None:
        """Read ``app.config["LOGPIPE"]`` and add the template globals."""
        self.counts = PageCounts(app.config.get("LOGPIPE"))
        app.extensions["logpipe"] = self
        for name in self.GLOBALS:
            app.add_template_global(getattr(self, name), name)

    @staticmethod
    def _target(target: Any) -> Any:
        if target is None:
            from flask import request

            return request.path
        return target

    def views_today(self, target: Any = None) -> int | None:
        """Today's page views of *target* (a path, an object with ``get_absolute_url``,
        None: the current request's path); None when memcached cannot be read."""
        return self.counts.views_today(self._target(target))

    def visitors_today(self, target: Any = None) -> int | None:
        """Today's unique visitors of *target* (None: the whole site); None when unknown."""
        return self.counts.visitors_today(target)

    def hits(self, target: Any = None, days: int | None = None) -> list:
        """Page views per day, newest first (:meth:`logpipe.web.PageCounts.history`)."""
        return self.counts.history(self._target(target), days)

    def top_pages(self, n: int = 10) -> list:
        """Today's *n* most viewed paths: ``Page(path, views)`` items."""
        return self.counts.top_pages(n)

    def logpipe_today(self) -> str:
        """The day logpipe counts in, ``YYYY-MM-DD``."""
        return self.counts.today()
