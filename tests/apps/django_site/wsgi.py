"""WSGI entry point: ``gunicorn tests.apps.django_site.wsgi:application`` (also what
``manage.py runserver`` serves, through ``WSGI_APPLICATION``)."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.apps.django_site.settings")

from healthprobe.django import get_wsgi_application

application = get_wsgi_application()
