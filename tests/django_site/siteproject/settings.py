"""Settings of the Django site the logpipe app is tested in (tests/django_site).

``DJANGO_SETTINGS_MODULE=siteproject.settings`` works for ``django-admin``; the
tests load these values with ``settings.configure`` (conftest.py) so that
Django does not set the whole pytest process's TZ at startup.
"""

SECRET_KEY = "logpipe-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "logpipe.django",
    "press",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
ROOT_URLCONF = "siteproject.urls"
MIDDLEWARE: list[str] = []
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
}]
# tests replace MEMCACHED and DB with their own servers
LOGPIPE = {
    "MEMCACHED": "127.0.0.1:11211",
    "DB": "sqlite:////var/lib/logpipe/logpipe.sqlite3",
    "PREFIX": "logpipe",
    "SITE": None,
}
LOGGING = {"version": 1, "disable_existing_loggers": False}
