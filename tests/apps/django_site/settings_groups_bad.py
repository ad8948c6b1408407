"""The launch-path test site with every mistake a group, a tag or a guard can hold: what
``manage.py check`` reports (tests/test_framework_groups.py)."""

from __future__ import annotations

from .settings import *  # noqa: F403
from .settings import HEALTHPROBE

HEALTHPROBE = {
    **HEALTHPROBE,
    "CHECKS": [
        {"check": "tests.apps.django_site.health.cleanup_registered", "tag": ["db"]},
        {"check": "tests.apps.django_site.health.upstream", "probes": [], "tags": ["no spaces"]},
    ],
    "GROUPS": {
        "wellness": {"tag": ["external"]},
        "payments": {"checks": ["upstream"], "failure_status": 200},
        "empty": {},
        "bad name": {"tags": ["external"]},
        "listed": ["upstream"],
    },
    "GUARD": {"tokn": "s3cret-value"},
    "GROUP_PATH": "/livez",
}
