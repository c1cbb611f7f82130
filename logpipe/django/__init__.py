"""logpipe in a Django site: ``"logpipe.django"`` in ``INSTALLED_APPS``.

Gives :class:`~logpipe.django.mixins.HitsMixin` (``obj.hits_today``,
``obj.visitors_today``, ``obj.hits``), the template tags of
``{% load logpipe %}`` (``views_today``, ``visitors_today``, ``top_pages``) and
a system check.  Settings: a ``LOGPIPE`` dict (:data:`logpipe.web.DEFAULTS`).
Installed with the ``django`` extra; ``import logpipe`` never imports Django.
README, "In a Django site".
"""

try:
    import django  # noqa: F401
except ImportError as exc:  # pragma: no cover - an environment without the extra
    raise ImportError('logpipe.django needs Django 4.2 or later: pip install "apache-logpipe[django]"') from exc

from logpipe.django.mixins import HitsMixin  # noqa: E402

__all__ = ["HitsMixin"]
