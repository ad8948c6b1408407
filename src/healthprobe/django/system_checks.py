# mypy: disable-error-code="import-untyped"
"""The system check of the ``HEALTHPROBE`` setting (Django's system check framework).

Runs with ``python manage.py check`` (``--tag healthprobe`` for it alone), before
``runserver`` and ``migrate``, and, through :func:`healthprobe.django.get_wsgi_application`
and :func:`~healthprobe.django.get_asgi_application`, when the served application starts.

| id | problem |
|---|---|
| ``healthprobe.E001`` | ``HEALTHPROBE`` is not a dict |
| ``healthprobe.E002`` | an unknown key (``HEALTHPROBE``, a check, ``SHUTDOWN``, a group, ``GUARD``), did-you-mean |
| ``healthprobe.E003`` | a value of the wrong type or out of range |
| ``healthprobe.E004`` | a check's dotted path does not import, or its module has no such attribute |
| ``healthprobe.E005`` | a check's dotted path is not a callable that takes no arguments (a class, say) |
| ``healthprobe.E006`` | a ``DATABASES``, ``CACHES`` or ``MIGRATIONS`` alias not in Django's settings |
| ``healthprobe.E007`` | two checks with the same name |
| ``healthprobe.E008`` | ``METRICS`` on without prometheus-client |
| ``healthprobe.W001`` | the application served is not healthprobe's (logged at start-up, not a system check) |
| ``healthprobe.W002`` | ``LOGGING`` disables healthprobe's loggers |
| ``healthprobe.W003`` | the application factories are used without the app in ``INSTALLED_APPS`` (logged at start-up) |
| ``healthprobe.W004`` | groups without a path: a probe path at or below ``/health``, no ``GROUP_PATH`` |
"""

from __future__ import annotations

import typing

from . import conf

if typing.TYPE_CHECKING:
    from typing import Any

__all__ = ["check_settings"]


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Check the ``HEALTHPROBE`` setting, importing the dotted paths of its ``CHECKS``.

    Args:
        app_configs: the app configs Django asks about (unused: the setting is global).
        **kwargs: what Django passes besides (``databases``, ...).

    Returns:
        A list of ``django.core.checks.Error`` and ``Warning`` messages, empty when all is
        well; their ids are those of the module's table.
    """
    from django.core.checks import Error, Warning

    _, _, problems = conf.load()
    return [
        (Error if problem.is_error else Warning)(problem.message, hint=problem.hint, obj=problem.obj, id=problem.id)
        for problem in problems
    ]
