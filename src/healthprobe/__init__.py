"""healthprobe: Kubernetes startup, readiness and liveness probes, graceful shutdown and
Prometheus metrics for Python web services and workers.

The core imports no web framework; the adapters live in :mod:`healthprobe.asgi` (extra
``asgi``) and :mod:`healthprobe.wsgi` (extra ``wsgi``).
"""

from ._runner import Check
from ._types import CheckReport, CheckResult, Lifecycle, Probe, Report, Status, aggregate
from .http import HealthEndpoints, Response
from .registry import HealthRegistry, UnknownCheckError
from .render import render_json, render_text

__all__ = [
    "Check",
    "CheckReport",
    "CheckResult",
    "HealthEndpoints",
    "HealthRegistry",
    "Lifecycle",
    "Probe",
    "Report",
    "Response",
    "Status",
    "UnknownCheckError",
    "aggregate",
    "render_json",
    "render_text",
]

__version__ = "0.1.0"
