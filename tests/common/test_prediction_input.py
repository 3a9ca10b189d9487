"""The rules of prediction input shared by the registry, the CLI and the UI: values by
their column's kind, and which first row of a CSV is a header (never a dropped row)."""

from __future__ import annotations

import math

import pytest

from kubetune_common.prediction_input import (BadTable, BadValue, Column, check_table, parse_number, parse_text,
                                              read_table)
from services.registry.registry import input_columns

MODEL = [Column("age"), Column("city", "categorical"), Column("member", "boolean")]


@pytest.mark.parametrize("text,kind,expected", [
    ("1.5", "numeric", 1.5), (" -2 ", "numeric", -2.0), ("", "numeric", math.nan), ("NA", "numeric", math.nan),
    ("nan", "numeric", math.nan), ("yes", "boolean", 1.0), ("False", "boolean", 0.0), ("0", "boolean", 0.0),
    ("", "boolean", math.nan), ("Paris", "categorical", "Paris"), ("3", "categorical", "3"),
    ("", "categorical", None), ("NA", "categorical", None),
])
def test_values_by_kind(text, kind, expected):
    value = parse_text(text, kind)
    if isinstance(expected, float) and math.isnan(expected):
        assert isinstance(value, float) and math.isnan(value)
    else:
        assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text,kind,message", [
    ("abc", "numeric", "'abc' is not a number"), ("inf", "numeric", "'inf' is not a finite number"),
    ("-Infinity", "numeric", "not a finite number"), ("1e999", "numeric", "not a finite number"),
    ("maybe", "boolean", "'maybe' is not a boolean"), ("2", "boolean", "'2' is not a boolean"),
])
def test_bad_values_say_why(text, kind, message):
    with pytest.raises(BadValue, match=message):
        parse_text(text, kind)


def test_numbers_by_kind():
    assert parse_number(3.0, "categorical") == "3" and parse_number(2.5, "categorical") == "2.5"
    assert parse_number(math.nan, "categorical") is None and math.isnan(parse_number(math.nan, "numeric"))
    for kind in ("numeric", "categorical", "boolean"):
        with pytest.raises(BadValue, match="not a finite number"):
            parse_number(-math.inf, kind)
    with pytest.raises(BadValue, match="not a boolean"):
        parse_number(0.5, "boolean")


def test_a_header_names_columns_in_any_order_and_extras_are_reported():
    table = read_table("id,member,age,city,target\n1,yes,31,Paris,9\n2,no,,Lyon,7\n", MODEL)
    assert table.header == ["id", "member", "age", "city", "target"] and table.lines == [2, 3]
    assert table.rows == [["1", "yes", "31", "Paris", "9"], ["2", "no", "", "Lyon", "7"]]
    assert check_table(table, MODEL) == ["id", "target"]


def test_a_headerless_file_keeps_its_first_row():
    table = read_table("31,Paris,yes\n40,Lyon,no\n", MODEL, "rows.csv")
    assert table.header == [] and len(table.rows) == 2 and check_table(table, MODEL) == []
    # A first row of text in a numeric column is a header: one naming none of the model's
    # columns is refused (the file may hold data of another layout), never dropped.
    with pytest.raises(BadTable, match="its first row"):
        read_table("a,b,c\n31,Paris,yes\n", MODEL)
    # A header with a BOM and blank lines around it.
    assert read_table("\ufeffage,city,member\n\n31,Paris,yes\n\n", MODEL).rows == [["31", "Paris", "yes"]]


@pytest.mark.parametrize("text,message", [
    ("", "rows.csv is empty"),
    ("\n  \n", "rows.csv is empty"),
    ("age,city,member\n", "rows.csv has a header but no rows"),
    ("31,40\n40,50\n", "no header row (its first row is data) and 2 values per row; without a header a row "
                        "needs exactly the model's 3 columns in this order: age, city, member"),
    ("1,31,Paris,yes\n", "its first row (1, 31, Paris, yes) names none of the model's columns; name them in a "
                          "header row, or give rows of exactly the model's 3 columns in this order: age, city, member"),
    ("age,city,member\n31,Paris\n", "rows.csv line 2: 2 values where the header names 3"),
    ("age,age,city\n1,2,x\n", "the header names age more than once"),
])
def test_unreadable_tables_are_refused(text, message):
    with pytest.raises(BadTable, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_table(text, MODEL, "rows.csv")


def test_check_table_names_the_line_and_column():
    with pytest.raises(BadTable, match=r"rows.csv line 3, column 'age': 'old' is not a number"):
        check_table(read_table("city,age,member\nParis,3,no\nLyon,old,no\n", MODEL), MODEL, "rows.csv")
    with pytest.raises(BadTable, match=r"the model needs columns age, member, missing from the header \(city\)"):
        check_table(read_table("city\nParis\n", MODEL), MODEL, "rows.csv")
    # inf and 2 are values (wrong ones), not a header's names: refused, not dropped.
    with pytest.raises(BadTable, match=r"line 1, column 'age': 'inf' is not a finite number"):
        check_table(read_table("inf,Paris,no\n", MODEL), MODEL)
    with pytest.raises(BadTable, match=r"line 1, column 'member': '2' is not a boolean"):
        check_table(read_table("3,Paris,2\n", MODEL), MODEL)


def test_input_columns_from_a_versions_tags():
    schema = '[{"name": "age", "kind": "numeric"}, {"name": "city", "kind": "categorical"}]'
    assert input_columns({"kubetune.input_schema": schema, "kubetune.features": '["age", "city"]'}) == [
        Column("age"), Column("city", "categorical")]
    # A model logged before kinds existed: its features, all numeric.
    assert input_columns({"kubetune.features": '["a", "b"]'}) == [Column("a"), Column("b")]
    assert input_columns({"kubetune.input_schema": "not json", "kubetune.features": '["a"]'}) == [Column("a")]
    assert input_columns({}) == []
