"""The launch-path test site with a guard whose token is refused, and a GROUPS that is a list."""

from __future__ import annotations

from .settings import *  # noqa: F403
from .settings import HEALTHPROBE

HEALTHPROBE = {**HEALTHPROBE, "GUARD": {"token": "two words"}, "GROUPS": ["wellness"]}
