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
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kubetune_common.errors import FailedPrecondition
from services.data.readers import Plan, Reader, Replan, first_of_each, read_csv_table, read_parquet_table, read_xy
from services.data.records import IngestOptions, Kind, MissingPolicy, Role, Stats, Table, TargetStats, TaskKind
from services.data.sniff import SourceFile, sha256_file

__all__ = ["SourceFile", "sha256_file", "ingest", "Moments"]

# Rows per Parquet row group: CSV blocks are gathered up to this before they are written,
# unless the group would pass ROW_GROUP_BYTES first (a table of many columns).
ROW_GROUP_ROWS = 64_000
ROW_GROUP_BYTES = 16 << 20
AUTO_MAX_CLASSES = 20
AUTO_MIN_ROWS_PER_CLASS = 20
MAX_CLASSES = 1000
# Each feature that turns out to hold text past the sniffed sample costs one re-read.
MAX_REPLANS = 64


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
    """A Parquet writer that gathers small batches into row groups of ROW_GROUP_ROWS rows,
    or fewer when they would pass ROW_GROUP_BYTES: the writer holds a whole row group
    encoded until it closes it, and the second pass reads one back at a time, so a row
    group's size is what bounds memory however many columns a table has."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.writer = pq.ParquetWriter(path, schema)
        self.pending: list[pa.RecordBatch] = []
        self.rows = 0
        self.bytes = 0

    def write_batch(self, batch: pa.RecordBatch) -> None:
        self.pending.append(batch)
        self.rows += batch.num_rows
        self.bytes += batch.nbytes
        if self.rows >= ROW_GROUP_ROWS or self.bytes >= ROW_GROUP_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.Table.from_batches(self.pending), row_group_size=max(self.rows, 1))
            self.pending, self.rows, self.bytes = [], 0, 0

    def __enter__(self):
        return self

    def __exit__(self, kind, *rest):
        if kind is None:
            self.flush()
        self.writer.close()


# A text column is a category unless it is an id or free text (nearly every value
# distinct), a date, or numbers with a few stray words (then the user must say which).
MAX_CATEGORIES = 10_000
ID_DISTINCT_SHARE = 0.9
ID_MIN_ROWS = 20
NUMBER_RE = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
ISO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")
BOOLEAN_WORDS = {"true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0, "t": 1.0, "f": 0.0, "y": 1.0, "n": 0.0}


class _TextColumn:
    """What pass one learns of a text feature: its distinct values (up to
    MAX_CATEGORIES), missing and present counts, and its first value that is not a number."""

    def __init__(self):
        self.values: set[str] = set()
        self.overflow = False
        self.present = 0
        self.missing = 0  # source cells, in rows that have a target
        self.numbers = 0
        self.first_text: tuple[int, str] | None = None

    def add(self, values: pa.Array, kept: pa.Array, row_offset: int) -> None:
        """`values`: the block as read (for row numbers); `kept`: its rows that stay."""
        present = kept.drop_null()
        self.present += len(present)
        numeric = pc.match_substring_regex(kept, NUMBER_RE).fill_null(True)
        self.numbers += len(present) - int(pc.sum(pc.invert(numeric)).as_py() or 0)
        if self.first_text is None and self.numbers < self.present:
            numeric = pc.match_substring_regex(values, NUMBER_RE).fill_null(True)
            i = int(np.argmin(np.asarray(numeric.to_numpy(zero_copy_only=False), dtype=bool)))
            self.first_text = (row_offset + i + 1, values[i].as_py())
        if not self.overflow:
            self.values.update(pc.unique(present).to_pylist())
            self.overflow = len(self.values) > MAX_CATEGORIES

    def decide(self, declared: bool) -> tuple[Kind | None, str]:
        """(kind, note); kind None: excluded for the reason in the note."""
        distinct = len(self.values)
        if declared:
            return Kind.CATEGORICAL, "categorical by request"
        if self.present == 0:
            return None, "excluded: every value is missing"
        if not self.overflow and {v.lower() for v in self.values} <= BOOLEAN_WORDS.keys() and distinct <= 2:
            return Kind.BOOLEAN, "boolean: " + "/".join(sorted(self.values))
        if all(ISO_DATE_RE.match(v) for v in list(self.values)[:1000]):
            return None, ("excluded: ISO dates (kubetune does not split dates into parts yet; add year, month "
                          "or day-of-week columns yourself to use them)")
        if self.overflow:
            return None, f"excluded: more than {MAX_CATEGORIES} distinct values (an id or free text?)"
        if self.present >= ID_MIN_ROWS and distinct >= ID_DISTINCT_SHARE * self.present:
            return None, f"excluded: {distinct} distinct values in {self.present} rows (an id or free text?)"
        return Kind.CATEGORICAL, ""


def write_table(reader: Reader, options: IngestOptions, out: Path, *, min_rows: int, label: str) -> Table:
    """Pass one: validate, learn each column, write features + raw target; pass two only
    when values or columns must change after everything was seen."""
    features = reader.features
    if not features:
        raise FailedPrecondition(f"{label}: no feature columns left")
    policy = options.missing_policy
    text = reader.text_features
    moments = {name: Moments() for name in features if name not in text}
    texts = {name: _TextColumn() for name in features if name in text}
    binary = {name: True for name in moments}  # numbers that are all 0 or 1
    target_moments = Moments()
    schema = pa.schema(
        [pa.field(f, pa.string() if f in text else pa.float64()) for f in features]
        + [pa.field(reader.target, pa.string() if reader.text_target else pa.float64())]
    )
    staging = out.with_name(out.name + ".pass1")
    rows_in = rows_out = dropped = missing_target = 0
    all_integer = True

    def where(name: str, i: int) -> str:
        return reader.locate(rows_in + i + 1)

    try:
        with _RowGroupWriter(staging, schema) as writer:
            for batch in reader.batches:
                n = batch.rows
                if reader.text_target:
                    stripped = pc.utf8_trim_whitespace(batch.target)
                    target_ok = np.asarray(pc.not_equal(stripped, "").fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
                else:
                    target_ok = np.isfinite(batch.target)
                    if np.isinf(batch.target).any():
                        i = int(np.argmax(np.isinf(batch.target)))
                        raise _infinite(reader.files.get(reader.target, label), reader.target, where(reader.target, i))
                first_missing: list[tuple[int, str]] = []  # (row in block, column), under REFUSE
                if not target_ok.all():
                    first_missing.append((int(np.argmin(target_ok)), reader.target))
                keep = target_ok.copy()
                missing_target += int(n - target_ok.sum())
                arrays = []
                for name, values in zip(features, batch.features):
                    if name in text:
                        values = pc.utf8_trim_whitespace(values)
                        values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
                        ok = np.asarray(pc.is_valid(values).to_numpy(zero_copy_only=False), dtype=bool)
                    else:
                        ok = ~np.isnan(values)
                        infinite = np.isinf(values)
                        if infinite.any():
                            raise _infinite(reader.files.get(name, label), name, where(name, int(np.argmax(infinite))))
                    if not ok.all():
                        first_missing.append((int(np.argmin(ok)), name))
                        if policy is MissingPolicy.DROP_ROWS:
                            keep &= ok
                    arrays.append((values, ok))
                if first_missing and policy is MissingPolicy.REFUSE:
                    row, name = min(first_missing, key=lambda m: m[0])
                    raise _missing(reader.files.get(name, label), name, where(name, row))
                kept = int(keep.sum())
                dropped += n - kept
                for name, (values, ok) in zip(features, arrays):
                    counted = ok & target_ok  # rows without a target are not the table's
                    if name in text:
                        texts[name].missing += int((~ok & target_ok).sum())
                        texts[name].add(values, values if kept == n else values.filter(pa.array(keep)), rows_in)
                    else:
                        m = moments[name]
                        m.missing += int((~ok & target_ok).sum())
                        present = values[counted & keep]
                        m.add(present)
                        if binary[name] and present.size:
                            binary[name] = bool(np.isin(present, (0.0, 1.0)).all())
                rows_in += n
                rows_out += kept
                if kept == 0:
                    continue
                cols = []
                for name, (values, ok) in zip(features, arrays):
                    if name in text:
                        cols.append(values if kept == n else values.filter(pa.array(keep)))
                    else:
                        cols.append(pa.array(values if kept == n else values[keep], type=pa.float64()))
                target = batch.target
                if reader.text_target:
                    target = pc.utf8_trim_whitespace(target if kept == n else target.filter(pa.array(keep)))
                else:
                    target = target if kept == n else target[keep]
                    target_moments.add(target)
                    if all_integer and not np.array_equal(target, np.round(target)):
                        all_integer = False
                    target = pa.array(target, type=pa.float64())
                writer.write_batch(pa.RecordBatch.from_arrays([*cols, target], schema=schema))
        if rows_in == 0:
            raise FailedPrecondition(f"{label} has no rows")
        if rows_out < min_rows:
            raise FailedPrecondition(
                f"{label} has {rows_out} usable rows"
                + (f" ({dropped} dropped for missing values)" if dropped else "")
                + f"; the train/validation/test split needs at least {min_rows}"
            )
        columns, final = _decide_columns(reader, options, moments, texts, binary, label)
        labels, count = _distinct_targets(staging, reader, rows_out)
        if count < 2:
            only = labels[0] if labels else "?"
            raise FailedPrecondition(
                f"{label}: target {reader.target!r} has one distinct value ({only}); nothing to learn"
            )
        kind = _task_kind(options.task_kind, reader, labels, count, all_integer, rows_out, label)
        booleans = [c.name for c in columns if c.kind is Kind.BOOLEAN and c.name in text]
        if kind is TaskKind.CLASSIFICATION or booleans or final != features:
            target_moments, bool_moments = _second_pass(staging, out, final, text, booleans, reader, kind, labels)
            moments.update(bool_moments)
            staging.unlink()
        else:
            os.replace(staging, out)
    finally:
        staging.unlink(missing_ok=True)
    stats = [moments[name].stats(name) if name in moments
             else Stats(name, math.nan, math.nan, math.nan, math.nan, texts[name].missing) for name in final]
    target_stats = TargetStats(
        target_moments.min, target_moments.max, target_moments.mean, target_moments.std, count
    )
    stats.append(replace(target_moments.stats(reader.target), missing=0))
    columns = [
        replace(c, dtype="int64") if c.role is Role.TARGET and kind is TaskKind.CLASSIFICATION
        else replace(c, dtype="float64") if c.role is Role.TARGET else c
        for c in columns
    ]
    return Table(
        path=str(out),
        sha256=sha256_file(out),
        size_bytes=out.stat().st_size,
        columns=columns,
        target=reader.target,
        row_count=rows_out,
        rows_dropped=dropped,
        target_stats=target_stats,
        task_kind=kind,
        class_labels=labels if kind is TaskKind.CLASSIFICATION else [],
        stats=stats,
        rows_missing_target=missing_target,
    )


def _decide_columns(reader: Reader, options: IngestOptions, moments, texts, binary, label: str):
    """Each feature's kind now that every value was seen, and the features kept."""
    columns, final = [], []
    for c in reader.columns:
        if c.role is not Role.FEATURE:
            columns.append(c)
            continue
        if c.name in texts:
            t = texts[c.name]
            declared = c.name in options.categorical_columns
            if not declared and t.first_text is not None and t.numbers > 0.5 * t.present:
                row, value = t.first_text
                raise FailedPrecondition(
                    f"{reader.files.get(c.name, label)}: column {c.name!r} holds numbers, but "
                    f"{reader.locate(row)} holds {value!r}; fix the value, or declare the column categorical "
                    "(or exclude it)"
                )
            kind, note = t.decide(declared)
            if kind is None:
                columns.append(replace(c, role=Role.EXCLUDED, kind=Kind.NONE, note=note, missing=t.missing,
                                       distinct=len(t.values)))
                continue
            dtype = "float64" if kind is Kind.BOOLEAN else "string"
            columns.append(replace(c, dtype=dtype, kind=kind, note=note, missing=t.missing, distinct=len(t.values)))
        else:
            m = moments[c.name]
            if m.n == 0:
                columns.append(replace(c, role=Role.EXCLUDED, kind=Kind.NONE, note="excluded: every value is missing",
                                       missing=m.missing))
                continue
            two = binary[c.name] and m.min == 0.0 and m.max == 1.0
            kind = Kind.BOOLEAN if two and c.name not in options.numeric_columns else Kind.NUMERIC
            columns.append(replace(c, kind=kind, missing=m.missing, distinct=2 if kind is Kind.BOOLEAN else 0))
        final.append(c.name)
    if not final:
        raise FailedPrecondition(f"{label}: no feature columns left")
    return columns, final


def _missing(label: str, column: str, where: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"{label}: column {column!r} {where} is missing; set options.missing_policy to impute or drop such rows"
    )


def _infinite(label: str, column: str, where: str) -> FailedPrecondition:
    return FailedPrecondition(f"{label}: column {column!r} {where} is infinite; kubetune refuses infinite values")


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


def _distinct_targets(staging: Path, reader: Reader, rows: int) -> tuple[list[str], int]:
    """The target's distinct values (labels sorted; only the least when there are too many
    to be classes) and their count, read back from the staged table once the CSV reader
    and the Parquet writer are gone, so their buffers and these values are never held
    together. Text: a set, given up past MAX_CLASSES (it must be classes). Numbers: all
    of them sorted in place, 9 bytes a row at most however many are distinct."""
    if reader.text_target:
        values: set[str] = set()
        for batch in _row_groups(staging, [reader.target]):
            values.update(pc.unique(batch.column(0)).to_pylist())
            if len(values) > MAX_CLASSES:
                return [], len(values)
        return sorted(values), len(values)
    numbers = np.empty(rows, dtype=np.float64)
    at = 0
    for batch in _row_groups(staging, [reader.target]):
        column = batch.column(0).to_numpy(zero_copy_only=False)
        numbers[at:at + column.size] = column
        at += column.size
    distinct = numbers[first_of_each(numbers)]
    if distinct.size > MAX_CLASSES:
        return [label_of(distinct[0])], int(distinct.size)
    return [label_of(v) for v in distinct.tolist()], int(distinct.size)


def label_of(value) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _row_groups(path: Path, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """A Parquet file we wrote, one row group (bounded by _RowGroupWriter) as one batch at a
    time: the second pass then holds one group, and writes the same groups back."""
    pf = pq.ParquetFile(path)
    for group in range(pf.num_row_groups):
        yield from pf.read_row_group(group, columns=columns).combine_chunks().to_batches()


def _second_pass(staging: Path, out: Path, features, text, booleans, reader: Reader, kind, labels):
    """Rewrites the staged table: the kept features only, boolean words as 0/1, class
    labels as their index. Returns the target's moments and the boolean columns'."""
    classify = kind is TaskKind.CLASSIFICATION
    schema = pa.schema(
        [pa.field(f, pa.string() if f in text and f not in booleans else pa.float64()) for f in features]
        + [pa.field(reader.target, pa.int64() if classify else pa.float64())]
    )
    if classify:
        keys = pa.array(labels) if reader.text_target else pa.array(sorted(float(v) for v in labels), pa.float64())
    moments = Moments()
    bool_moments = {name: Moments() for name in booleans}
    words = pa.array(list(BOOLEAN_WORDS))
    numbers = pa.array(list(BOOLEAN_WORDS.values()), pa.float64())
    with _RowGroupWriter(out, schema) as writer:
        for batch in _row_groups(staging, [*features, reader.target]):
            cols = []
            for name in features:
                values = batch.column(name)
                if name in bool_moments:
                    # Words to 0/1; a missing word becomes NaN (not null), as numbers are stored.
                    values = pc.take(numbers, pc.index_in(pc.utf8_lower(values), value_set=words)).fill_null(math.nan)
                    present = values.to_numpy(zero_copy_only=False)
                    bool_moments[name].add(present[~np.isnan(present)])
                    bool_moments[name].missing += int(np.isnan(present).sum())
                cols.append(values)
            target = batch.column(reader.target)
            if classify:
                target = pc.index_in(target, value_set=keys).cast(pa.int64())
                moments.add(target.to_numpy(zero_copy_only=False).astype(np.float64))
            else:
                moments.add(target.to_numpy(zero_copy_only=False))
            writer.write_batch(pa.RecordBatch.from_arrays([*cols, target], schema=schema))
    return moments, bool_moments


def ingest(sources: list[SourceFile], options: IngestOptions, out: Path, *, min_rows: int) -> Table:
    """The stored table made from `sources`: [X, y] for the folder layout, [table] otherwise."""
    plan = Plan()
    for _ in range(MAX_REPLANS):
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
