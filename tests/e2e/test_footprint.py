"""The query services stay small: no torch or lightning in memory, idle RSS < 200 MB.
(A platform of its own: Predict, which other tests call, loads torch on purpose.)"""

from __future__ import annotations

import time

import pytest

from bench.footprint import QUERY_PARTS, footprint
from testing.platform import running_platform

pytestmark = pytest.mark.slow


def test_query_services_are_small_and_torch_free(tmp_path):
    with running_platform(tmp_path, workers=0) as platform:
        time.sleep(3)
        rows = footprint(platform)
    assert set(rows) == set(QUERY_PARTS)
    for name, row in rows.items():
        assert not row["torch_loaded"], f"{name} loaded torch or lightning"
        assert row["rss_mb"] < 200, f"{name} holds {row['rss_mb']:.0f} MB at rest"
