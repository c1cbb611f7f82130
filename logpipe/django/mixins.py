"""``HitsMixin``: ``hits_today``, ``visitors_today`` and ``hits`` on a model (or any object)."""

from __future__ import annotations

from logpipe.api import Reader
from logpipe.web import Day

__all__ = ["HitsMixin"]


def _counts():
    from logpipe.django.conf import counts

    return counts()


class HitsMixin:
    """Page counts of ``self.get_absolute_url()``, for models (or any object with that method)::

        class PressRelease(HitsMixin, models.Model):
            def get_absolute_url(self):
                return f"/press/{self.slug}/"

    Every attribute reads memcached (and ``hits`` the rollup database) at
    each access; in a template use ``{% with views=release.hits_today %}`` to
    read once.  None of them raises: an unreachable memcached gives None and
    one logged warning (logger ``logpipe.web``).
    """

    @property
    def hits_today(self) -> int | None:
        """Page views today (the day logpipe counts in): 0 when nobody came, None when
        memcached cannot be read."""
        return _counts().views_today(self)

    if hasattr(Reader, "visitors_today"):  # once logpipe counts unique visitors
        @property
        def visitors_today(self) -> int | None:
            """Unique visitors today; None when memcached cannot be read.  Absent (not even
            in ``dir()``, so a template shows nothing) while logpipe counts no visitors."""
            return _counts().visitors_today(self)

    @property
    def hits(self) -> list[Day]:
        """Page views per day, newest first, for ``LOGPIPE["DAYS"]`` days (30): each item a
        :class:`logpipe.web.Day` with ``.date`` (a ``datetime.date``), ``.views``,
        ``.source`` and ``.visitors``.  Today (and yesterday until its rollup) from
        memcached, earlier days from the rollup database."""
        return _counts().history(self)

    def hits_for_days(self, days: int) -> list[Day]:
        """Like :attr:`hits` for the last *days* days."""
        return _counts().history(self, days)
