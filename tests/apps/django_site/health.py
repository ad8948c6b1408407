"""The site's health registry and shutdown coordinator, shared by ``wsgi.py`` and ``asgi.py``."""

from __future__ import annotations

import os
import time

from healthprobe import HealthRegistry

from .. import coordinator

registry = HealthRegistry()
shutdown = coordinator(registry)


@shutdown.hook
def cleanup_sleep() -> None:
    print(f"cleanup_sleep start {os.getpid()} {time.time():.3f}", flush=True)
    time.sleep(0.5)
    print(f"cleanup_sleep done in {os.getpid()}", flush=True)
