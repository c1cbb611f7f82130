"""The Django application of logpipe (``INSTALLED_APPS = [..., "logpipe.django"]``)."""

from django.apps import AppConfig


class LogpipeConfig(AppConfig):
    """Registers the system check; the template tags load as ``{% load logpipe %}``."""

    name = "logpipe.django"
    label = "logpipe"
    verbose_name = "logpipe"

    def ready(self) -> None:
        from logpipe.django import checks, conf  # noqa: F401 (registers the check and the settings hook)
