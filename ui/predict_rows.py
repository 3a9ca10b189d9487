"""Rows for Predict from pasted text or a CSV file, and predictions back to CSV.
No NiceGUI here."""

from __future__ import annotations

import csv
import io

from kubetune.registry.v1 import registry_pb2


def parse_rows(text: str, feature_names: list[str]) -> tuple[list[list[str]], list[str]]:
    """Rows of text values in the model's feature order. A header row naming the
    features is used to reorder columns (extra columns, like an index or the target,
    are dropped); without one, columns are taken in order (a leading index column is
    dropped when there is one value too many)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return [], []
    first = lines[0]
    delimiter = "\t" if "\t" in first else ";" if ";" in first and "," not in first else ","
    table = [[c.strip() for c in row] for row in csv.reader(lines, delimiter=delimiter)]
    header = table[0]
    names = set(feature_names)
    if feature_names and names.issubset(header):
        index = [header.index(f) for f in feature_names]
        return [[row[i] if i < len(row) else "" for i in index] for row in table[1:]], feature_names
    if header and not all(_is_number(c) for c in header if c):
        table = table[1:]  # some other header
    n = len(feature_names)
    if n:
        table = [row[1:] if len(row) == n + 1 else row for row in table]
    return table, feature_names


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def feature_rows(rows: list[list[str]]) -> list[registry_pb2.FeatureRow]:
    return [registry_pb2.FeatureRow(text_values=row) for row in rows]


def result_rows(rows: list[list[str]], features: list[str], response: registry_pb2.PredictResponse) -> list[dict]:
    out = []
    for i, (row, p) in enumerate(zip(rows, response.predictions)):
        item = {"row": i + 1, **{f: v for f, v in zip(features or [f"x{j}" for j in range(len(row))], row)}}
        item["prediction"] = p.label or f"{p.value:.6g}"
        if p.probabilities:
            item["probabilities"] = ", ".join(f"{k}: {v:.3f}" for k, v in sorted(p.probabilities.items()))
        out.append(item)
    return out


def to_csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
