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

import csv
import hashlib
import io
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from services.common.errors import FailedPrecondition, InvalidArgument
from services.data.model import (
    Column,
    IngestOptions,
    MissingPolicy,
    Role,
    Stats,
    Table,
    TargetStats,
    TaskKind,
)

# pyarrow's streaming CSV reader reads ahead several blocks on its threads: small blocks
# keep that bounded (1 MiB: ~120 MiB peak RSS for any file size, and no slower than 8 MiB).
CSV_BLOCK_BYTES = 1 << 20
CSV_THREADS = True
PARQUET_BATCH_ROWS = 256_000
# Rows per Parquet row group: CSV blocks are gathered up to this before they are written.
ROW_GROUP_ROWS = 64_000
SNIFF_BYTES = 256 << 10
AUTO_MAX_CLASSES = 20
AUTO_MIN_ROWS_PER_CLASS = 20
MAX_CLASSES = 1000
INDEX_NAMES = {"", "index", "unnamed: 0", "id"}
HASH_CHUNK = 4 << 20


@dataclass(frozen=True)
class SourceFile:
    """A staged local copy of one source file and the name messages use for it."""

    path: Path
    label: str

    @property
    def is_parquet(self) -> bool:
        return self.label.lower().endswith(".parquet") or self.path.suffix.lower() == ".parquet"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- sniffing


def is_number(text: str) -> bool:
    text = text.strip()
    if text == "":
        return True  # a missing value, not evidence of text
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class CsvShape:
    delimiter: str
    header: bool
    names: list[str]  # as in the header, or positional when there is none
    sample: list[list[str]]  # data rows only


def sniff_csv(src: SourceFile) -> CsvShape:
    with open(src.path, "rb") as f:
        raw = f.read(SNIFF_BYTES)
        more = bool(f.read(1))
    if not raw.strip():
        raise FailedPrecondition(f"{src.label} is empty")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if not more or exc.start < len(raw) - 4:
            raise FailedPrecondition(f"{src.label} is not UTF-8 text (byte {exc.start})") from exc
        text = raw[: exc.start].decode("utf-8-sig")
    if more and "\n" in text:
        text = text[: text.rindex("\n")]  # drop a partial last line
    first = text.split("\n", 1)[0]
    delimiter = max([",", ";", "\t", "|"], key=first.count) if any(d in first for d in ",;\t|") else ","
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if r]
    if not rows:
        raise FailedPrecondition(f"{src.label} is empty")
    header = detect_header(rows)
    width = len(rows[0])
    names = [c.strip() for c in rows[0]] if header else [f"x{i}" for i in range(width)]
    sample = rows[1:] if header else rows
    if header and not sample:
        raise FailedPrecondition(f"{src.label} has a header but no data rows")
    return CsvShape(delimiter, header, names, sample)


def detect_header(rows: list[list[str]]) -> bool:
    """Whether the first row names the columns.

    Yes when some column is text in the first row and numeric below it; when every
    first-row cell is text that does not recur below (a header over text columns); or
    for pandas' default header over unnamed columns (`,0,1,2...`)."""
    first, rest = rows[0], rows[1:51]
    cells = [c.strip() for c in first]
    if _pandas_default_header(cells) and rest and not _pandas_default_header([c.strip() for c in rest[0]]):
        return True
    if all(is_number(c) and c != "" for c in cells):
        return False
    if not rest:
        return not any(is_number(c) and c != "" for c in cells)
    for j, cell in enumerate(cells):
        below = [r[j] for r in rest if j < len(r)]
        if not is_number(cell) and below and all(is_number(v) for v in below):
            return True
    if any(is_number(c) and c != "" for c in cells):
        return False
    # All text: a header if its values are not values of the column below.
    return all(cell not in {r[j].strip() for r in rest if j < len(r)} for j, cell in enumerate(cells))


def _pandas_default_header(cells: list[str]) -> bool:
    body = cells[1:] if cells and cells[0] == "" else cells
    return len(body) > 0 and cells[0] == "" and body == [str(i) for i in range(len(body))]


def looks_like_index(values: list[str]) -> bool:
    """Consecutive integers from 0 (or 1), the way DataFrame.to_csv writes an index."""
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return False
    if len(numbers) < 2 or numbers[0] not in (0.0, 1.0):
        return False
    return all(n == numbers[0] + i for i, n in enumerate(numbers))


# ---------------------------------------------------------------- statistics


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


# ---------------------------------------------------------------- plans


class Replan(Exception):
    """The first block's guess (index column, numeric target) did not hold: read again."""

    def __init__(self, **changes):
        super().__init__(str(changes))
        self.changes = changes


@dataclass(frozen=True)
class Plan:
    allow_index: bool = True
    text_target: bool | None = None  # None: decide from the sample


@dataclass
class Batch:
    """One block of rows, aligned: features as float64 arrays, the target raw."""

    features: list[np.ndarray]
    target: np.ndarray | pa.Array
    index: np.ndarray | None
    rows: int


@dataclass
class Reader:
    """A planned read of the sources: names, roles and a batch iterator."""

    columns: list[Column]
    target: str
    text_target: bool
    batches: Iterator[Batch]
    locate: Callable[[int], str]  # 1-based data row -> "row 17 (line 18)"
    files: dict[str, str] = field(default_factory=dict)  # column -> the file it is in

    @property
    def features(self) -> list[str]:
        return [c.name for c in self.columns if c.role is Role.FEATURE]


def _unique_names(names: list[str], label: str) -> None:
    seen = set()
    for n in names:
        if n in seen:
            raise FailedPrecondition(f"{label}: column name {n!r} appears twice")
        seen.add(n)


def _csv_reader(src: SourceFile, shape: CsvShape, names: list[str], types: dict[str, pa.DataType]):
    read = pacsv.ReadOptions(
        column_names=names, skip_rows=1 if shape.header else 0, block_size=CSV_BLOCK_BYTES,
        use_threads=CSV_THREADS,
    )
    parse = pacsv.ParseOptions(delimiter=shape.delimiter)
    convert = pacsv.ConvertOptions(
        column_types=types, include_columns=list(types), strings_can_be_null=True
    )
    return pacsv.open_csv(src.path, read_options=read, parse_options=parse, convert_options=convert)


def _csv_batches(src: SourceFile, shape: CsvShape, names: list[str], types, replan) -> Iterator[pa.RecordBatch]:
    """Record batches; a conversion error becomes a Replan (when `replan` says so) or a
    FailedPrecondition naming the column, row and value."""
    reader = None
    while True:
        try:
            if reader is None:
                reader = _csv_reader(src, shape, names, types)  # reads the first block
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            column, error = _arrow_error(src, shape, names, types, exc)
            again = replan(column)
            raise (again or error) from exc
        yield batch


def _arrow_error(src: SourceFile, shape: CsvShape, names: list[str], types, exc: pa.ArrowInvalid):
    """A pyarrow conversion error, with the row and value it does not name."""
    message = str(exc)
    marker = "In CSV column #"
    if marker in message and "conversion error" in message:
        position = int(message.split(marker, 1)[1].split(":", 1)[0])
        column = list(types)[position] if position < len(types) else names[position]
        row, value = _first_non_number(src, shape, names, column)
        line = row + (1 if shape.header else 0)
        return column, FailedPrecondition(
            f"{src.label}: column {column!r} is not numeric: row {row} (line {line}) holds {value!r}"
        )
    return None, FailedPrecondition(f"{src.label} could not be read as CSV: {message}")


def _first_non_number(src: SourceFile, shape: CsvShape, names: list[str], column: str):
    offset = 0
    for batch in _csv_reader(src, shape, names, {column: pa.string()}):
        values = batch.column(0)
        try:
            pc.cast(values, pa.float64())
        except pa.ArrowInvalid:
            for i, v in enumerate(values.to_pylist()):
                if v is not None and not is_number(v):
                    return offset + i + 1, v
        offset += batch.num_rows
    return offset, "?"


def _as_float(array: pa.Array) -> np.ndarray:
    if pa.types.is_floating(array.type) and array.type != pa.float64():
        array = array.cast(pa.float64())
    elif not pa.types.is_floating(array.type):
        array = array.cast(pa.float64())
    return array.to_numpy(zero_copy_only=False)


def _index_checker(label: str):
    """Checks, block by block, that a planned index column really counts rows."""
    state = {"offset": 0, "start": None}

    def check(values: np.ndarray) -> None:
        if state["start"] is None:
            state["start"] = values[0] if values.size else 0.0
        expected = np.arange(values.size, dtype=np.float64) + state["offset"] + state["start"]
        if not np.array_equal(values, expected):
            raise Replan(allow_index=False)
        state["offset"] += values.size

    return check


def _csv_roles(shape: CsvShape, plan: Plan, *, xy: bool) -> tuple[list[str], str | None]:
    """Column names (headerless features renamed x0..) and the index column, if any."""
    names = list(shape.names)
    index = None
    if plan.allow_index and len(names) > 1:
        for j, name in enumerate(names):
            candidate = (j == 0 and (xy or not shape.header)) or name.lower() in INDEX_NAMES
            if candidate and looks_like_index([r[j] for r in shape.sample if j < len(r)]):
                index = j
                break
    if not shape.header and xy:
        features = [j for j in range(len(names)) if j != index]
        names = [""] * len(names)
        for k, j in enumerate(features):
            names[j] = f"x{k}"
    if index is not None and (names[index] == "" or not shape.header):
        names[index] = "index" if "index" not in names else "_index"
    if shape.header:
        for j, n in enumerate(names):
            if n == "":
                names[j] = f"column_{j}"
    return names, (names[index] if index is not None else None)


def _text_sample(shape: CsvShape, j: int) -> bool:
    return any(not is_number(r[j]) for r in shape.sample if j < len(r))


def read_csv_table(src: SourceFile, options: IngestOptions, plan: Plan) -> Reader:
    shape = sniff_csv(src)
    names, index = _csv_roles(shape, plan, xy=False)
    _unique_names(names, src.label)
    target = options.target_column
    if not target:
        raise InvalidArgument("a single table needs options.target_column", field="options.target_column")
    if target not in names:
        raise InvalidArgument(f"target column {target!r} is not in {src.label}; columns: {', '.join(names)}")
    if target == index:
        index = None
    _check_excluded(options, names, target, src.label)
    text_target = plan.text_target
    if text_target is None:
        text_target = _text_sample(shape, names.index(target))
    columns, types = [], {}
    for name in names:
        if name == target:
            columns.append(Column(name, "string" if text_target else "float64", Role.TARGET))
            types[name] = pa.string() if text_target else pa.float64()
        elif name in options.exclude_columns:
            columns.append(Column(name, "string", Role.EXCLUDED))
        elif name == index:
            columns.append(Column(name, "int64", Role.INDEX))
            types[name] = pa.float64()
        else:
            columns.append(Column(name, "float64", Role.FEATURE))
            types[name] = pa.float64()
    features = [c.name for c in columns if c.role is Role.FEATURE]
    check_index = _index_checker(src.label) if index else None

    def replan(column: str | None) -> Replan | None:
        if column == target and not text_target:
            return Replan(text_target=True)
        if column is not None and column == index:
            return Replan(allow_index=False)
        return None

    def batches() -> Iterator[Batch]:
        for batch in _csv_batches(src, shape, names, types, replan):
            if check_index:
                check_index(_as_float(batch.column(index)))
            yield Batch(
                [_as_float(batch.column(f)) for f in features],
                batch.column(target) if text_target else _as_float(batch.column(target)),
                None,
                batch.num_rows,
            )

    return Reader(columns, target, text_target, batches(), _csv_locator(src, shape.header))


def _csv_locator(src: SourceFile, header: bool):
    def locate(row: int) -> str:
        return f"row {row} (line {row + (1 if header else 0)})"

    return locate


def _check_excluded(options: IngestOptions, names: list[str], target: str, label: str) -> None:
    for name in options.exclude_columns:
        if name not in names:
            raise InvalidArgument(f"excluded column {name!r} is not in {label}; columns: {', '.join(names)}")
        if name == target:
            raise InvalidArgument(f"the target column {name!r} cannot be excluded")


def read_parquet_table(src: SourceFile, options: IngestOptions, plan: Plan) -> Reader:
    try:
        pf = pq.ParquetFile(src.path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FailedPrecondition(f"{src.label} is not a Parquet file: {exc}") from exc
    schema = pf.schema_arrow
    names = list(schema.names)
    _unique_names(names, src.label)
    if pf.metadata.num_rows == 0:
        raise FailedPrecondition(f"{src.label} has no rows")
    pandas_index = set()
    if schema.pandas_metadata:
        pandas_index = {c for c in schema.pandas_metadata.get("index_columns", []) if isinstance(c, str)}
    target = options.target_column
    if not target:
        raise InvalidArgument("a single table needs options.target_column", field="options.target_column")
    if target not in names:
        raise InvalidArgument(f"target column {target!r} is not in {src.label}; columns: {', '.join(names)}")
    _check_excluded(options, names, target, src.label)
    ttype = schema.field(target).type
    text_target = not _numeric_type(ttype)
    if text_target and not (pa.types.is_string(ttype) or pa.types.is_large_string(ttype) or pa.types.is_dictionary(ttype)):
        raise FailedPrecondition(f"{src.label}: target column {target!r} has type {ttype}, neither number nor text")
    columns = []
    for name in names:
        ftype = schema.field(name).type
        if name == target:
            columns.append(Column(name, "string" if text_target else "float64", Role.TARGET))
        elif name in options.exclude_columns:
            columns.append(Column(name, str(ftype), Role.EXCLUDED))
        elif name in pandas_index or name.startswith("__index_level_"):
            columns.append(Column(name, str(ftype), Role.INDEX))
        elif not _numeric_type(ftype):
            row, value = _first_present(pf, name)
            raise FailedPrecondition(
                f"{src.label}: column {name!r} is not numeric (type {ftype}): row {row} holds {value!r}"
            )
        else:
            columns.append(Column(name, "float64", Role.FEATURE))
    features = [c.name for c in columns if c.role is Role.FEATURE]

    def batches() -> Iterator[Batch]:
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[*features, target]):
            t = batch.column(target)
            if text_target:
                t = t.cast(pa.string())
            yield Batch([_as_float(batch.column(f)) for f in features], t if text_target else _as_float(t), None, batch.num_rows)

    return Reader(columns, target, text_target, batches(), lambda row: f"row {row}")


def _numeric_type(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t)


def _first_present(pf: pq.ParquetFile, name: str):
    offset = 0
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[name]):
        for i, v in enumerate(batch.column(0).to_pylist()):
            if v is not None:
                return offset + i + 1, v
        offset += batch.num_rows
    return 1, None


def read_xy(x: SourceFile, y: SourceFile, options: IngestOptions, plan: Plan) -> Reader:
    xshape, yshape = sniff_csv(x), sniff_csv(y)
    xnames, xindex = _csv_roles(xshape, plan, xy=True)
    _unique_names(xnames, x.label)
    ynames, yindex = _csv_roles(yshape, Plan(allow_index=len(yshape.names) == 2), xy=True)
    ycols = [n for n in ynames if n != yindex]
    if len(ycols) != 1:
        raise FailedPrecondition(f"{y.label} has {len(ycols)} columns besides an index; expected one target column")
    ytarget_raw = ycols[0]
    target = "target" if not yshape.header else ytarget_raw
    text_target = plan.text_target
    if text_target is None:
        text_target = _text_sample(yshape, ynames.index(ytarget_raw))
    _check_excluded(options, xnames, "", x.label)
    if target in xnames and target not in options.exclude_columns:
        raise FailedPrecondition(f"{x.label} has a column named {target!r}, the name of the target in {y.label}")
    columns, xtypes = [], {}
    for name in xnames:
        if name in options.exclude_columns:
            columns.append(Column(name, "string", Role.EXCLUDED))
        elif name == xindex:
            columns.append(Column(name, "int64", Role.INDEX))
            xtypes[name] = pa.float64()
        else:
            columns.append(Column(name, "float64", Role.FEATURE))
            xtypes[name] = pa.float64()
    columns.append(Column(target, "string" if text_target else "float64", Role.TARGET))
    features = [c.name for c in columns if c.role is Role.FEATURE]
    ytypes = {ytarget_raw: pa.string() if text_target else pa.float64()}
    check_index = _index_checker(x.label) if xindex else None

    def read(src, shape, names, types):
        def replan(column: str | None) -> Replan | None:
            if src is y and column is not None and not text_target:
                return Replan(text_target=True)
            if src is x and column is not None and column == xindex:
                return Replan(allow_index=False)
            return None

        return _csv_batches(src, shape, names, types, replan)

    def batches() -> Iterator[Batch]:
        ybatches = read(y, yshape, ynames, ytypes)
        pending: list[pa.Array] = []
        buffered = 0
        xrows = 0
        xbatches = read(x, xshape, xnames, xtypes)
        for xb in xbatches:
            n = xb.num_rows
            while buffered < n:
                yb = next(ybatches, None)
                if yb is None:
                    total_x = xrows + n + sum(b.num_rows for b in xbatches)
                    raise _mismatch(x, y, total_x, xrows + buffered)
                pending.append(yb.column(0))
                buffered += yb.num_rows
            joined = pa.concat_arrays([c for chunk in pending for c in _chunks(chunk)])
            ycol, rest = joined.slice(0, n), joined.slice(n)
            pending, buffered = ([rest] if len(rest) else []), len(rest)
            xrows += n
            if check_index:
                check_index(_as_float(xb.column(xindex)))
            yield Batch(
                [_as_float(xb.column(f)) for f in features],
                ycol if text_target else _as_float(ycol),
                None,
                n,
            )
        extra = buffered + sum(b.num_rows for b in ybatches)
        if extra:
            raise _mismatch(x, y, xrows, xrows + extra)

    files = {name: x.label for name in xnames} | {target: y.label}
    return Reader(columns, target, text_target, batches(), _csv_locator(x, xshape.header), files)


def _chunks(array):
    return array.chunks if isinstance(array, pa.ChunkedArray) else [array]


def _mismatch(x: SourceFile, y: SourceFile, xrows: int, yrows: int) -> FailedPrecondition:
    return FailedPrecondition(f"row counts differ: {x.label} has {xrows} rows, {y.label} has {yrows}")


# ---------------------------------------------------------------- writing


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
