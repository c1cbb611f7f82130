"""Django for the tests in this directory only.

The settings are ``siteproject.settings`` (this directory is on ``sys.path``:
it has no ``__init__.py``), applied with ``settings.configure`` when this
directory is collected, so a run of the other test files never imports Django
and no ``DJANGO_SETTINGS_MODULE`` leaks into them; ``configure`` (unlike a
settings module) does not set the process's TZ, which the other tests and the
logpipe processes they start would inherit.
"""

from __future__ import annotations

import os
import time

import django
import pytest
from django.conf import settings

import siteproject.settings as site_settings

if not settings.configured:
    settings.configure(**{name: getattr(site_settings, name) for name in dir(site_settings) if name.isupper()})
    django.setup()


@pytest.fixture
def django_time_zone():
    """``set(zone)``: Django's TIME_ZONE for this test.  Django's setting_changed handler
    sets the process's TZ (as a site's settings do at startup); the TZ the process had is
    put back afterwards."""
    from django.test import override_settings

    saved = os.environ.get("TZ")
    overrides = []

    def set_zone(zone: str) -> None:
        override = override_settings(TIME_ZONE=zone)
        override.enable()
        overrides.append(override)

    yield set_zone
    for override in reversed(overrides):
        override.disable()
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()
