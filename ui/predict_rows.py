"""Rows for Predict from the form, pasted text or a CSV file, and predictions back to
CSV. No NiceGUI here."""

from __future__ import annotations

import csv
import io

from kubetune.registry.v1 import registry_pb2
from kubetune_common.prediction_input import BadTable, BadValue, Column, check_table, parse_text, read_table


def parse_rows(text: str, columns: list[Column]) -> tuple[list[str], list[list[str]], list[str]]:
    """Pasted or uploaded CSV text -> (the names of its values, rows of text values, the
    columns the model ignores), by the same rules as the CLI: a header row names the
    columns (any order); without one, a row holds exactly the model's columns in order.
    Raises BadTable with a message for the user."""
    table = read_table(text, columns, "The CSV")
    ignored = check_table(table, columns, "The CSV")
    return table.header or [c.name for c in columns], table.rows, ignored


def form_row(values: dict[str, str], columns: list[Column]) -> list[str]:
    """One row from the form's inputs, each checked for its column's kind (empty is a
    missing value). Raises BadTable naming the column."""
    row = []
    for c in columns:
        text = str(values.get(c.name) or "")
        try:
            parse_text(text, c.kind)
        except BadValue as exc:
            raise BadTable(f"{c.name}: {exc}") from None
        row.append(text)
    return row


def feature_rows(rows: list[list[str]]) -> list[registry_pb2.FeatureRow]:
    return [registry_pb2.FeatureRow(text_values=row) for row in rows]


def result_rows(rows: list[list[str]], names: list[str], response: registry_pb2.PredictResponse) -> list[dict]:
    out = []
    for i, (row, p) in enumerate(zip(rows, response.predictions)):
        item = {"row": i + 1, **dict(zip(names, row))}
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
