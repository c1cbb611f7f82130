"""The day the worker counts in, published for readers in ``{prefix}:#today``.

A reader in another time zone (a Django site with ``TIME_ZONE = "Asia/Tokyo"``
on a UTC server) cannot know from its own clock which day's keys the writer is
filling: the day is the request's own ``%t`` date.  So the worker looks at the
``%t`` of the last complete line of each read (one regex search per read, not
per line) and sets :func:`logpipe.keys.today_key` to the date and UTC offset of
the newest one, in the same batch as every flush's counters
(:meth:`logpipe.daemon.store.CounterStore.flush`).  Readers:
:meth:`logpipe.api.Reader.today`.
"""

from __future__ import annotations

import datetime as _dt
import re
import time

from logpipe.keys import today_key, today_value

__all__ = ["CountingDay", "FUTURE_SLACK"]

#: ``[21/Nov/2026:13:05:01 +0900]``, Apache's ``%t`` (mod_log_config, "%t").
_TIME = re.compile(rb"\[(\d\d)/([A-Z][a-z]{2})/(\d{4}):(\d\d):(\d\d):(\d\d) ([+-]\d{4})\]")
_MONTHS = {b"Jan": 1, b"Feb": 2, b"Mar": 3, b"Apr": 4, b"May": 5, b"Jun": 6,
           b"Jul": 7, b"Aug": 8, b"Sep": 9, b"Oct": 10, b"Nov": 11, b"Dec": 12}
#: A ``%t`` more than this many seconds ahead of this machine's clock is not
#: believed (a LogFormat with ``%t`` after ``%r`` lets a client write a fake one).
FUTURE_SLACK = 300
#: Bytes of a line searched for its ``%t`` (it is near the start in every common format).
SCAN_BYTES = 4096


class CountingDay:
    """The newest ``%t`` seen, as the value of ``{prefix}:#today``.

    Args:
        prefix: the key prefix (``--prefix``).
    """

    def __init__(self, prefix: str):
        self.key = today_key(prefix)
        self.newest: _dt.datetime | None = None
        self.value: bytes | None = None

    def see(self, buffer: bytes | bytearray, start: int, end: int) -> None:
        """Look at one line, ``buffer[start:end]``; keep its ``%t`` when it is the newest so far.

        Lines arrive in completion order, so a long request logged after
        midnight carries yesterday's ``%t``: the day never moves back.
        """
        match = _TIME.search(buffer, start, min(end, start + SCAN_BYTES))
        if match is None:
            return
        day, month, year, hour, minute, second, offset = match.groups()
        try:
            sign = -1 if offset[:1] == b"-" else 1
            zone = _dt.timezone(sign * _dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
            moment = _dt.datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second),
                                  tzinfo=zone)
        except (KeyError, ValueError):
            return
        if moment.timestamp() > time.time() + FUTURE_SLACK:
            return
        if self.newest is None or moment >= self.newest:
            self.newest = moment
            self.value = today_value(moment.date().isoformat(), offset.decode("ascii")).encode("ascii")

    def items(self) -> dict[str, bytes]:
        """``{key: value}`` to set with the next flush; empty before any ``%t`` was seen."""
        return {self.key: self.value} if self.value is not None else {}
