"""First look at a source: which file it is, whether a CSV has a header, its
delimiter, and whether a column is a row index (consecutive integers from 0 or 1).
Reads only the first SNIFF_BYTES."""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from kubetune_common.errors import FailedPrecondition

SNIFF_BYTES = 256 << 10
HASH_CHUNK = 4 << 20
INDEX_NAMES = {"", "index", "unnamed: 0", "id"}


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


def looks_like_integers(values: list[str]) -> bool:
    """Distinct integers, in any order: an unnamed index after a filter or a shuffle."""
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return False
    return len(numbers) >= 2 and all(n.is_integer() for n in numbers) and len(set(numbers)) == len(numbers)
