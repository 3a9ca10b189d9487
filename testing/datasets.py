"""A dataset version record for tests and benchmarks of the data catalog's store:
every field filled, any of them changed by keyword."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from services.data.records import (
    Column, DatasetVersion, Layout, MissingPolicy, Role, Stats, TargetStats, TaskKind,
)


def make_version(name="seed", version="0123456789ab", sha="f" * 64, **changes) -> DatasetVersion:
    v = DatasetVersion(
        name=name, version=version, content_sha256=sha, source_uri="s3://b/seed/", source_sha256="e" * 64,
        source_etags={"seed/X.csv": "abc"}, layout=Layout.XY_FOLDER,
        columns=[Column("x0", "float64", Role.FEATURE), Column("target", "float64", Role.TARGET)],
        target="target", row_count=100, target_stats=TargetStats(-1.0, 2.0, 0.5, 1.0, 100),
        task_kind=TaskKind.REGRESSION, class_labels=[], split_seed=42,
        created_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), location="file:///x.parquet",
        size_bytes=1234, missing_policy=MissingPolicy.REFUSE, rows_dropped=0,
        stats=[Stats("x0", -1.0, 1.0, 0.0, 0.5, 0)],
    )
    return replace(v, **changes)
