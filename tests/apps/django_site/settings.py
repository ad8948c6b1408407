"""Settings of the launch-path test site: production-like (``DEBUG = False``), no database,
wired as docs/frameworks/django.md tells Django users to: the ``healthprobe.django`` app,
configured by ``HEALTHPROBE``."""

from __future__ import annotations

from tests.apps import bounds

SECRET_KEY = "launch-path-tests-only-not-a-secret"
DEBUG = False
# The tests' clients send ``Host: 127.0.0.1:<port>``. The probes are answered before Django
# sees the request, so they never depend on this list.
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS: list[str] = ["healthprobe.django"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tests.apps.django_site.urls"
WSGI_APPLICATION = "tests.apps.django_site.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
TIME_ZONE = "UTC"
# No database: no database or migrations check. The shutdown bounds come from HP_* (seconds).
HEALTHPROBE = {
    "CHECKS": ["tests.apps.django_site.health.cleanup_registered"],
    "SHUTDOWN": bounds(),
}
