# mypy: disable-error-code="import-untyped"
"""``python manage.py healthprobe [liveness|readiness|startup] [-v]``: run a probe in this
process, for Kubernetes ``exec`` probes and Docker ``HEALTHCHECK``.

The probe runs against :func:`healthprobe.django.registry`, the checks of the
``HEALTHPROBE`` setting, in a new process: it answers what the checks say, not what the
server process knows (an exec probe cannot see the server's shutdown, so readiness does not
fail at ``SIGTERM`` this way; prefer an ``httpGet`` probe for readiness). A readiness probe
in a new process also runs the startup checks, since readiness fails until startup has
passed (the registry's rule).

Output, in the conventions of ``healthprobe probe`` (:mod:`healthprobe.cli`), since the
kubelet puts an exec probe's output in the pod's events:

* passing (``pass`` or ``warn``): the kube-apiserver style body on standard output, ``ok``
  (with ``-v``, a ``[+]`` line per check and ``readyz check passed``);
* failing: on standard error, the ``[-]name failed: reason`` lines (a readiness probe that
  fails because startup has not passed lists the failing startup checks first)
  (:func:`healthprobe.cli.failing_lines`: at most 10 lines and 1 KiB, control characters
  escaped) and the closing line ``readyz check failed``; with ``-v``, the whole body;
* ``-v 0``: nothing.

Reasons are ``reason withheld`` unless ``HEALTHPROBE["EXPOSE_OUTPUT"]`` is on (the log lines
of the checks have them). Exit status: 0 when the probe passes or warns, 1 when it fails or
the setting has errors, 2 for a usage error.

``-v`` is Django's ``--verbosity``: given alone it means 2 (verbose), ``-v 0`` to ``-v 3``
keep their meaning; ``--verbose`` is ``-v 2``.
"""

from __future__ import annotations

import sys
import typing

from django.core import exceptions, management

from .... import _types, cli, render
from ... import _wiring, conf

if typing.TYPE_CHECKING:
    from typing import Any

__all__ = ["PROBES", "Command"]

#: The probes the command runs, by the names of the registry.
PROBES = ("liveness", "readiness", "startup")


class Command(management.BaseCommand):  # type: ignore[misc]
    """``manage.py healthprobe``: see the module's docstring."""

    help = (
        "Run a probe (liveness, readiness or startup; readiness by default) against the checks of the "
        "HEALTHPROBE setting in this process: exit 0 when it passes or warns, 1 when it fails."
    )
    # An exec probe runs every few seconds: Django's system checks are `manage.py check`'s
    # business (the setting's errors still fail the probe, from registry()).
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_base_argument(self, parser: Any, *args: Any, **kwargs: Any) -> None:
        if "--verbosity" in args:
            # -v alone is -v 2, as `healthprobe probe -v`; -v N keeps Django's meaning.
            kwargs.update(nargs="?", const=2)
        super().add_base_argument(parser, *args, **kwargs)

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("probe", nargs="?", default="readiness", choices=PROBES, help="readiness by default")
        parser.add_argument(
            "--verbose",
            dest="verbosity",
            action="store_const",
            const=2,
            help="list every check (-v 2); a failing probe prints its whole body",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        probe: str = options["probe"]
        verbosity = int(options["verbosity"])
        try:
            health = _wiring.registry()
        except exceptions.ImproperlyConfigured as exc:
            raise management.CommandError(str(exc)) from None
        basics, _ = conf.load_basics()
        report = health.run(probe)
        verbose = verbosity >= 2
        body = render.render_text(report, verbose=verbose, expose_output=basics.expose_output)
        startup = health.last_reports.get(_types.Probe.STARTUP)
        if (
            report.probe is _types.Probe.READINESS
            and report.lifecycle is _types.Lifecycle.STARTING
            and startup
            and not startup.ok
        ):
            # Readiness failed for the startup probe's sake: say which startup check failed.
            body = render.render_text(startup, verbose=verbose, expose_output=basics.expose_output) + body
        if verbosity > 0:
            if report.ok:
                self.stdout.write(body, ending="")
            elif verbose:
                self.stderr.write(body, ending="")
            else:
                lines = cli.failing_lines(body.encode(), "text/plain")
                self.stderr.write("\n".join([*lines, f"{render.PROBE_WORD[report.probe]} check failed"]))
        if not report.ok:
            sys.exit(1)
