"""The site's cleanup hook, registered on the coordinator ``healthprobe.django`` builds from
``HEALTHPROBE["SHUTDOWN"]``, and a check that passes once it is registered (named in
``HEALTHPROBE["CHECKS"]``, which imports this module as the registry is built)."""

from __future__ import annotations

from healthprobe.django import shutdown

from .. import add_cleanup_sleep, show_logs

show_logs()
add_cleanup_sleep(shutdown())


def cleanup_registered() -> bool:
    """Readiness: the cleanup hook is registered (it is, once this module is imported)."""
    return True
