# mypy: disable-error-code="import-untyped"
"""The Django app ``healthprobe.django`` (label ``healthprobe``)."""

from __future__ import annotations

import django.apps

__all__ = ["TAG", "HealthprobeConfig"]

#: The tag of healthprobe's system checks: ``python manage.py check --tag healthprobe``.
TAG = "healthprobe"


class HealthprobeConfig(django.apps.AppConfig):  # type: ignore[misc]
    """Registers the system check of the ``HEALTHPROBE`` setting and watches for an
    application served without :func:`healthprobe.django.get_wsgi_application` or
    :func:`~healthprobe.django.get_asgi_application` (``healthprobe.W001``)."""

    name = "healthprobe.django"
    label = "healthprobe"
    verbose_name = "healthprobe"

    def ready(self) -> None:
        from django.core import checks

        from . import _wiring, conf, system_checks

        checks.register(system_checks.check_settings, TAG)
        basics, _ = conf.load_basics()
        _wiring.watch(basics.probe_paths())
