# mypy: disable-error-code="import-untyped"
"""Django integration (extra ``django``): one app, one setting, one line in ``wsgi.py`` and
``asgi.py``.

::

    # settings.py
    INSTALLED_APPS = [..., "healthprobe.django"]
    HEALTHPROBE = {}            # the defaults: the default database on readiness, migrations on startup

    # wsgi.py                   (asgi.py: get_asgi_application)
    from healthprobe.django import get_wsgi_application

    application = get_wsgi_application()

What it gives a project:

* :func:`get_wsgi_application` and :func:`get_asgi_application`: Django's application
  wrapped by healthprobe's ``HealthMiddleware``, so ``/livez``, ``/readyz``, ``/startupz``
  (and ``/metrics``) are answered before Django's middleware (``ALLOWED_HOSTS``,
  authentication, ``APPEND_SLASH``, ``SECURE_SSL_REDIRECT``, CSRF never touch them), and a
  ``SIGTERM`` is a graceful shutdown (docs/kubernetes.md, "Launch paths");
* :func:`registry` and :func:`shutdown`: the process's registry and coordinator, built
  from the ``HEALTHPROBE`` setting (:mod:`healthprobe.django.conf`), for checks and cleanup
  hooks added in code;
* :mod:`healthprobe.django.checks`: Django's databases, caches and migrations as checks;
* the app ``healthprobe.django`` (label ``healthprobe``): a system check of the setting
  (``manage.py check``, ``runserver``, and the wrapped application at start-up), a WARNING
  at start-up when the application served is Django's own (``healthprobe.W001``), and the
  ``manage.py healthprobe [liveness|readiness|startup]`` command for exec probes.

Settings and commands are documented in docs/frameworks/django.md.
"""

from .. import _extras

with _extras.requires("django", __name__):
    import django  # noqa: F401

from . import checks
from ._wiring import get_asgi_application, get_wsgi_application, registry, shutdown

__all__ = ["checks", "get_asgi_application", "get_wsgi_application", "registry", "shutdown"]
