"""A minimal Django project for the launch-path tests: ``/`` answers at once, ``/slow`` after
``?seconds=`` (default 2.0 s). No database.

Served as ``gunicorn tests.apps.django_site.wsgi:application``, ``uvicorn
tests.apps.django_site.asgi:application`` and ``python tests/apps/django_site/manage.py
runserver``. Timings come from the environment: ``HP_DELAY``, ``HP_DRAIN``,
``HP_HOOK_TIMEOUT``, ``HP_REPEAT_WINDOW`` (seconds).
"""
