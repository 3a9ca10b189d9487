"""bench.quality's scikit-learn part on the 300-row tables, its table and its verdicts."""

from __future__ import annotations

import math

from bench import quality
from services.tuning.worker.training import split_indices
from testing import reference, tables


def test_sklearn_part_on_small_tables_writes_the_table(tmp_path, capsys):
    out = tmp_path / "quality.md"
    assert quality.main(["--no-network", "--rows", "0", "--small-rows", "300", "--out", str(out)]) == 0
    text = out.read_text()
    body = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| dataset")]
    names = [line.split(" | ")[0].removeprefix("| ") for line in body]
    assert names == ["mixed-regression-300", "mixed-binary-300", "mixed-multiclass-300",
                     "sklearn-diabetes", "sklearn-breast-cancer", "sklearn-wine"]
    for line in body:
        cells = [c.strip() for c in line.strip("|").split("|")]
        _, rows, task, metric, network, hgb, linear, ratio, target, baseline, tuning = cells
        assert network == ratio == baseline == tuning == "—" and target == "(< 5,000 rows)"
        assert metric == ("test rmse" if task == "regression" else "test accuracy")
        for value in (float(hgb), float(linear)):
            assert math.isfinite(value) and value > 0
            if task != "regression":
                assert value <= 1.0
    assert "mixed-regression-300 | 300 | regression" in capsys.readouterr().out


def test_scores_are_on_the_platform_split_and_find_the_signal():
    table = tables.regression_table(300, seed=0)
    split = split_indices(300, reference.DEFAULT_SPLIT_SEED)
    scores = quality.sklearn_part([table])[0].scores
    assert (scores.train_rows, scores.test_rows) == (len(split["train"]), len(split["test"]))
    y = table.frame["spend"]
    mean_rmse = math.sqrt(((y.iloc[split["test"]] - y.iloc[split["train"]].mean()) ** 2).mean())
    assert scores.hgb < 0.9 * mean_rmse and scores.linear < 0.9 * mean_rmse


def test_verdicts_follow_the_targets():
    big = tables.regression_table(5000, seed=0)
    row = quality.Row(big, reference.Scores("rmse", hgb=10.0, linear=12.0, train_rows=4000, test_rows=500))
    assert row.verdict() == "no figure"
    row.network = 10.9
    assert row.verdict() == "met"
    row.network = 11.2
    assert row.verdict() == "missed: not within target of HGB"
    row.scores = reference.Scores("rmse", hgb=10.0, linear=10.5, train_rows=4000, test_rows=500)
    row.network = 10.8
    assert row.verdict() == "missed: worse than linear"
    cls = quality.Row(tables.binary_table(5000), reference.Scores("accuracy", 0.80, 0.75, 4000, 500), network=0.785)
    assert cls.verdict() == "met"
    cls.network = 0.77
    assert cls.verdict() == "missed: not within target of HGB"
    small = quality.Row(tables.binary_table(300), reference.Scores("accuracy", 0.80, 0.75, 240, 30), network=0.5)
    assert small.verdict() == "(< 5,000 rows)"
    note = quality.Row(tables.binary_table(300), reference.Scores("accuracy", 0.8, 0.75, 240, 30),
                       note="FAILED_PRECONDITION: column region is text")
    text = quality.render([note], "test")
    assert "| — (1) |" in text and "1. mixed-binary-300: FAILED_PRECONDITION: column region is text" in text
