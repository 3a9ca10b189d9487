"""The test tables hold the structure they claim: signal a model can find, categories that
matter, unique ids, exactly the missing rate asked for, and the same bytes for a seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from testing import reference, tables


def trivial_score(table: tables.Table, split) -> float:
    """Mean (regression) or majority class (classification) of the train split, on test."""
    y = table.frame[table.target]
    train, test = y.iloc[split["train"]], y.iloc[split["test"]]
    if table.structure.classification:
        return float((test == train.mode()[0]).mean())
    return float(np.sqrt(((test - train.mean()) ** 2).mean()))


@pytest.fixture(scope="module")
def large() -> list[tables.Table]:
    return tables.generated_tables(rows=4000, seed=1)


def test_gradient_boosting_finds_the_signal(large):
    for table in large:
        split = reference.platform_split(table)
        scores = reference.reference_scores(table, split)
        trivial = trivial_score(table, split)
        if table.structure.classification:
            assert scores.hgb > trivial + 0.15, (table.name, scores, trivial)
        else:
            # The noise is N(0, 5): 5 is the best RMSE there is, the mean predictor is far above.
            assert scores.hgb < 0.75 * trivial, (table.name, scores, trivial)
            assert scores.hgb > table.structure.noise_sd * 0.95, (table.name, scores)


def test_the_categories_carry_real_signal(large):
    """Withholding the informative categorical columns costs a model clearly."""
    table = large[0]
    informative = [c for c in table.structure.categorical if c in table.structure.informative]
    assert informative == ["region", "plan", "product"]
    split = reference.platform_split(table)
    full = reference.reference_scores(table, split).hgb
    blind_structure = tables.Structure(
        task=table.structure.task, numeric=table.structure.numeric, boolean=table.structure.boolean,
        categorical=tuple(c for c in table.structure.categorical if c not in informative))
    blind = reference.reference_scores(tables.Table("blind", table.frame, table.target, blind_structure), split).hgb
    assert blind > full * 1.15, (full, blind)


def test_columns_ids_dates_and_missing_values():
    for table in tables.generated_tables(rows=300, seed=3, missing=0.06):
        frame, s = table.frame, table.structure
        assert frame[s.id_column].is_unique
        assert frame[s.id_column].str.fullmatch(r"cust-\d{6}").all()
        dates = pd.to_datetime(frame[s.date_column], format="%Y-%m-%d")
        assert dates.min() >= pd.Timestamp("2020-01-01") and dates.max() <= pd.Timestamp("2024-01-01")
        assert frame[table.target].notna().all()
        for column in s.missing_columns:
            assert frame[column].isna().sum() == 18, column  # round(0.06 * 300)
        assert frame[list(s.boolean)].notna().all().all() and frame["is_member"].dtype == bool
        for column in s.categorical:
            assert frame[column].dropna().map(type).eq(str).all(), column
        for column in s.numeric:
            assert frame[column].dtype == np.float64, column
        assert set(s.informative) | set(s.uninformative) == set(s.features)
        if s.classification:
            assert sorted(frame[table.target].unique()) == list(s.classes)


def test_class_counts_and_sizes():
    table = tables.multiclass_table(rows=50_000, seed=0, classes=5)
    assert table.rows == 50_000
    shares = table.frame["tier"].value_counts(normalize=True)
    assert len(shares) == 5 and shares.min() > 0.05, shares
    binary = tables.binary_table(rows=50_000, seed=0).frame["outcome"]
    assert 0.35 < (binary == "churned").mean() < 0.65
    with pytest.raises(ValueError, match="classes must be 3 to 5"):
        tables.multiclass_table(classes=2)


def test_same_seed_same_bytes_other_seed_other_rows(tmp_path):
    a = tables.write_table(tables.binary_table(300, seed=5), tmp_path / "a")
    b = tables.write_table(tables.binary_table(300, seed=5), tmp_path / "b")
    assert a["csv"].read_bytes() == b["csv"].read_bytes()
    assert a["parquet"].read_bytes() == b["parquet"].read_bytes()
    c = tables.write_table(tables.binary_table(300, seed=6), tmp_path / "c")
    assert a["csv"].read_bytes() != c["csv"].read_bytes()


def test_written_files_read_back_as_the_table(tmp_path):
    table = tables.regression_table(300, seed=2)
    paths = tables.write_table(table, tmp_path)
    back = pd.read_csv(paths["csv"])
    assert list(back.columns) == list(table.frame.columns)
    assert back["region"].isna().sum() == table.frame["region"].isna().sum() == 24
    np.testing.assert_allclose(back["spend"], table.frame["spend"])
    parquet = pq.read_table(paths["parquet"])
    assert str(parquet.schema.field("region").type) in ("string", "large_string")
    assert parquet.column("region").null_count == 24
    assert parquet.column("age").null_count + np.isnan(parquet.column("age").to_numpy(zero_copy_only=False)).sum() >= 24


def test_sklearn_tables():
    by_name = {t.name: t for t in tables.sklearn_tables()}
    assert set(by_name) == {"sklearn-diabetes", "sklearn-breast-cancer", "sklearn-wine"}
    diabetes = by_name["sklearn-diabetes"]
    assert (diabetes.rows, diabetes.target, diabetes.structure.task) == (442, "progression", "regression")
    cancer = by_name["sklearn-breast-cancer"]
    assert cancer.structure.classes == ("benign", "malignant")
    assert (cancer.frame["diagnosis"] == "malignant").sum() == 212
    wine = by_name["sklearn-wine"]
    assert wine.structure.classes == ("class_0", "class_1", "class_2") and wine.rows == 178
    for table in by_name.values():
        assert list(table.frame.columns) == [*table.structure.numeric, table.target]
