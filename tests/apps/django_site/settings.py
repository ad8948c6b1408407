"""Settings of the launch-path test site: production-like (``DEBUG = False``), no database."""

from __future__ import annotations

SECRET_KEY = "launch-path-tests-only-not-a-secret"
DEBUG = False
# The tests' clients send ``Host: 127.0.0.1:<port>``. The probes are answered by the
# middleware before Django sees the request, so they never depend on this list.
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tests.apps.django_site.urls"
WSGI_APPLICATION = "tests.apps.django_site.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
TIME_ZONE = "UTC"
