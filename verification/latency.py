"""Latency figures, one definition for the sign-off gate and the benchmarks, so that a p99 means
the same in `signoff.json` and in `bench-results/results.json`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

PERCENTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ascending values: the smallest value that at least `fraction` of
    them do not exceed. Always a value that was really measured, never an interpolation."""
    if not ordered:
        raise ValueError("no values to take a percentile of")
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def latency_figures(durations_ms: Iterable[float]) -> dict[str, Any]:
    """Samples, p50, p95, p99 and max of durations in milliseconds (None for each when there are none)."""
    ordered = sorted(durations_ms)
    if not ordered:
        return {"samples": 0, **dict.fromkeys(PERCENTILES), "max_ms": None}
    return {
        "samples": len(ordered),
        **{name: round(percentile(ordered, fraction), 3) for name, fraction in PERCENTILES.items()},
        "max_ms": round(ordered[-1], 3),
    }
