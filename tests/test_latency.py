"""The one percentile rule of the gate, the benchmarks and the live run (`verification/latency.py`)."""

from __future__ import annotations

import pytest

from verification.latency import latency_figures, percentile
from verification.live import LiveResult


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        (list(range(1, 101)), 0.99, 99),  # rank ceil(99.0) = 99: the 99th value, not the 100th
        (list(range(1, 101)), 0.50, 50),
        (list(range(1, 201)), 0.99, 198),
        ([5.0], 0.99, 5.0),
        ([1, 2, 3], 0.50, 2),  # rank ceil(1.5) = 2
        ([1, 2, 3], 0.0, 1),
    ],
)
def test_the_percentile_is_the_nearest_rank_and_a_value_that_was_measured(
    values: list[float], fraction: float, expected: float
) -> None:
    assert percentile(values, fraction) == expected


def test_no_values_have_no_percentile() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)
    assert latency_figures([]) == {"samples": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}


def test_figures_sort_their_samples_and_round_to_the_microsecond() -> None:
    figures = latency_figures([3.00049, 1.0, 2.0])

    assert figures == {"samples": 3, "p50_ms": 2.0, "p95_ms": 3.0, "p99_ms": 3.0, "max_ms": 3.0}


def test_the_live_runs_save_latencies_follow_the_same_rule() -> None:
    # 150 samples, unsorted: rank ceil(0.99 * 150) = 149 and ceil(0.5 * 150) = 75. A rule of its
    # own (int(0.99 * n) - 1 as an index, n // 2 for the median) would say 148 and 76.
    result = LiveResult("one-file", 1.0, save_ms=[float(value) for value in range(150, 0, -1)])

    summary = result.summary()

    assert (summary["save_p50_ms"], summary["save_p99_ms"], summary["saves"]) == (75.0, 149.0, 150)
