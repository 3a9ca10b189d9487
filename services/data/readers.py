"""Planned reads of a source, batch by batch: CSV (pyarrow's streaming reader), Parquet
(row batches), and the X/y folder (two CSVs read in step). Each yields aligned feature
arrays and the raw target; a guess from the sniffed sample that does not hold (an index
column that stops counting, a numeric-looking target with text further down) raises
Replan, and the read starts again without the guess."""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from kubetune_common.errors import FailedPrecondition, InvalidArgument
from services.data.records import Column, IngestOptions, Kind, Role
from services.data.sniff import INDEX_NAMES, CsvShape, SourceFile, is_number, looks_like_index, looks_like_integers, sniff_csv

# pyarrow's streaming CSV reader keeps several blocks in flight (read, parsed, converted):
# 35 MiB of Arrow memory with 1 MiB blocks, 9 MiB with 256 KiB, at the same speed (a
# 200 MiB CSV, 2 CPUs; bench/data_register.py has the service's figures).
CSV_BLOCK_BYTES = 256 << 10
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
    # Feature columns that looked numeric in the sample and turned out to hold text.
    text_columns: frozenset[str] = frozenset()


@dataclass
class Batch:
    """One block of rows, aligned: numeric features as float64 arrays (NaN where missing),
    text features as pyarrow string arrays, the target raw."""

    features: list[np.ndarray | pa.Array]
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
    # Features read as text: categories, booleans written as words, ids, dates.
    text_features: frozenset[str] = frozenset()

    @property
    def features(self) -> list[str]:
        return [c.name for c in self.columns if c.role is Role.FEATURE]


def _feature_types(names: list[str], shape: CsvShape, options: IngestOptions, plan: Plan,
                   skip: set[str]) -> dict[str, pa.DataType]:
    """Each feature's read type: text when declared categorical, found to be text, or
    text in the sample (unless declared numeric); float64 otherwise."""
    types = {}
    for j, name in enumerate(names):
        if name in skip or name in options.exclude_columns:
            continue
        text = (name in options.categorical_columns or name in plan.text_columns
                or (name not in options.numeric_columns and _text_sample(shape, j)))
        types[name] = pa.string() if text else pa.float64()
    return types


def _text_replan(plan: Plan, options: IngestOptions, types: dict[str, pa.DataType], column: str | None):
    """A feature read as a number that holds text further down: read it again as text,
    unless the user declared it numeric (then the conversion error stands)."""
    if column in types and types[column] == pa.float64() and column not in options.numeric_columns:
        return Replan(text_columns=plan.text_columns | {column})
    return None


def _feature_arrays(batch: pa.RecordBatch, features: list[str], text: frozenset[str]) -> list:
    return [batch.column(f) if f in text else _as_float(batch.column(f)) for f in features]


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
    if "invalid UTF8" in message or "UTF-8" in message:
        offset = first_invalid_utf8(src.path)
        where = f" (byte {offset})" if offset is not None else ""
        return None, FailedPrecondition(f"{src.label} is not UTF-8 text{where}; save it as UTF-8")
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


def first_invalid_utf8(path) -> int | None:
    """The offset of the first byte that is not valid UTF-8, read in blocks."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                return offset + exc.start - len(decoder.getstate()[0])
            offset += len(block)
    return None


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


class TooLarge(ValueError):
    """An integer a float64 cannot hold exactly (beyond 2^53)."""


def _as_float(array: pa.Array) -> np.ndarray:
    if array.type != pa.float64():
        try:
            array = array.cast(pa.float64())
        except pa.ArrowInvalid as exc:
            raise TooLarge(str(exc)) from exc
    return array.to_numpy(zero_copy_only=False)


def first_of_each(values: np.ndarray) -> np.ndarray:
    """Sorts `values` in place and marks the first of each run of equal values: the
    distinct values in 1 byte a value beyond the array itself (np.unique holds 3 copies)."""
    values.sort()
    first = np.empty(values.size, dtype=bool)
    first[:1] = True
    np.not_equal(values[1:], values[:-1], out=first[1:])
    return first


class _IndexChecker:
    """Checks, block by block, that a planned index column is one: consecutive integers
    for a named candidate (`index`, `id`), unique integers for an unnamed first column
    (pandas writes its index unnamed, with gaps after a filter or in any order after a
    shuffle). Unique integers that only ever rise are unique; any others are kept (8 bytes
    a row) and sorted once every block was seen."""

    def __init__(self, consecutive: bool):
        self.consecutive = consecutive
        self.offset = 0
        self.start = None
        self.seen: list[np.ndarray] = []
        self.rising = True
        self.last = -np.inf

    def __call__(self, values: np.ndarray) -> None:
        if self.consecutive:
            if self.start is None:
                self.start = values[0] if values.size else 0.0
            expected = np.arange(values.size, dtype=np.float64) + self.offset + self.start
            if not np.array_equal(values, expected):
                raise Replan(allow_index=False)
        elif not (np.isfinite(values).all() and np.array_equal(values, np.round(values))):
            raise Replan(allow_index=False)
        else:
            integers = values.astype(np.int64)
            if self.rising and integers.size:
                self.rising = bool(integers[0] > self.last and (integers[1:] > integers[:-1]).all())
                self.last = integers[-1]
            self.seen.append(integers)
        self.offset += values.size

    def finish(self) -> None:
        if self.seen and not self.rising:
            values = np.concatenate(self.seen)
            self.seen = []
            if not first_of_each(values).all():
                raise Replan(allow_index=False)
def _index_note(name: str, consecutive: bool) -> str:
    if consecutive:
        return "row index: consecutive integers, not a feature"
    return "row index: an unnamed first column of unique integers (as pandas writes one), not a feature"


def _csv_roles(shape: CsvShape, plan: Plan, *, xy: bool) -> tuple[list[str], str | None, bool]:
    """Column names (headerless features renamed x0..), the index column if any, and
    whether that index must count rows (else: unique integers, in any order)."""
    names = list(shape.names)
    index = None
    consecutive = True
    if plan.allow_index and len(names) > 1:
        for j, name in enumerate(names):
            unnamed = j == 0 and ((shape.header and name == "") or xy)
            candidate = unnamed or (j == 0 and not shape.header) or name.lower() in INDEX_NAMES
            sample = [r[j] for r in shape.sample if j < len(r)]
            if candidate and (looks_like_index(sample) or (unnamed and looks_like_integers(sample))):
                index = j
                consecutive = not unnamed
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
    return names, (names[index] if index is not None else None), consecutive


def _text_sample(shape: CsvShape, j: int) -> bool:
    return any(not is_number(r[j]) for r in shape.sample if j < len(r))


def _check_declared(options: IngestOptions, names: list[str], target: str, label: str) -> None:
    """Columns the user named (excluded, categorical, numeric) must exist and not be the target."""
    for flag, declared in (("excluded", options.exclude_columns), ("categorical", options.categorical_columns),
                           ("numeric", options.numeric_columns)):
        for name in declared:
            if name not in names:
                raise InvalidArgument(f"{flag} column {name!r} is not in {label}; columns: {listed(names)}")
            if name == target:
                raise InvalidArgument(f"the target column {name!r} cannot be declared {flag}")


def _feature_column(name: str, types: dict[str, pa.DataType]) -> Column:
    if types[name] == pa.string():
        return Column(name, "string", Role.FEATURE, Kind.CATEGORICAL)
    return Column(name, "float64", Role.FEATURE, Kind.NUMERIC)


def read_csv_table(src: SourceFile, options: IngestOptions, plan: Plan) -> Reader:
    shape = sniff_csv(src)
    names, index, consecutive = _csv_roles(shape, plan, xy=False)
    _check_names(names, src.label)
    target = options.target_column
    if not target:
        raise InvalidArgument("a single table needs options.target_column", field="options.target_column")
    if target not in names:
        raise InvalidArgument(f"target column {target!r} is not in {src.label}; columns: {listed(names)}")
    if target == index:
        index = None
    _check_declared(options, names, target, src.label)
    if index in options.exclude_columns or index in options.categorical_columns or index in options.numeric_columns:
        index = None  # the user said what the column is
    text_target = plan.text_target
    if text_target is None:
        text_target = _text_sample(shape, names.index(target))
    ftypes = _feature_types(names, shape, options, plan, skip={target} | ({index} if index else set()))
    columns, types = [], {}
    for name in names:
        if name == target:
            columns.append(Column(name, "string" if text_target else "float64", Role.TARGET))
            types[name] = pa.string() if text_target else pa.float64()
        elif name in options.exclude_columns:
            columns.append(Column(name, "string", Role.EXCLUDED, note="excluded by request"))
        elif name == index:
            columns.append(Column(name, "int64", Role.INDEX, note=_index_note(name, consecutive)))
            types[name] = pa.float64()
        else:
            columns.append(_feature_column(name, ftypes))
            types[name] = ftypes[name]
    features = [c.name for c in columns if c.role is Role.FEATURE]
    text = frozenset(f for f in features if types[f] == pa.string())
    check_index = _IndexChecker(consecutive) if index else None

    def replan(column: str | None) -> Replan | None:
        if column == target and not text_target:
            return Replan(text_target=True)
        if column is not None and column == index:
            return Replan(allow_index=False)
        return _text_replan(plan, options, ftypes, column)

    def batches() -> Iterator[Batch]:
        for batch in _csv_batches(src, shape, names, types, replan):
            if check_index:
                check_index(_as_float(batch.column(index)))
            yield Batch(
                _feature_arrays(batch, features, text),
                batch.column(target) if text_target else _as_float(batch.column(target)),
                None,
                batch.num_rows,
            )
        if check_index:
            check_index.finish()

    return Reader(columns, target, text_target, batches(), _csv_locator(src, shape.header), text_features=text)


def _csv_locator(src: SourceFile, header: bool):
    def locate(row: int) -> str:
        return f"row {row} (line {row + (1 if header else 0)})"

    return locate


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
    _check_declared(options, names, target, src.label)
    ttype = schema.field(target).type
    text_target = not _numeric_type(ttype)
    if text_target and not _text_type(ttype):
        raise FailedPrecondition(f"{src.label}: target column {target!r} has type {ttype}, neither number nor text")
    columns = []
    text: set[str] = set()
    for name in names:
        ftype = schema.field(name).type
        if name == target:
            columns.append(Column(name, "string" if text_target else "float64", Role.TARGET))
        elif name in options.exclude_columns:
            columns.append(Column(name, str(ftype), Role.EXCLUDED, note="excluded by request"))
        elif name in pandas_index or name.startswith("__index_level_"):
            columns.append(Column(name, str(ftype), Role.INDEX, note="row index (pandas metadata), not a feature"))
        elif name in options.categorical_columns or (_text_type(ftype) and name not in options.numeric_columns):
            if not (_text_type(ftype) or _numeric_type(ftype)):
                raise FailedPrecondition(f"{src.label}: column {name!r} has type {ftype}, neither number nor text")
            columns.append(Column(name, "string", Role.FEATURE, Kind.CATEGORICAL))
            text.add(name)
        elif _numeric_type(ftype) or (_text_type(ftype) and name in options.numeric_columns):
            kind = Kind.BOOLEAN if pa.types.is_boolean(ftype) and name not in options.numeric_columns else Kind.NUMERIC
            columns.append(Column(name, "float64", Role.FEATURE, kind))
        else:
            row, value = _first_present(pf, name)
            raise FailedPrecondition(
                f"{src.label}: column {name!r} has type {ftype}, neither number nor text: row {row} holds {value!r}; "
                "exclude it"
            )
    features = [c.name for c in columns if c.role is Role.FEATURE]
    text = frozenset(text)

    def feature(batch, name):
        values = batch.column(name)
        if name in text:
            return values.cast(pa.string()) if values.type != pa.string() else values
        if _text_type(values.type):  # declared numeric
            try:
                return _as_float(values.cast(pa.string()))
            except TooLarge:
                raise
            except (pa.ArrowInvalid, ValueError) as exc:
                raise FailedPrecondition(f"{src.label}: column {name!r} is declared numeric but holds text: {exc}") from exc
        try:
            return _as_float(values)
        except TooLarge:
            big = pc.max(pc.abs(values)).as_py()
            raise FailedPrecondition(
                f"{src.label}: column {name!r} holds {big}, beyond 2^53: a float64 cannot hold it exactly "
                "(an id?); exclude it or declare it categorical"
            ) from None

    def batches() -> Iterator[Batch]:
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[*features, target]):
            t = batch.column(target)
            if text_target:
                t = t.cast(pa.string())
            else:
                try:
                    t = _as_float(t)
                except TooLarge:
                    raise FailedPrecondition(
                        f"{src.label}: target column {target!r} holds integers beyond 2^53, which a float64 "
                        "cannot hold exactly"
                    ) from None
            yield Batch([feature(batch, f) for f in features], t, None, batch.num_rows)

    return Reader(columns, target, text_target, batches(), lambda row: f"row {row}", text_features=text)


def _numeric_type(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t)


def _text_type(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)


def _first_present(pf: pq.ParquetFile, name: str):
    offset = 0
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[name]):
        for i, v in enumerate(batch.column(0).to_pylist()):
            if v is not None:
                return offset + i + 1, v
        offset += batch.num_rows
    return 1, None


def read_xy(x: SourceFile, y: SourceFile, options: IngestOptions, plan: Plan) -> Reader:
    """X.csv and y.csv read in step. When both carry an index, every row's two indexes
    must agree: files joined by position alone would misalign silently."""
    xshape, yshape = sniff_csv(x), sniff_csv(y)
    xnames, xindex, xconsecutive = _csv_roles(xshape, plan, xy=True)
    _check_names(xnames, x.label)
    ynames, yindex, _ = _csv_roles(yshape, Plan(allow_index=len(yshape.names) == 2), xy=True)
    ycols = [n for n in ynames if n != yindex]
    if len(ycols) != 1:
        raise FailedPrecondition(f"{y.label} has {len(ycols)} columns besides an index; expected one target column")
    ytarget_raw = ycols[0]
    target = "target" if not yshape.header else ytarget_raw
    text_target = plan.text_target
    if text_target is None:
        text_target = _text_sample(yshape, ynames.index(ytarget_raw))
    _check_declared(options, xnames, "", x.label)
    if xindex in options.exclude_columns or xindex in options.categorical_columns or xindex in options.numeric_columns:
        xindex = None
    if target in xnames and target not in options.exclude_columns:
        raise FailedPrecondition(f"{x.label} has a column named {target!r}, the name of the target in {y.label}")
    ftypes = _feature_types(xnames, xshape, options, plan, skip={xindex} if xindex else set())
    columns, xtypes = [], {}
    for name in xnames:
        if name in options.exclude_columns:
            columns.append(Column(name, "string", Role.EXCLUDED, note="excluded by request"))
        elif name == xindex:
            columns.append(Column(name, "int64", Role.INDEX, note=_index_note(name, xconsecutive)))
            xtypes[name] = pa.float64()
        else:
            columns.append(_feature_column(name, ftypes))
            xtypes[name] = ftypes[name]
    columns.append(Column(target, "string" if text_target else "float64", Role.TARGET))
    features = [c.name for c in columns if c.role is Role.FEATURE]
    text = frozenset(f for f in features if xtypes[f] == pa.string())
    ytypes = {ytarget_raw: pa.string() if text_target else pa.float64()}
    aligned = bool(xindex and yindex)
    if aligned:
        ytypes = {yindex: pa.float64(), **ytypes}
    check_index = _IndexChecker(xconsecutive) if xindex else None

    def read(src, shape, names, types):
        def replan(column: str | None) -> Replan | None:
            if src is y and column is not None and column != yindex and not text_target:
                return Replan(text_target=True)
            if src is x and column is not None and column == xindex:
                return Replan(allow_index=False)
            if src is x:
                return _text_replan(plan, options, ftypes, column)
            return None

        return _csv_batches(src, shape, names, types, replan)

    def batches() -> Iterator[Batch]:
        ybatches = read(y, yshape, ynames, ytypes)
        pending: list[pa.RecordBatch] = []
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
                pending.append(yb)
                buffered += yb.num_rows
            joined = pa.Table.from_batches(pending).combine_chunks()
            ypart, rest = joined.slice(0, n), joined.slice(n)
            pending, buffered = (rest.to_batches() if rest.num_rows else []), rest.num_rows
            ycol = ypart.column(ytarget_raw).combine_chunks()
            if check_index:
                xidx = _as_float(xb.column(xindex))
                check_index(xidx)
                if aligned:
                    _check_aligned(x, y, xidx, _as_float(ypart.column(yindex).combine_chunks()), xrows)
            xrows += n
            yield Batch(
                _feature_arrays(xb, features, text),
                ycol if text_target else _as_float(ycol),
                None,
                n,
            )
        extra = buffered + sum(b.num_rows for b in ybatches)
        if extra:
            raise _mismatch(x, y, xrows, xrows + extra)
        if check_index:
            check_index.finish()

    files = {name: x.label for name in xnames} | {target: y.label}
    return Reader(columns, target, text_target, batches(), _csv_locator(x, xshape.header), files, text)


def _check_aligned(x: SourceFile, y: SourceFile, xidx: np.ndarray, yidx: np.ndarray, offset: int) -> None:
    differ = xidx != yidx
    if differ.any():
        i = int(np.argmax(differ))
        raise FailedPrecondition(
            f"{x.label} and {y.label} disagree at data row {offset + i + 1}: {x.label}'s index is "
            f"{_int_text(xidx[i])}, {y.label}'s is {_int_text(yidx[i])}; both files must list the same rows "
            "in the same order"
        )


def _int_text(value: float) -> str:
    return str(int(value)) if np.isfinite(value) and float(value).is_integer() else repr(float(value))


def _mismatch(x: SourceFile, y: SourceFile, xrows: int, yrows: int) -> FailedPrecondition:
    return FailedPrecondition(f"row counts differ: {x.label} has {xrows} rows, {y.label} has {yrows}")
