"""healthprobe: Kubernetes startup, readiness and liveness probes, graceful shutdown and
Prometheus metrics for Python web services and workers.

The core imports no web framework; the adapters live in :mod:`healthprobe.asgi` (extra
``asgi``) and :mod:`healthprobe.wsgi` (extra ``wsgi``).
"""

from __future__ import annotations

import typing

from ._runner import Check, on_thread_exit
from ._transitions import Transition
from ._types import CheckReport, CheckResult, Lifecycle, Probe, Report, Status, aggregate
from .guard import Guard
from .http import HealthEndpoints, Response
from .registry import HealthRegistry, UnknownCheckError
from .render import render_json, render_text
from .shutdown import GracefulShutdown

# The package of server integrations registers how the coordinator stops the servers it
# recognises by their signal handlers (uvicorn, gunicorn workers); it imports no server.
from . import servers as _servers  # noqa: F401  # isort: skip

if typing.TYPE_CHECKING:
    from typing import Any

    from .probe_server import ProbeServer, serve

__all__ = [
    "Check",
    "CheckReport",
    "CheckResult",
    "GracefulShutdown",
    "Guard",
    "HealthEndpoints",
    "HealthRegistry",
    "Lifecycle",
    "Probe",
    "ProbeServer",
    "Report",
    "Response",
    "Status",
    "Transition",
    "UnknownCheckError",
    "aggregate",
    "on_thread_exit",
    "render_json",
    "render_text",
    "serve",
]

_LAZY = {"serve", "ProbeServer"}


def __getattr__(name: str) -> Any:
    # The standalone probe server needs Werkzeug (extra ``wsgi``): imported on first use,
    # so importing the core never imports an extra.
    if name in _LAZY:
        from . import probe_server

        return getattr(probe_server, name)
    raise AttributeError(f"module 'healthprobe' has no attribute {name!r}")


__version__ = "0.1.0"
