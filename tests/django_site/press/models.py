from django.db import models

from logpipe.django import HitsMixin


class PressRelease(HitsMixin, models.Model):
    """A press release: the origin of logpipe showed "views today" on these."""

    slug = models.SlugField(unique=True)
    title = models.CharField(max_length=200)

    class Meta:
        app_label = "press"

    def get_absolute_url(self) -> str:
        return f"/press/{self.slug}/"
