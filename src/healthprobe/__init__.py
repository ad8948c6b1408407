"""healthprobe: Kubernetes startup, readiness and liveness probes, graceful shutdown and
Prometheus metrics for Python web services and workers.

The core imports no web framework; the adapters live in :mod:`healthprobe.asgi` (extra
``asgi``) and :mod:`healthprobe.wsgi` (extra ``wsgi``).
"""

from typing import TYPE_CHECKING, Any

from ._runner import Check, on_thread_exit
from ._types import CheckReport, CheckResult, Lifecycle, Probe, Report, Status, aggregate
from .http import HealthEndpoints, Response
from .registry import HealthRegistry, UnknownCheckError
from .render import render_json, render_text
from .shutdown import GracefulShutdown

if TYPE_CHECKING:
    from .server import ProbeServer, serve

__all__ = [
    "Check",
    "CheckReport",
    "CheckResult",
    "GracefulShutdown",
    "HealthEndpoints",
    "HealthRegistry",
    "Lifecycle",
    "Probe",
    "ProbeServer",
    "Report",
    "Response",
    "Status",
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
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module 'healthprobe' has no attribute {name!r}")


__version__ = "0.1.0"
