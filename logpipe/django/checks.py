"""Django system checks (``manage.py check``, ``runserver``, ``migrate``): tag ``logpipe``.

* ``logpipe.W001`` (warning): ``settings.LOGPIPE`` is missing; the defaults are used.
* ``logpipe.E001`` (error): ``settings.LOGPIPE`` cannot be used (unknown key, bad address, unknown zone).
* ``logpipe.W002`` (warning): a memcached server does not answer (counts will show as unknown).
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Warning, register

from logpipe.config import ConfigError
from logpipe.web import DEFAULTS, PageCounts

#: Seconds each memcached server gets to answer the check.
PING_TIMEOUT = 0.5


@register("logpipe")
def check_logpipe(app_configs=None, **kwargs) -> list:
    """Warn when LOGPIPE is missing or memcached does not answer; an error for unusable settings."""
    messages = []
    configured = getattr(settings, "LOGPIPE", None)
    if configured is None:
        messages.append(Warning(
            "settings.LOGPIPE is not set: reading memcached at "
            f"{DEFAULTS['MEMCACHED']} and the history database {DEFAULTS['DB']}",
            hint='Set LOGPIPE = {"MEMCACHED": "host:port", "DB": "sqlite:////path"} to match '
                 "logpipe's --memcached and --db.",
            id="logpipe.W001"))
    try:
        counts = PageCounts(configured)
    except ConfigError as exc:
        return messages + [Error(f"settings.LOGPIPE cannot be used: {exc}", id="logpipe.E001")]
    for server, error in counts.ping(PING_TIMEOUT).items():
        if error is not None:
            messages.append(Warning(
                f"memcached {server} does not answer ({error}): page counts will show as unknown",
                hint="Start memcached, or set LOGPIPE['MEMCACHED'] to logpipe's --memcached.",
                id="logpipe.W002"))
    return messages
