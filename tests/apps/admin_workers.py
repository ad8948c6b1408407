"""A WSGI app for several gunicorn workers taken out of rotation by one admin request:
``/who`` answers ``<pid> <ready>`` (this worker's readiness, ``pass`` or ``fail``), so a test
sees each worker's own state. ``HP_GUARD_TOKEN`` is the guard's token; ``HP_DISABLE_FILE``,
when set, the registry's disable file."""

from __future__ import annotations

import os

from healthprobe import Guard, HealthRegistry
from healthprobe.wsgi import HealthMiddleware

from . import plain_apps

registry = HealthRegistry(disable_file=os.environ.get("HP_DISABLE_FILE") or None)
registry.add_check("cache", lambda: True)
registry.mark_started()


def _who() -> bytes:
    return f"{os.getpid()} {registry.run('readiness').status.value}".encode()


_, _wsgi = plain_apps({"/who": _who})
app = HealthMiddleware(_wsgi, registry, guard=Guard(os.environ["HP_GUARD_TOKEN"], rotation_path="/admin/rotation"))
