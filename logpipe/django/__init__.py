"""logpipe in a Django site: ``"logpipe.django"`` in ``INSTALLED_APPS``.

Gives :class:`~logpipe.django.mixins.HitsMixin` (``obj.hits_today``,
``obj.visitors_today``, ``obj.hits``), the template tags of
``{% load logpipe %}`` (``views_today``, ``visitors_today``, ``top_pages``) and
a system check.  Settings: a ``LOGPIPE`` dict (:data:`logpipe.web.DEFAULTS`).
Installed with the ``django`` extra; ``import logpipe`` never imports Django.
README, "In a Django site".
"""

from logpipe.django.mixins import HitsMixin

__all__ = ["HitsMixin"]
