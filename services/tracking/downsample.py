"""Downsampling a metric series for a chart: at most `max_points`, always keeping the
first point, the last, the minimum and the maximum, and the min and max of evenly
sized buckets in between (so spikes survive, unlike plain striding)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

P = TypeVar("P")

# Fewer than this cannot hold first, last, min and max.
MIN_POINTS = 4


def _extremes(values: Sequence[float], lo: int, hi: int) -> tuple[int | None, int | None]:
    """Indices of the smallest and largest non-NaN value in values[lo:hi]."""
    imin = imax = None
    for i in range(lo, hi):
        v = values[i]
        if math.isnan(v):
            continue
        if imin is None or v < values[imin]:
            imin = i
        if imax is None or v > values[imax]:
            imax = i
    return imin, imax


def downsample_indices(values: Sequence[float], max_points: int) -> list[int]:
    """Indices (ascending) of the points to keep. max_points <= 0 keeps everything;
    1 to 3 are treated as 4."""
    n = len(values)
    if max_points <= 0 or n <= max_points:
        return list(range(n))
    max_points = max(max_points, MIN_POINTS)
    keep = {0, n - 1}
    keep.update(i for i in _extremes(values, 0, n) if i is not None)
    budget = max_points - len(keep)
    buckets = budget // 2
    if buckets > 0:
        width = (n - 2) / buckets
        for b in range(buckets):
            lo = 1 + int(b * width)
            hi = 1 + int((b + 1) * width) if b < buckets - 1 else n - 1
            imin, imax = _extremes(values, lo, hi)
            for i in (imin, imax):
                if i is not None and len(keep) < max_points:
                    keep.add(i)
    return sorted(keep)


def downsample(points: Sequence[P], max_points: int, value=lambda p: p.value) -> list[P]:
    """The points to draw, in their original order."""
    values = [float(value(p)) for p in points]
    return [points[i] for i in downsample_indices(values, max_points)]
