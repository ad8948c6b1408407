"""Hypothesis properties of probe aggregation and lifecycle state."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

from hypothesis import example, given, settings
from hypothesis import strategies as st

from healthprobe import CheckReport, CheckResult, HealthRegistry, Lifecycle, Probe, Report, Status, aggregate
from healthprobe.render import dumps, render_json, render_text

from .support import started_registry

PROPERTY = settings(max_examples=60, deadline=2000)
STATEFUL = settings(max_examples=40, deadline=5000)

statuses = st.sampled_from(list(Status))
probe_sets = st.sets(st.sampled_from(list(Probe)), min_size=1)
names = st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True)


def returning(status: Status) -> Callable[[], CheckResult]:
    return lambda: CheckResult(status)


# Each check: (status it returns, critical, probes it belongs to).
check_specs = st.dictionaries(names, st.tuples(statuses, st.booleans(), probe_sets), max_size=6)


def build(specs: dict[str, tuple[Status, bool, set[Probe]]], *, started: bool = True) -> HealthRegistry:
    checks = {
        name: (returning(status), {"probes": probes, "critical": critical})
        for name, (status, critical, probes) in specs.items()
    }
    return started_registry(checks, started=started, default_cache_ttl=0)


@PROPERTY
@given(st.lists(st.tuples(statuses, st.booleans()), max_size=8), st.lists(st.text(min_size=1), max_size=2))
def test_aggregate_fails_iff_a_critical_check_fails_or_a_reason_exists(
    entries: list[tuple[Status, bool]], reasons: list[str]
) -> None:
    reports = {}
    for index, (status, critical) in enumerate(entries):
        shown = Status.WARN if status is Status.FAIL and not critical else status
        reports[f"c{index}"] = CheckReport(f"c{index}", critical, CheckResult(shown), status)
    result = aggregate(reports, tuple(reasons))
    critical_failure = any(status is Status.FAIL and critical for status, critical in entries)
    assert (result is Status.FAIL) == (critical_failure or bool(reasons))
    if not critical_failure and not reasons:
        any_warn = any(status is not Status.PASS for status, _ in entries)
        assert result is (Status.WARN if any_warn else Status.PASS)


@PROPERTY
@given(check_specs, st.sampled_from(list(Probe)))
def test_probe_fails_iff_a_critical_member_fails(
    specs: dict[str, tuple[Status, bool, set[Probe]]], probe: Probe
) -> None:
    registry = build(specs)
    report = registry.run(probe)
    members = {name: spec for name, spec in specs.items() if probe in spec[2]}
    if probe is Probe.STARTUP:
        members = {}  # latched: startup checks are not asked again once started
    assert set(report.checks) == set(members)
    critical_failure = any(status is Status.FAIL and critical for status, critical, _ in members.values())
    assert (report.status is Status.FAIL) == critical_failure
    assert report.ok == (not critical_failure)
    for name, (status, critical, _) in members.items():
        entry = report.checks[name]
        assert entry.raw_status is status
        # Warn never fails; a non-critical failure is reported as warn.
        expected = Status.WARN if status is Status.FAIL and not critical else status
        assert entry.status is expected
    if report.status is not Status.FAIL:
        any_warn = any(entry.status is Status.WARN for entry in report.checks.values())
        assert report.status is (Status.WARN if any_warn else Status.PASS)


@PROPERTY
@given(check_specs)
def test_startup_while_starting_fails_iff_a_critical_startup_check_fails(
    specs: dict[str, tuple[Status, bool, set[Probe]]],
) -> None:
    registry = build(specs, started=False)
    report = registry.run(Probe.STARTUP)
    members = {name for name, spec in specs.items() if Probe.STARTUP in spec[2]}
    assert set(report.checks) == members
    failed = any(specs[n][0] is Status.FAIL and specs[n][1] for n in members)
    assert (report.status is Status.FAIL) == failed
    # Startup latches exactly when it passed.
    assert (registry.lifecycle is Lifecycle.STARTED) == (not failed)


@PROPERTY
@given(check_specs, st.data())
def test_exclude_removes_exactly_the_named_checks(
    specs: dict[str, tuple[Status, bool, set[Probe]]], data: st.DataObject
) -> None:
    registry = build(specs)
    probe = data.draw(st.sampled_from([Probe.READINESS, Probe.LIVENESS]))
    members = [name for name, spec in specs.items() if probe in spec[2]]
    excluded = data.draw(st.lists(st.sampled_from(members), unique=True) if members else st.just([]))
    strangers = data.draw(st.lists(names.filter(lambda n: n not in specs), max_size=2, unique=True))
    report = registry.run(probe, exclude=[*excluded, *strangers])
    assert list(report.checks) == [name for name in members if name not in excluded]
    assert report.excluded_unknown == tuple(sorted(strangers))
    kept_critical_failure = any(
        specs[name][0] is Status.FAIL and specs[name][1] for name in members if name not in excluded
    )
    assert (report.status is Status.FAIL) == kept_critical_failure


@PROPERTY
@given(check_specs, st.sampled_from(["started", "draining", "stopped"]), st.booleans())
def test_readiness_only_checks_never_affect_liveness(
    specs: dict[str, tuple[Status, bool, set[Probe]]], state: str, not_ready: bool
) -> None:
    registry = build(specs)
    if state != "started":
        registry.begin_drain()
    if state == "stopped":
        registry.mark_stopped()
    if not_ready:
        registry.set_ready(False, "maintenance")
    liveness = registry.run(Probe.LIVENESS)
    live_members = {name for name, spec in specs.items() if Probe.LIVENESS in spec[2]}
    assert set(liveness.checks) == live_members
    # Liveness is decided by its own members alone: lifecycle and readiness switches and
    # readiness-only checks play no part.
    expected_fail = any(specs[n][0] is Status.FAIL and specs[n][1] for n in live_members)
    assert (liveness.status is Status.FAIL) == expected_fail
    assert liveness.reasons == ()
    # And the same registry without the readiness-only checks gives the same answer.
    trimmed = build({n: s for n, s in specs.items() if s[2] != {Probe.READINESS}})
    assert trimmed.run(Probe.LIVENESS).status is liveness.status


# Operations on a registry, in random order, with the startup check's outcome switching.
operations = st.lists(
    st.sampled_from(
        [
            "startup-passes",
            "startup-fails",
            "probe-startup",
            "probe-readiness",
            "probe-liveness",
            "mark-started",
            "begin-drain",
            "mark-stopped",
            "not-ready",
            "ready",
        ]
    ),
    max_size=25,
)

ORDER = [Lifecycle.STARTING, Lifecycle.STARTED, Lifecycle.DRAINING, Lifecycle.STOPPED]


@STATEFUL
@given(operations, st.booleans())
def test_startup_never_unlatches(ops: list[str], critical_readiness_passes: bool) -> None:
    outcome = {"startup": False}
    registry = HealthRegistry(default_cache_ttl=0)
    registry.add_check("boot", lambda: outcome["startup"], probes=[Probe.STARTUP])
    registry.add_check("db", lambda: critical_readiness_passes)
    latched = False
    manually_not_ready = False
    previous = registry.lifecycle
    for op in ops:
        if op == "startup-passes":
            outcome["startup"] = True
        elif op == "startup-fails":
            outcome["startup"] = False
        elif op == "probe-startup":
            report = registry.run(Probe.STARTUP)
            if latched:
                assert report.status is Status.PASS  # once passed, always passed
            else:
                assert report.ok == outcome["startup"]
        elif op == "probe-readiness":
            report = registry.run(Probe.READINESS)
            if registry.lifecycle is not Lifecycle.STARTED or manually_not_ready or not critical_readiness_passes:
                assert report.status is Status.FAIL
            else:
                assert report.status is Status.PASS
            if registry.lifecycle in (Lifecycle.DRAINING, Lifecycle.STOPPED):
                assert registry.lifecycle.value in report.reasons
        elif op == "probe-liveness":
            assert registry.run(Probe.LIVENESS).status is Status.PASS
        elif op == "mark-started":
            registry.mark_started()
        elif op == "begin-drain":
            registry.begin_drain()
        elif op == "mark-stopped":
            registry.mark_stopped()
        elif op == "not-ready":
            registry.set_ready(False)
            manually_not_ready = True
        elif op == "ready":
            registry.set_ready(True)
            manually_not_ready = False
        current = registry.lifecycle
        # The lifecycle only moves forward; once it has left ``starting`` it never returns.
        assert ORDER.index(current) >= ORDER.index(previous)
        previous = current
        if current is not Lifecycle.STARTING:
            latched = True
        if latched:
            assert registry.lifecycle is not Lifecycle.STARTING
            assert registry.run(Probe.STARTUP).status is Status.PASS


@PROPERTY
@given(check_specs, st.sampled_from(["started", "draining", "stopped"]), st.booleans(), st.booleans())
def test_readiness_fails_iff_a_critical_member_fails_or_a_reason_exists(
    specs: dict[str, tuple[Status, bool, set[Probe]]], state: str, not_ready: bool, not_live: bool
) -> None:
    registry = build(specs)
    if state != "started":
        registry.begin_drain()
    if state == "stopped":
        registry.mark_stopped()
    registry.set_ready(not not_ready, "maintenance")
    registry.set_live(not not_live, "wedged")
    readiness = registry.run(Probe.READINESS)
    members = {n for n, spec in specs.items() if Probe.READINESS in spec[2]}
    critical_failure = any(specs[n][0] is Status.FAIL and specs[n][1] for n in members)
    expected_reasons = ([] if state == "started" else [state]) + (["out of rotation: maintenance"] if not_ready else [])
    assert list(readiness.reasons) == expected_reasons
    assert (readiness.status is Status.FAIL) == (critical_failure or bool(expected_reasons))
    liveness = registry.run(Probe.LIVENESS)
    assert liveness.reasons == (("not live: wedged",) if not_live else ())


# What checks and operators write, with control characters, line and paragraph separators
# and other characters a client may break lines on.
texts = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(["a\nreadyz check passed", "\r[+]x ok"])


@PROPERTY
@given(
    st.dictionaries(names, st.tuples(statuses, texts), max_size=5),
    st.lists(texts, max_size=2),
    st.lists(texts.filter(bool), max_size=2),
    st.booleans(),
)
def test_what_checks_write_never_changes_the_lines_of_a_text_body(
    outputs: dict[str, tuple[Status, str]], reasons: list[str], unknown: list[str], expose_output: bool
) -> None:
    entries = {
        name: CheckReport(name, True, CheckResult(status, output=output), status)
        for name, (status, output) in outputs.items()
    }
    status = aggregate(entries, tuple(reasons))
    report = Report(Probe.READINESS, status, entries, tuple(reasons), excluded_unknown=tuple(unknown))
    body = render_text(report, verbose=True, expose_output=expose_output)
    lines = body.splitlines()  # every line boundary Python knows, not only \n
    assert len(lines) == len(entries) + len(reasons) + len(unknown) + 1
    for line, (name, entry) in zip(lines[: len(entries)], entries.items(), strict=True):
        assert line.startswith(f"[+]{name} " if entry.status.ok else f"[-]{name} failed: ")
    assert lines[-1] == f"readyz check {'passed' if status.ok else 'failed'}"
    # JSON carries the exact text, on one line.
    raw = dumps(render_json(report, expose_output=True))
    assert b"\n" not in raw and b"\r" not in raw
    document = json.loads(raw)
    assert {name: items[0].get("output") for name, items in document["checks"].items()} == {
        name: output for name, (_, output) in outputs.items()
    }


@PROPERTY
@given(st.floats() | st.integers() | st.text(max_size=20))
@example(float("nan")).via("JSON has no NaN")
@example(float("inf")).via("nor infinities")
@example(float("-inf")).via("nor infinities")
def test_observed_value_is_always_valid_json(value: float | int | str) -> None:
    entry = CheckReport("c", True, CheckResult(Status.PASS, observed_value=value, time=1.0), Status.PASS)
    raw = dumps(render_json(Report(Probe.LIVENESS, Status.PASS, {"c": entry})))
    observed = json.loads(raw, parse_constant=lambda name: f"invalid {name}")["checks"]["c"][0]["observedValue"]
    if isinstance(value, float) and not math.isfinite(value):
        assert observed is None
    else:
        assert observed == value
