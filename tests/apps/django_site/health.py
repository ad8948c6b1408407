"""The site's cleanup hook, registered on the coordinator ``healthprobe.django`` builds from
``HEALTHPROBE["SHUTDOWN"]``, and the checks named in ``HEALTHPROBE["CHECKS"]`` (which imports
this module as the registry is built): one that passes once the hook is registered, and one
of a real TCP dependency for the groups' settings (``settings_groups``)."""

from __future__ import annotations

import os
import socket

from healthprobe.django import registry, shutdown

from .. import add_cleanup_sleep, show_logs

show_logs()
add_cleanup_sleep(shutdown())

if os.environ.get("HP_GROUP_IN_CODE"):
    # A group added in code, beside the settings' checks (settings_nested warns of it).
    registry().add_group(os.environ["HP_GROUP_IN_CODE"], tags=("external",))


def cleanup_registered() -> bool:
    """Readiness: the cleanup hook is registered (it is, once this module is imported)."""
    return True


def upstream() -> None:
    """The TCP service on ``127.0.0.1:$HP_UPSTREAM_PORT`` accepts a connection within 0.5 s
    (``tests.support.TcpDependency``); raises ``ConnectionRefusedError`` while it is down."""
    socket.create_connection(("127.0.0.1", int(os.environ["HP_UPSTREAM_PORT"])), timeout=0.5).close()
