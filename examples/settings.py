"""Reading the examples' settings from the environment, one line of reason per mistake."""

from __future__ import annotations

import math
from collections.abc import Mapping


def optional_seconds(env: Mapping[str, str], name: str) -> float | None:
    """The number of seconds in ``env[name]``, ``None`` when unset or empty.

    Raises:
        ValueError: the value is not a finite number >= 0 (one-line reason).
    """
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {raw!r}")
    return seconds


def seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """The number of seconds in ``env[name]``, ``default`` when unset or empty.

    Raises:
        ValueError: the value is not a finite number >= 0 (one-line reason).
    """
    value = optional_seconds(env, name)
    return default if value is None else value
