"""The process's one :class:`logpipe.web.PageCounts`, from ``settings.LOGPIPE``.

Made on first use; made again after ``LOGPIPE`` changes (``override_settings``
in tests).  A ``LOGPIPE`` logpipe cannot use (an unknown key, a bad address)
is reported by the system check (``logpipe.E001``); at request time it makes
every count unknown (None) with one logged error, never an exception in a
template.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from logpipe.config import ConfigError
from logpipe.web import PageCounts

__all__ = ["counts"]

_lock = threading.Lock()
_counts: PageCounts | None = None


class _Unconfigured(PageCounts):
    """Every read unknown: what a LOGPIPE that cannot be used gives at request time."""

    def __init__(self, error: ConfigError):
        super().__init__({"MEMCACHED": "127.0.0.1:1"})
        self.error = error

    def _safely(self, work, fallback, **kwargs):
        return fallback

    def today(self) -> str:
        import datetime

        return datetime.date.today().isoformat()


def counts() -> PageCounts:
    """The :class:`~logpipe.web.PageCounts` of ``settings.LOGPIPE`` (defaults when it is missing)."""
    global _counts
    if _counts is None:
        with _lock:
            if _counts is None:
                try:
                    _counts = PageCounts(getattr(settings, "LOGPIPE", None))
                except ConfigError as exc:
                    logging.getLogger("logpipe.web").error("logpipe: settings.LOGPIPE cannot be used: %s", exc)
                    _counts = _Unconfigured(exc)
    return _counts


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs) -> None:
    global _counts
    if setting == "LOGPIPE":
        with _lock:
            if _counts is not None:
                _counts.close()
            _counts = None
