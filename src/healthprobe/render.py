"""Report -> response bodies: kube-apiserver style text and ``application/health+json``.

Text follows kube-apiserver's ``/livez`` and ``/readyz`` output
(https://kubernetes.io/docs/reference/using-api/health-checks/): ``ok`` when the probe
passes and ``verbose`` was not asked, else one ``[+]name ok`` / ``[-]name failed: reason``
line per check and a closing ``<probe>z check passed|failed`` line (``<group> check
passed|failed`` for a group of checks).

JSON follows the IETF draft "Health Check Response Format for HTTP APIs"
(draft-inadarei-api-health-check): top-level ``status``, ``output`` and ``checks``, each
check a list of objects with ``componentId``, ``status``, ``time``, ``observedValue``,
``observedUnit`` and ``output``. Two keys of healthprobe's own, user-defined keys of a check
object as the draft's "Additional Keys" section allows them: ``critical`` (``false`` for a
non-critical check) and ``tags`` (the check's tags, sorted, when it has any). ``tags`` is a
key of its own rather than ``componentType``, which the draft gives one word per component
(``datastore``, ``system``) while a check may carry several tags.

What a check itself wrote (its output or exception text) is shown only when
``expose_output`` is ``True``; otherwise the reason is ``reason withheld``. Words that
healthprobe writes itself (``timed out after 0.8 s``, ``draining``) are always shown, and so
are a check's ``observedValue`` and ``observedUnit`` (measurements: a check must not put a
secret there; a string is cut to 500 characters). In text,
every reason is escaped onto its line by :func:`one_line`, so what a check wrote cannot add
``[+]`` lines or a closing line of its own; JSON escapes control characters itself.
"""

from __future__ import annotations

import datetime
import json
import math
import typing

from . import _types

if typing.TYPE_CHECKING:
    from typing import Any

    from ._types import CheckReport, Report

__all__ = ["PROBE_WORD", "WITHHELD", "dumps", "one_line", "render_json", "render_text"]

#: The path word of each probe in kube-apiserver style text (``livez``, ``readyz``, ...).
PROBE_WORD = {_types.Probe.LIVENESS: "livez", _types.Probe.READINESS: "readyz", _types.Probe.STARTUP: "startupz"}

#: What a body shows in place of the reason a check wrote, unless ``expose_output`` is on.
WITHHELD = "reason withheld"


@typing.overload
def one_line(text: str) -> str: ...
@typing.overload
def one_line(text: None) -> None: ...
def one_line(text: str | None) -> str | None:
    """``text`` with every character :meth:`str.isprintable` refuses written as its Python
    escape (``\\n``, ``\\r``, ``\\x1b``, ``\\x7f``, ``\\u2028``...), so it stays on one line of
    a text body or a log record and cannot forge others.

    Escaped: the C0 controls (line feed and carriage return among them), DEL, the C1 controls
    (``NEL``), the line and paragraph separators, and format characters such as bidirectional
    overrides. ``None`` is returned as is.
    """
    if text is None or text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _reason(entry: CheckReport, expose_output: bool) -> str | None:
    result = entry.result
    if result.timed_out:
        return result.output
    if expose_output:
        return result.output
    if result.status is _types.Status.PASS:
        return None
    return WITHHELD


def render_text(report: Report, *, verbose: bool = False, expose_output: bool = False) -> str:
    """Render ``report`` as kube-apiserver style plain text.

    Args:
        report: the probe's report.
        verbose: list every check even when the probe passes.
        expose_output: show what checks wrote (may contain dependency details).

    Returns:
        The body, ending in a newline: ``ok``, or one line per check, per lifecycle reason and
        per unknown excluded name, then the closing line. Control characters in what checks
        and reasons wrote are escaped (:func:`one_line`), so the line count is fixed by the
        report, never by its text.
    """
    word = PROBE_WORD[report.probe] if report.group is None else report.group
    if report.ok and not verbose and not report.excluded_unknown:
        return "ok\n"
    lines = []
    for entry in report.checks.values():
        reason = one_line(_reason(entry, expose_output))
        if entry.status is _types.Status.PASS:
            lines.append(f"[+]{entry.name} ok" + (f": {reason}" if reason and expose_output else ""))
        elif entry.status is _types.Status.WARN:
            lines.append(f"[+]{entry.name} warn: {reason or WITHHELD}")
        else:
            lines.append(f"[-]{entry.name} failed: {reason or WITHHELD}")
    for reason_text in report.reasons:
        lines.append(f"[-]lifecycle failed: {one_line(reason_text)}")
    for name in report.excluded_unknown:
        lines.append(f'warn: some health checks cannot be excluded: no matches for "{one_line(name)}"')
    lines.append(f"{word} check {'passed' if report.ok else 'failed'}")
    return "\n".join(lines) + "\n"


def _rfc3339(epoch: float) -> str:
    return (
        datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _json_value(value: object) -> float | int | str | None:
    """``value`` as JSON can carry it, in a bounded size. JSON (RFC 8259, section 6) has no
    NaN or Infinity: a non-finite number is sent as null ("no number to show"), keeping the
    field's type a number or null; so is an integer beyond the range of a float (about
    1.8e308, 309 digits), which most JSON parsers cannot read and whose digits Python will
    not even write past 4,300 (:func:`sys.set_int_max_str_digits`). A str is cut to
    :data:`~healthprobe._types.TEXT_LIMIT` characters. Anything but a number or a str (which
    :class:`CheckResult` refuses, but a hand-made report may hold) is null too, never its
    ``repr``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            return None
        return value
    if isinstance(value, str):
        return value if len(value) <= _types.TEXT_LIMIT else value[: _types.TEXT_LIMIT]
    return None


def render_json(report: Report, *, expose_output: bool = False) -> dict[str, Any]:
    """Render ``report`` as an ``application/health+json`` document (a dict ready for
    :func:`json.dumps`).

    Args:
        report: the probe's report.
        expose_output: include what checks wrote in each check's ``output``.

    Returns:
        ``{"status": ..., "checks": {name: [{...}]}, ...}`` with IETF draft field names. A
        check's ``observedValue`` is its number or string as is, or ``null`` for NaN, the
        infinities and integers beyond the range of a float, which JSON cannot carry
        (RFC 8259, section 6). ``observedValue`` and ``observedUnit`` are shown whatever
        ``expose_output`` says (they are measurements, not messages); a string is cut to
        500 characters, so the document stays small whatever a report holds.
    """
    checks: dict[str, list[dict[str, Any]]] = {}
    for entry in report.checks.values():
        result = entry.result
        item: dict[str, Any] = {"componentId": entry.name, "status": result.status.value}
        if result.time:
            item["time"] = _rfc3339(result.time)
        if result.observed_value is not None:
            value = result.observed_value
            item["observedValue"] = _json_value(value)
            unit = result.observed_unit
            if isinstance(unit, str):
                item["observedUnit"] = unit if len(unit) <= _types.TEXT_LIMIT else unit[: _types.TEXT_LIMIT]
        reason = _reason(entry, expose_output)
        if reason is not None:
            item["output"] = reason
        if not entry.critical:
            item["critical"] = False
        if entry.tags:
            item["tags"] = list(entry.tags)
        checks[entry.name] = [item]
    description = f"{report.probe.value} probe" if report.group is None else f"{report.group} group"
    document: dict[str, Any] = {"status": report.status.value, "description": description}
    if report.reasons:
        document["output"] = "; ".join(report.reasons)
    if report.excluded_unknown:
        document["notes"] = [f"no check to exclude named {name!r}" for name in report.excluded_unknown]
    document["checks"] = checks
    return document


def dumps(document: dict[str, Any]) -> bytes:
    """Serialise a JSON document compactly as UTF-8.

    Raises:
        TypeError: a value JSON cannot represent (never written as its ``repr``).
        ValueError: a NaN or infinite number (RFC 8259 has none).
    """
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
