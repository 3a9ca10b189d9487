"""The CLI's flag rules: numeric flags, and API field names turned back into flags."""

import argparse

import pytest

from cli import flags


@pytest.mark.parametrize("message, expected", [
    ("options.target_column: no column 'price' in prices.csv", "--target: no column 'price' in prices.csv"),
    ("a single table needs options.target_column", "a single table needs --target"),
    ("x.csv: column 'a' row 3 is missing; set options.missing_policy to impute or drop such rows",
     "x.csv: column 'a' row 3 is missing; set --missing to impute or drop such rows"),
    ("options.categorical_columns: no column 'zip'", "--categorical: no column 'zip'"),
    ("search_space.learning_rate: min 0.1 is greater than max 1e-05", "--lr: min 0.1 is greater than max 1e-05"),
    ("search_space.units_l0: range must lie within [1, 8192]", "--param units_l0=...: range must lie within [1, 8192]"),
    ("objectives[1].metric: 'x' is not one of ...", "--objective: 'x' is not one of ..."),
    ("n_trials: must be between 1 and 10000 (got 0)", "--trials: must be between 1 and 10000 (got 0)"),
    ("dataset: no dataset 'nope'; register it first", "--dataset: no dataset 'nope'; register it first"),
    ("study 'x' not found", "study 'x' not found"),
    ("/data/x.csv: not a CSV", "/data/x.csv: not a CSV"),
])
def test_errors_name_the_flags(message, expected):
    assert flags.in_flag_terms(message) == expected


@pytest.mark.parametrize("parse, text", [(flags.count, "0"), (flags.count, "-3"), (flags.count, "2.5"),
                                         (flags.port, "0"), (flags.port, "70000"), (flags.seconds, "-1"),
                                         (flags.seconds, "nan"), (flags.zero_or_more, "-1"),
                                         (flags.bounded(1, 1000), "1001")])
def test_numeric_flags_refuse_what_means_nothing(parse, text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse(text)


def test_numeric_flags_take_what_means_something():
    assert flags.count("3") == 3 and flags.zero_or_more("0") == 0 and flags.seconds("0") == 0.0
    assert flags.port("65535") == 65535 and flags.bounded(1, 1000)("1000") == 1000
