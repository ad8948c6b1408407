"""Benchmarks of healthprobe against bare applications and peer packages.

Run them all with ``python -m benchmarks`` (or ``make bench``); ``--quick`` uses tiny counts
(the smoke test runs that). Each comparison runs both sides in the same process, interleaved
round by round, and reports the median of the per-round ratios, so a noisy machine moves
both sides of a ratio together instead of deciding it.
"""
