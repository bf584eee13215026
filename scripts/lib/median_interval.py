"""The median of paired differences with its 95 % interval, for the bench scripts' embedded
Python (`sys.path.insert(0, "scripts/lib")`); `host/examples/nn_bench.rs` computes the same."""

import math
import statistics


def median_interval(values):
    """The median and its distribution-free 95 % interval: the order statistics at ranks
    n/2 -/+ 1.96*sqrt(n)/2 (the sign test's interval, normal approximation, rounded outwards)."""
    ordered = sorted(values)
    n = len(ordered)
    half = 0.98 * math.sqrt(n)
    low = max(math.floor(n / 2 - half), 1)
    high = min(math.ceil(n / 2 + 1 + half), n)
    return statistics.median(ordered), ordered[low - 1], ordered[high - 1]
