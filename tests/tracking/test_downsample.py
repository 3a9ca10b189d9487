import math

from hypothesis import given
from hypothesis import strategies as st

from services.tracking.downsample import downsample, downsample_indices


def test_short_series_and_zero_keep_everything():
    values = [3.0, 1.0, 2.0]
    assert downsample_indices(values, 10) == [0, 1, 2]
    assert downsample_indices(list(range(50)), 0) == list(range(50))


def test_keeps_first_last_min_max_and_spikes():
    values = [float(i % 7) for i in range(1000)]
    values[123] = -50.0  # a spike down
    values[877] = 99.0  # a spike up
    kept = downsample_indices(values, 20)
    assert len(kept) <= 20
    assert kept == sorted(set(kept))
    assert {0, 999, 123, 877} <= set(kept)


def test_nan_is_never_min_or_max():
    values = [1.0, math.nan, 5.0, -2.0, math.nan, 0.5] * 10
    kept = downsample_indices(values, 6)
    assert {0, len(values) - 1, 2, 3} <= set(kept)


def test_tiny_budgets_still_keep_the_four():
    values = [5.0, 1.0, 9.0, 2.0, 3.0, 4.0]
    assert downsample_indices(values, 1) == [0, 1, 2, 5]


def test_points_come_back_in_order():
    class P:
        def __init__(self, v):
            self.value = v

    points = [P(v) for v in [4, 8, 1, 9, 2, 7, 3, 6]]
    assert [p.value for p in downsample(points, 4)] == [4, 1, 9, 6]


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=400),
       st.integers(min_value=4, max_value=100))
def test_property_bounds_and_extremes(values, max_points):
    kept = downsample_indices(values, max_points)
    assert len(kept) <= max(max_points, 4)
    assert kept[0] == 0 and kept[-1] == len(values) - 1
    chosen = [values[i] for i in kept]
    assert min(chosen) == min(values) and max(chosen) == max(values)
    if len(values) > max_points:
        assert len(kept) >= min(max_points, len(values)) - 1 - 2  # uses most of the budget
