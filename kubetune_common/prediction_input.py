"""Prediction input, one set of rules for the registry, the gateway, the CLI and the UI:
a value read by its column's kind (numeric, categorical, boolean), what counts as
missing, and a CSV of rows whose first line may or may not be a header."""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from dataclasses import dataclass

NUMERIC, CATEGORICAL, BOOLEAN = "numeric", "categorical", "boolean"
KINDS = (NUMERIC, CATEGORICAL, BOOLEAN)
# Texts that mean "missing", compared lower-case: those the data service reads as
# missing (pyarrow's CSV null values) and those the logged model maps to missing
# (services/tuning/worker/tabular_model.py), so a row is read as its training row was.
MISSING_TEXT = frozenset({
    "", "#n/a", "#n/a n/a", "#na", "-1.#ind", "-1.#qnan", "-nan", "1.#ind", "1.#qnan", "<na>",
    "n/a", "na", "nan", "null", "none",
})
TRUE_TEXT = frozenset({"true", "yes", "t", "y", "1", "1.0"})
FALSE_TEXT = frozenset({"false", "no", "f", "n", "0", "0.0"})

@dataclass(frozen=True)
class Column:
    name: str
    kind: str = NUMERIC


def columns_of(version) -> list[Column]:
    """The input columns a registry ModelVersion message lists: its inputs with their
    kinds, or (from a registry that predates kinds) its feature names, all numeric."""
    return [Column(c.name, c.kind) for c in version.inputs] or [Column(n) for n in version.feature_names]


class BadValue(ValueError):
    """A value its column's kind cannot take; the message says why, without where."""


class BadTable(ValueError):
    """A CSV of rows that cannot be read for the model; the message is for a person."""


def is_missing(text: str) -> bool:
    return text.strip().lower() in MISSING_TEXT


def parse_text(text: str, kind: str) -> float | str | None:
    """A value given as text -> float (numeric, boolean 0/1; NaN when missing) or
    str (categorical; None when missing). Raises BadValue."""
    if is_missing(text):
        return None if kind == CATEGORICAL else math.nan
    if kind == CATEGORICAL:
        return text
    clean = text.strip()
    if kind == BOOLEAN:
        if clean.lower() in TRUE_TEXT:
            return 1.0
        if clean.lower() in FALSE_TEXT:
            return 0.0
        raise BadValue(f"{text!r} is not a boolean (true/false, yes/no, 1/0)")
    try:
        value = float(clean)
    except ValueError:
        raise BadValue(f"{text!r} is not a number") from None
    if math.isinf(value):
        raise BadValue(f"{text!r} is not a finite number")
    return value


def parse_number(value: float, kind: str) -> float | str | None:
    """A value given as a number -> as parse_text's. NaN is missing; inf is refused."""
    if math.isinf(value):
        raise BadValue(f"{value} is not a finite number")
    if math.isnan(value):
        return None if kind == CATEGORICAL else math.nan
    if kind == CATEGORICAL:
        # Categories written as numbers become their text: 3.0 -> "3".
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    if kind == BOOLEAN and value not in (0.0, 1.0):
        raise BadValue(f"{value:g} is not a boolean (true/false, yes/no, 1/0)")
    return value


def parse(value: float | str, kind: str) -> float | str | None:
    return parse_text(value, kind) if isinstance(value, str) else parse_number(float(value), kind)


def listed(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"


@dataclass
class Table:
    """Rows of text from a CSV: `header` names their values, or is empty when the file
    has no header row (its values are then in the model's order)."""
    header: list[str]
    rows: list[list[str]]
    lines: list[int]  # the file's line number of each row, for messages


def _delimiter(first_line: str) -> str:
    return "\t" if "\t" in first_line else ";" if ";" in first_line and "," not in first_line else ","


def is_header(first: list[str], columns: list[Column]) -> bool:
    """A first row is a header when it names one of the model's columns or, when it has
    the model's width, one of its values is a word where its column takes numbers. A
    row of another width whose values all read as numbers is data (and is refused for
    its width): a data row is never taken for a header and dropped."""
    names = {c.name for c in columns}
    if any(cell.strip() in names for cell in first):
        return True
    if len(first) == len(columns):
        return any(_is_word(cell, c.kind) for cell, c in zip(first, columns))
    return any(_is_word(cell, NUMERIC) for cell in first)


def _is_word(text: str, kind: str) -> bool:
    """Text that no value of the kind looks like (inf or 2 in a boolean column are
    values, wrong ones, refused as such)."""
    if kind == CATEGORICAL or is_missing(text):
        return False
    clean = text.strip()
    if kind == BOOLEAN and clean.lower() in TRUE_TEXT | FALSE_TEXT:
        return False
    try:
        float(clean)
    except ValueError:
        return True
    return False


def read_table(text: str, columns: list[Column], source: str = "the file") -> Table:
    """Rows of a CSV for a model with these input columns. Never drops a data row: a
    first row is taken as a header only by is_header's rule, and a header-less file
    must have exactly the model's columns, in its order. Raises BadTable."""
    text = text.lstrip("\ufeff")
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    if not first_line:
        raise BadTable(f"{source} is empty: no rows to predict")
    reader = csv.reader(io.StringIO(text), delimiter=_delimiter(first_line))
    rows, lines = [], []
    try:
        for row in reader:
            if len(row) > 1 or (row and row[0].strip()):
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise BadTable(f"{source} line {reader.line_num}: not a readable CSV row ({exc})") from None
    if not rows:
        raise BadTable(f"{source} is empty: no rows to predict")
    width = len(columns)
    names = [c.name for c in columns]
    if is_header(rows[0], columns):
        header = [cell.strip() for cell in rows[0]]
        repeated = sorted(h for h, count in Counter(header).items() if count > 1)
        if repeated:
            raise BadTable(f"{source}: the header names {listed(repeated)} more than once")
        if not set(header) & set(names):
            raise BadTable(
                f"{source}: its first row ({listed(header)}) names none of the model's columns; name them in a "
                f"header row, or give rows of exactly the model's {width} columns in this order: {listed(names)}")
        rows, lines = rows[1:], lines[1:]
        if not rows:
            raise BadTable(f"{source} has a header but no rows to predict")
    else:
        header = []
        if len(rows[0]) != width:
            raise BadTable(
                f"{source} has no header row (its first row is data) and {len(rows[0])} values per row; "
                f"without a header a row needs exactly the model's {width} columns in this order: {listed(names)}. "
                "Add a header row naming the columns.")
    expected = len(header) or width
    for row, line in zip(rows, lines):
        if len(row) != expected:
            raise BadTable(f"{source} line {line}: {len(row)} values where the "
                           f"{'header names' if header else 'model has'} {expected}")
    return Table(header, rows, lines)


def check_table(table: Table, columns: list[Column], source: str = "the file") -> list[str]:
    """Reads every value the model uses for its kind (BadTable naming the line and the
    column of the first that fails) and returns the columns the model does not use."""
    by_name = {c.name: c for c in columns}
    if table.header:
        given = set(table.header)
        missing = [c.name for c in columns if c.name not in given]
        if missing:
            raise BadTable(f"{source}: the model needs column{'s' if len(missing) > 1 else ''} {listed(missing)}, "
                           f"missing from the header ({listed(table.header)})")
        used = [(j, by_name[h]) for j, h in enumerate(table.header) if h in by_name]
    else:
        used = list(enumerate(columns))
    for row, line in zip(table.rows, table.lines):
        for j, column in used:
            try:
                parse_text(row[j], column.kind)
            except BadValue as exc:
                raise BadTable(f"{source} line {line}, column {column.name!r}: {exc}") from None
    return [h for h in table.header if h not in by_name]
