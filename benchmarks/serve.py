"""The two apps uvicorn serves for the socket comparison (``benchmarks.serve:...``)."""

from __future__ import annotations

from . import apps

#: healthprobe's middleware in front of an ordinary Starlette app; probes answer ``/livez``.
healthprobe_app = apps.healthprobe_asgi()

#: The floor: a raw ASGI callable answering a constant ``200 ok``.
raw_app = apps.raw_asgi
