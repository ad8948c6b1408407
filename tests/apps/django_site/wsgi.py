"""WSGI entry point: ``gunicorn tests.apps.django_site.wsgi:application`` (also what
``manage.py runserver`` serves, through ``WSGI_APPLICATION``)."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.apps.django_site.settings")

from django.core.wsgi import get_wsgi_application

from healthprobe.wsgi import HealthMiddleware

from .health import registry, shutdown

application = HealthMiddleware(get_wsgi_application(), registry, shutdown=shutdown)
