"""Planned reads of a source, batch by batch: CSV (pyarrow's streaming reader), Parquet
(row batches), and the X/y folder (two CSVs read in step). Each yields aligned feature
arrays and the raw target; a guess from the sniffed sample that does not hold (an index
column that stops counting, a numeric-looking target with text further down) raises
Replan, and the read starts again without the guess."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from services.common.errors import FailedPrecondition, InvalidArgument
from services.data.model import Column, IngestOptions, Role
from services.data.sniff import INDEX_NAMES, CsvShape, SourceFile, is_number, looks_like_index, sniff_csv

# pyarrow's streaming CSV reader reads ahead several blocks on its threads: small blocks
# keep that bounded (1 MiB: ~120 MiB peak RSS for any file size, and no slower than 8 MiB).
CSV_BLOCK_BYTES = 1 << 20
CSV_THREADS = True
PARQUET_BATCH_ROWS = 256_000
SHOWN_COLUMNS = 20


def listed(names: list[str]) -> str:
    """Column names for a message: a table may have thousands."""
    shown = ", ".join(names[:SHOWN_COLUMNS])
    return shown if len(names) <= SHOWN_COLUMNS else f"{shown}, ... ({len(names)} in all)"


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


def _check_names(names: list[str], label: str) -> None:
    """Column names become MLflow params, model signatures and Predict's feature list:
    each must be unique and free of control characters (a NUL, a newline)."""
    seen = set()
    for n in names:
        if any(not c.isprintable() for c in n):
            raise FailedPrecondition(f"{label}: column name {n!r} holds a control character")
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
    _check_names(names, src.label)
    target = options.target_column
    if not target:
        raise InvalidArgument("a single table needs options.target_column", field="options.target_column")
    if target not in names:
        raise InvalidArgument(f"target column {target!r} is not in {src.label}; columns: {listed(names)}")
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
            raise InvalidArgument(f"excluded column {name!r} is not in {label}; columns: {listed(names)}")
        if name == target:
            raise InvalidArgument(f"the target column {name!r} cannot be excluded")


def read_parquet_table(src: SourceFile, options: IngestOptions, plan: Plan) -> Reader:
    try:
        pf = pq.ParquetFile(src.path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FailedPrecondition(f"{src.label} is not a Parquet file: {exc}") from exc
    schema = pf.schema_arrow
    names = list(schema.names)
    _check_names(names, src.label)
    if pf.metadata.num_rows == 0:
        raise FailedPrecondition(f"{src.label} has no rows")
    pandas_index = set()
    if schema.pandas_metadata:
        pandas_index = {c for c in schema.pandas_metadata.get("index_columns", []) if isinstance(c, str)}
    target = options.target_column
    if not target:
        raise InvalidArgument("a single table needs options.target_column", field="options.target_column")
    if target not in names:
        raise InvalidArgument(f"target column {target!r} is not in {src.label}; columns: {listed(names)}")
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
    _check_names(xnames, x.label)
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
