"""The site's health registry and shutdown coordinator, shared by ``wsgi.py`` and ``asgi.py``."""

from __future__ import annotations

from healthprobe import HealthRegistry

from .. import add_cleanup_sleep, coordinator

registry = HealthRegistry()
shutdown = coordinator(registry)


add_cleanup_sleep(shutdown)
