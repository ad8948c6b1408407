"""The launch-path test site with its probes under ``/health`` (``/health/live``,
``/health/ready``) and a group: with ``$HP_GROUP_PATH`` set, ``GROUP_PATH`` is that path;
without it, the group has no path and ``healthprobe.W004`` says so. ``$HP_GROUPS_IN_SETTINGS``
empty leaves ``GROUPS`` out (a group added in code, ``$HP_GROUP_IN_CODE``, warns instead)."""

from __future__ import annotations

import os

from .settings import *  # noqa: F403
from .settings import HEALTHPROBE

HEALTHPROBE = {
    **HEALTHPROBE,
    "CHECKS": [
        *HEALTHPROBE["CHECKS"],
        {"check": "tests.apps.django_site.health.upstream", "probes": [], "tags": ["external"]},
    ],
    "PATHS": {"/health/live": "liveness", "/health/ready": "readiness", "/health/startup": "startup"},
}
if os.environ.get("HP_GROUPS_IN_SETTINGS", "1"):
    HEALTHPROBE["GROUPS"] = {"wellness": {"tags": ["external"]}}
if os.environ.get("HP_GROUP_PATH"):
    HEALTHPROBE["GROUP_PATH"] = os.environ["HP_GROUP_PATH"]
