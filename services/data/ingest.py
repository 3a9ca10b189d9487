"""From source files to the stored table: sniff, validate, convert, describe.

Streaming throughout: CSVs are read in blocks by pyarrow's streaming reader, Parquet
sources by row batches; statistics are merged batch by batch and the output Parquet is
written incrementally, so memory does not grow with the file. A second pass over the
written Parquet runs only when values must change after everything was seen (filling
means, encoding class labels).

The stored table: the feature columns (float64, in source order) and the target —
float64 for regression, the class index (int64, 0..k-1, labels sorted) for
classification. Headerless CSVs get names `x0..x{n-1}` for features and `target` for a
headerless y.csv.

Task kind, when the caller leaves it to us: classification when the target is text, or
when it is integer-valued with at most 20 distinct values and at least 20 rows per value
on average (so a count-like regression target on a small table stays regression);
regression otherwise.

Status codes: what is wrong with the request (an unknown column) is INVALID_ARGUMENT;
what is wrong with the data (a text feature, NaN, too few rows) is FAILED_PRECONDITION.
"""


from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from services.common.errors import FailedPrecondition
from services.data.model import IngestOptions, MissingPolicy, Role, Stats, Table, TargetStats, TaskKind
from services.data.readers import PARQUET_BATCH_ROWS, Plan, Reader, Replan, read_csv_table, read_parquet_table, read_xy
from services.data.sniff import SourceFile, sha256_file

__all__ = ["SourceFile", "sha256_file", "ingest", "Moments"]

# Rows per Parquet row group: CSV blocks are gathered up to this before they are written.
ROW_GROUP_ROWS = 64_000
AUTO_MAX_CLASSES = 20
AUTO_MIN_ROWS_PER_CLASS = 20
MAX_CLASSES = 1000


@dataclass
class Moments:
    """Count, mean and M2 merged batch by batch (Chan et al.), plus min, max and missing."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    missing: int = 0

    def add(self, values: np.ndarray) -> None:
        nb = values.size
        if nb == 0:
            return
        mb = float(values.mean())
        m2b = float(((values - mb) ** 2).sum())
        delta = mb - self.mean
        total = self.n + nb
        self.mean += delta * nb / total
        self.m2 += m2b + delta * delta * self.n * nb / total
        self.n = total
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0

    def stats(self, name: str) -> Stats:
        if self.n == 0:
            return Stats(name, math.nan, math.nan, math.nan, math.nan, self.missing)
        return Stats(name, self.min, self.max, self.mean, self.std, self.missing)


class _RowGroupWriter:
    """A Parquet writer that gathers small batches into row groups of ROW_GROUP_ROWS."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.writer = pq.ParquetWriter(path, schema)
        self.pending: list[pa.RecordBatch] = []
        self.rows = 0

    def write_batch(self, batch: pa.RecordBatch) -> None:
        self.pending.append(batch)
        self.rows += batch.num_rows
        if self.rows >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.Table.from_batches(self.pending), row_group_size=max(self.rows, 1))
            self.pending, self.rows = [], 0

    def __enter__(self):
        return self

    def __exit__(self, kind, *rest):
        if kind is None:
            self.flush()
        self.writer.close()


def _finite_mask(values: np.ndarray) -> np.ndarray:
    return np.isfinite(values)


def write_table(reader: Reader, options: IngestOptions, out: Path, *, min_rows: int, label: str) -> Table:
    """Pass one: validate and write features + raw target; pass two only when needed."""
    features = reader.features
    if not features:
        raise FailedPrecondition(f"{label}: no feature columns left")
    policy = options.missing_policy
    moments = {name: Moments() for name in features}
    target_moments = Moments()
    distinct = _Distinct(reader.text_target)
    schema = pa.schema(
        [pa.field(f, pa.float64()) for f in features]
        + [pa.field(reader.target, pa.string() if reader.text_target else pa.float64())]
    )
    staging = out.with_name(out.name + ".pass1")
    rows_in = rows_out = dropped = filled = 0
    all_integer = True
    try:
        with _RowGroupWriter(staging, schema) as writer:
            for batch in reader.batches:
                n = batch.rows
                keep = np.ones(n, dtype=bool)
                if reader.text_target:
                    target_ok = ~np.asarray(pc.is_null(batch.target).to_numpy(zero_copy_only=False), dtype=bool)
                    stripped = pc.utf8_trim_whitespace(batch.target)
                    target_ok &= np.asarray(pc.not_equal(stripped, "").fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
                else:
                    target_ok = _finite_mask(batch.target)
                bad_rows = ~target_ok
                if not target_ok.all():
                    if policy is MissingPolicy.REFUSE:
                        first = int(np.argmin(target_ok))
                        raise _missing(reader.files.get(reader.target, label), reader.target, reader.locate(rows_in + first + 1))
                    keep &= target_ok
                feature_masks = []
                for name, values in zip(features, batch.features):
                    ok = _finite_mask(values)
                    feature_masks.append(ok)
                    if not ok.all():
                        moments[name].missing += int((~ok).sum())
                        if policy is MissingPolicy.REFUSE:
                            first = int(np.argmin(ok))
                            raise _missing(reader.files.get(name, label), name, reader.locate(rows_in + first + 1), values[first])
                        bad_rows |= ~ok
                        if policy is MissingPolicy.DROP_ROWS:
                            keep &= ok
                if policy is MissingPolicy.FILL_MEAN:
                    filled += int((bad_rows & keep).sum())
                rows_in += n
                kept = int(keep.sum())
                dropped += n - kept
                rows_out += kept
                if kept == 0:
                    continue
                cols = []
                for name, values, ok in zip(features, batch.features, feature_masks):
                    v = values if kept == n else values[keep]
                    m = ok if kept == n else ok[keep]
                    moments[name].add(v if m.all() else v[m])
                    if not m.all():
                        v = np.where(m, v, np.nan)
                    cols.append(pa.array(v, type=pa.float64()))
                target = batch.target
                if reader.text_target:
                    target = target if kept == n else target.filter(pa.array(keep))
                    target = pc.utf8_trim_whitespace(target)
                else:
                    target = target if kept == n else target[keep]
                    target_moments.add(target)
                    if all_integer and not np.array_equal(target, np.round(target)):
                        all_integer = False
                    target = pa.array(target, type=pa.float64())
                distinct.add(target)
                writer.write_batch(pa.RecordBatch.from_arrays([*cols, target], schema=schema))
        if rows_in == 0:
            raise FailedPrecondition(f"{label} has no rows")
        if rows_out < min_rows:
            raise FailedPrecondition(
                f"{label} has {rows_out} usable rows"
                + (f" ({dropped} dropped for missing values)" if dropped else "")
                + f"; the train/validation/test split needs at least {min_rows}"
            )
        for name in features:
            if moments[name].n == 0:
                raise FailedPrecondition(f"{label}: column {name!r} has no values")
        labels, count = distinct.result()
        if count < 2:
            only = labels[0] if labels else "?"
            raise FailedPrecondition(
                f"{label}: target {reader.target!r} has one distinct value ({only}); nothing to learn"
            )
        kind = _task_kind(options.task_kind, reader, labels, count, all_integer, rows_out, label)
        rewrite = kind is TaskKind.CLASSIFICATION or (policy is MissingPolicy.FILL_MEAN and filled)
        if rewrite:
            means = {name: moments[name].mean for name in features}
            target_moments = _second_pass(staging, out, features, reader, kind, labels, means)
            staging.unlink()
        else:
            os.replace(staging, out)
    finally:
        staging.unlink(missing_ok=True)
    stats = [moments[name].stats(name) for name in features]
    target_stats = TargetStats(
        target_moments.min, target_moments.max, target_moments.mean, target_moments.std, count
    )
    stats.append(replace(target_moments.stats(reader.target), missing=0))
    columns = [
        replace(c, dtype="int64") if c.role is Role.TARGET and kind is TaskKind.CLASSIFICATION
        else replace(c, dtype="float64") if c.role is Role.TARGET else c
        for c in reader.columns
    ]
    return Table(
        path=str(out),
        sha256=sha256_file(out),
        size_bytes=out.stat().st_size,
        columns=columns,
        target=reader.target,
        row_count=rows_out,
        rows_dropped=dropped if policy is not MissingPolicy.FILL_MEAN else filled + dropped,
        target_stats=target_stats,
        task_kind=kind,
        class_labels=labels if kind is TaskKind.CLASSIFICATION else [],
        stats=stats,
    )


def _missing(label: str, column: str, where: str, value=None) -> FailedPrecondition:
    what = "missing" if value is None or (isinstance(value, float) and math.isnan(value)) else repr(float(value))
    return FailedPrecondition(
        f"{label}: column {column!r} {where} is {what}; set options.missing_policy to drop or fill such rows"
    )


def _task_kind(requested, reader, labels, count, all_integer, rows, label) -> TaskKind:
    if requested is TaskKind.REGRESSION:
        if reader.text_target:
            raise FailedPrecondition(f"{label}: target {reader.target!r} is text; regression needs numbers")
        return TaskKind.REGRESSION
    if requested is TaskKind.CLASSIFICATION:
        if count > MAX_CLASSES:
            raise FailedPrecondition(
                f"{label}: target {reader.target!r} has {count} distinct values, more than {MAX_CLASSES} classes"
            )
        return TaskKind.CLASSIFICATION
    if reader.text_target:
        if count > MAX_CLASSES:
            raise FailedPrecondition(
                f"{label}: text target {reader.target!r} has more than {MAX_CLASSES} distinct values, "
                "too many classes"
            )
        return TaskKind.CLASSIFICATION
    if all_integer and count <= AUTO_MAX_CLASSES and count * AUTO_MIN_ROWS_PER_CLASS <= rows:
        return TaskKind.CLASSIFICATION
    return TaskKind.REGRESSION


class _Distinct:
    """Exact distinct target values. Numbers: sorted numpy arrays merged as they come
    (8 bytes a distinct value). Text: a set, given up past MAX_CLASSES (it must be classes)."""

    def __init__(self, text: bool):
        self.text = text
        self.values: set[str] = set()
        self.overflow = False
        self.merged = np.empty(0, dtype=np.float64)
        self.pending: list[np.ndarray] = []
        self.pending_size = 0

    def add(self, target: pa.Array) -> None:
        if self.text:
            if not self.overflow:
                self.values.update(pc.unique(target).to_pylist())
                self.overflow = len(self.values) > MAX_CLASSES
            return
        unique = np.unique(target.to_numpy(zero_copy_only=False))
        self.pending.append(unique)
        self.pending_size += unique.size
        if self.pending_size > max(self.merged.size, 65_536):
            self._merge()

    def _merge(self) -> None:
        if self.pending:
            self.merged = np.unique(np.concatenate([self.merged, *self.pending]))
            self.pending, self.pending_size = [], 0

    def result(self) -> tuple[list[str], int]:
        """Labels (sorted; empty when there are too many to be classes) and the count."""
        if self.text:
            if self.overflow:
                return [], len(self.values)
            values = sorted(self.values)
            return values, len(values)
        self._merge()
        count = int(self.merged.size)
        if count > MAX_CLASSES:
            return [label_of(self.merged[0])], count
        return [label_of(v) for v in self.merged.tolist()], count


def label_of(value) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _second_pass(staging: Path, out: Path, features, reader: Reader, kind, labels, means) -> Moments:
    classify = kind is TaskKind.CLASSIFICATION
    schema = pa.schema(
        [pa.field(f, pa.float64()) for f in features]
        + [pa.field(reader.target, pa.int64() if classify else pa.float64())]
    )
    if classify:
        keys = pa.array(labels) if reader.text_target else pa.array(sorted(float(v) for v in labels), pa.float64())
    moments = Moments()
    pf = pq.ParquetFile(staging)
    with _RowGroupWriter(out, schema) as writer:
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            cols = []
            for name in features:
                values = batch.column(name).to_numpy(zero_copy_only=False)
                if np.isnan(values).any():
                    values = np.where(np.isnan(values), means[name], values)
                cols.append(pa.array(values, type=pa.float64()))
            target = batch.column(reader.target)
            if classify:
                target = pc.index_in(target, value_set=keys).cast(pa.int64())
                moments.add(target.to_numpy(zero_copy_only=False).astype(np.float64))
            else:
                moments.add(target.to_numpy(zero_copy_only=False))
            writer.write_batch(pa.RecordBatch.from_arrays([*cols, target], schema=schema))
    return moments


def ingest(sources: list[SourceFile], options: IngestOptions, out: Path, *, min_rows: int) -> Table:
    """The stored table made from `sources`: [X, y] for the folder layout, [table] otherwise."""
    plan = Plan()
    for _ in range(3):
        try:
            if len(sources) == 2:
                reader = read_xy(sources[0], sources[1], options, plan)
                label = f"{sources[0].label} + {sources[1].label}"
            elif sources[0].is_parquet:
                reader = read_parquet_table(sources[0], options, plan)
                label = sources[0].label
            else:
                reader = read_csv_table(sources[0], options, plan)
                label = sources[0].label
            return write_table(reader, options, out, min_rows=min_rows, label=label)
        except Replan as again:
            plan = replace(plan, **again.changes)
    raise FailedPrecondition(f"{sources[0].label} could not be read consistently")
