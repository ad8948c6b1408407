"""Local checks: free disk space, resident memory against a limit, and a file the app touches."""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from pathlib import Path

from .._types import CheckResult, Status
from ._common import failure, within

#: cgroup v1 reports "no limit" as a huge number (PAGE_COUNTER_MAX rounded to pages); any
#: value at or above this is treated as unlimited.
_V1_UNLIMITED = 1 << 62


def _positive(name: str, value: float | None, *, integer: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if integer and not isinstance(value, int):
        raise ValueError(f"{name} must be an integer number of bytes, got {value!r}")


def _ratio(name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"{name} must be a fraction in (0, 1], got {value!r}")


class DiskCheck:
    """Sync check of free disk space; created by :func:`disk`; see there."""

    def __init__(self, path: str | os.PathLike[str], min_free_bytes: int | None, min_free_ratio: float | None) -> None:
        _positive("min_free_bytes", min_free_bytes, integer=True)
        _ratio("min_free_ratio", min_free_ratio)
        if min_free_bytes is None and min_free_ratio is None:
            raise ValueError("disk() needs min_free_bytes or min_free_ratio")
        self.path = os.fspath(path)
        self.min_free_bytes = min_free_bytes
        self.min_free_ratio = min_free_ratio

    def __repr__(self) -> str:
        return f"<disk check {self.path}>"

    def __call__(self) -> CheckResult:
        try:
            usage = shutil.disk_usage(self.path)
        except OSError as exc:
            return failure(exc)
        free = int(usage.free)
        problems = []
        if self.min_free_bytes is not None and free < self.min_free_bytes:
            problems.append(f"{free} bytes free, below {self.min_free_bytes}")
        if self.min_free_ratio is not None and usage.total > 0 and free / usage.total < self.min_free_ratio:
            problems.append(f"{free / usage.total:.1%} free, below {self.min_free_ratio:.1%}")
        if problems:
            return CheckResult(Status.FAIL, output="; ".join(problems), observed_value=free, observed_unit="bytes")
        return CheckResult(
            Status.PASS, output=f"{free / usage.total:.1%} free", observed_value=free, observed_unit="bytes"
        )


def disk(
    path: str | os.PathLike[str] = "/", *, min_free_bytes: int | None = None, min_free_ratio: float | None = None
) -> DiskCheck:
    """A check that fails when the file system holding ``path`` runs short of space.

    Free space is what an unprivileged process may still use (``statvfs`` ``f_bavail``,
    via :func:`shutil.disk_usage`), so the root-reserved blocks do not count.

    Args:
        path: any path on the file system to watch (default ``/``).
        min_free_bytes: fail when fewer bytes than this are free.
        min_free_ratio: fail when less than this fraction (0 to 1) of the file system is free.
            At least one of the two is required; with both, either one fails the check.

    Returns:
        A sync check callable reporting the free bytes as its observed value (unit
        ``"bytes"``). A missing path fails it.

    Raises:
        ValueError: neither limit is given, or one is out of range.
    """
    return DiskCheck(path, min_free_bytes, min_free_ratio)


def rss_bytes() -> int:
    """Resident set size of this process in bytes.

    Read from ``/proc/self/statm`` on Linux; elsewhere the peak RSS from
    :func:`resource.getrusage` (kilobytes on Linux, bytes on macOS) stands in.
    """
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= _V1_UNLIMITED else value


def cgroup_memory_limit(proc_cgroup: str | None = None, root: str | os.PathLike[str] = "/sys/fs/cgroup") -> int | None:
    """The memory limit of this process's cgroup in bytes, or ``None`` when none is set.

    cgroup v2 (``memory.max``, Linux "Control Group v2") and v1 (``memory.limit_in_bytes``)
    are both read; the lowest limit on the way from the process's cgroup up to the root
    counts, since every ancestor's limit applies. A process in a cgroup namespace (a
    container) sees its own cgroup as the root.

    Args:
        proc_cgroup: the text of ``/proc/self/cgroup`` (read when ``None``).
        root: where the cgroup file systems are mounted.

    Returns:
        The limit in bytes, or ``None`` (no limit, or not Linux).
    """
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    base = Path(root)
    limits: list[int] = []
    for line in proc_cgroup.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        hierarchy, controllers, cgroup_path = fields
        relative = cgroup_path.strip().lstrip("/")
        if hierarchy == "0" and controllers == "":
            candidates = [(base, "memory.max"), (base / "unified", "memory.max")]
        elif "memory" in controllers.split(","):
            candidates = [(base / "memory", "memory.limit_in_bytes")]
        else:
            continue
        for mount, filename in candidates:
            if not (mount / filename).exists() and not (mount / relative / filename).exists():
                continue
            directory = mount / relative
            while True:
                limit = _read_limit(directory / filename)
                if limit is not None:
                    limits.append(limit)
                if directory == mount or mount not in directory.parents:
                    break
                directory = directory.parent
    return min(limits) if limits else None


class MemoryCheck:
    """Sync check of this process's resident memory; created by :func:`memory`; see there."""

    def __init__(self, max_rss_bytes: int | None, max_fraction: float | None) -> None:
        _positive("max_rss_bytes", max_rss_bytes, integer=True)
        _ratio("max_fraction", max_fraction)
        if max_rss_bytes is None and max_fraction is None:
            raise ValueError("memory() needs max_rss_bytes or max_fraction")
        self.max_rss_bytes = max_rss_bytes
        self.max_fraction = max_fraction

    def __repr__(self) -> str:
        return "<memory check>"

    def limit(self) -> int | None:
        """The RSS limit in bytes that applies now (the lower of the two), or ``None``."""
        limits = [] if self.max_rss_bytes is None else [self.max_rss_bytes]
        if self.max_fraction is not None:
            cgroup = cgroup_memory_limit()
            if cgroup is not None:
                limits.append(int(cgroup * self.max_fraction))
        return min(limits) if limits else None

    def __call__(self) -> CheckResult:
        rss = rss_bytes()
        limit = self.limit()
        if limit is None:
            return CheckResult(Status.PASS, output="no memory limit set", observed_value=rss, observed_unit="bytes")
        if rss > limit:
            return CheckResult(
                Status.FAIL, output=f"RSS {rss} bytes above {limit}", observed_value=rss, observed_unit="bytes"
            )
        return CheckResult(
            Status.PASS, output=f"RSS {rss / limit:.1%} of {limit}", observed_value=rss, observed_unit="bytes"
        )


def memory(*, max_rss_bytes: int | None = None, max_fraction: float | None = None) -> MemoryCheck:
    """A check that fails when this process's resident memory (RSS) passes a limit, so a
    leaking process is restarted (use it in liveness) before the kernel's OOM killer ends it.

    Args:
        max_rss_bytes: fail above this many bytes of RSS.
        max_fraction: fail above this fraction (0 to 1) of the cgroup v2/v1 memory limit
            (the container's ``resources.limits.memory``). When no cgroup limit is set,
            this bound does not apply. With both arguments the lower bound counts.

    Returns:
        A sync check callable reporting the RSS as its observed value (unit ``"bytes"``).

    Raises:
        ValueError: neither bound is given, or one is out of range.
    """
    return MemoryCheck(max_rss_bytes, max_fraction)


class FileCheck:
    """Sync check that a file exists (and is recent); created by :func:`file`; see there."""

    def __init__(self, path: str | os.PathLike[str], max_age: float | None) -> None:
        if max_age is not None:
            _positive("max_age", max_age)
        self.path = os.fspath(path)
        self.max_age = max_age

    def __repr__(self) -> str:
        return f"<file check {self.path}>"

    def __call__(self) -> CheckResult:
        try:
            mtime = os.stat(self.path).st_mtime
        except FileNotFoundError:
            return CheckResult(Status.FAIL, output=f"{self.path} does not exist")
        except OSError as exc:
            return failure(exc)
        age = round(max(0.0, time.time() - mtime), 3)
        return within(age, self.max_age, "s", f"{self.path} last touched {age:g} s ago, more than {self.max_age!s} s")


def file(path: str | os.PathLike[str], *, max_age: float | None = None) -> FileCheck:
    """A check that passes while ``path`` exists and, with ``max_age``, was modified at most
    ``max_age`` seconds ago: the ``exec`` probe pattern of the Kubernetes docs (``cat
    /tmp/healthy``) as a check, for an app that touches a file while it is healthy.

    Args:
        path: the file to look at.
        max_age: optional largest age of the file's modification time, in seconds.

    Returns:
        A sync check callable reporting the file's age (seconds since its last
        modification, unit ``"s"``) as its observed value.

    Raises:
        ValueError: ``max_age`` is negative or not finite.
    """
    return FileCheck(path, max_age)
