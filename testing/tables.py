"""Tables of known structure for issue 13's tests and bench/quality.py: mixed-type tables
(numeric, categorical, boolean, an id, an ISO date, missing values) for regression,
binary and multi-class, and scikit-learn's bundled numeric datasets as tables.

The generated tables share one truth, fixed here and not by the seed, so a 300-row and
a 50,000-row table differ only in how much of it they show. The seed draws the rows.
Every feature the target depends on is in `Structure.informative`; the others are drawn
independently of the target. Targets are never missing: the platform drops such rows,
and the bench must split exactly the rows the platform stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

TASKS = ("regression", "binary", "multiclass")

# The truth: categories, their effects and the class weights. Changing any of these
# changes every table; tests pin what they imply, not these numbers.
REGIONS = ("north", "south", "east", "west", "central")
REGION_SHARE = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
REGION_EFFECT = np.array([-1.0, 0.6, 1.3, -0.4, 0.1])
PLANS = ("basic", "plus", "pro")
PLAN_SHARE = np.array([0.5, 0.3, 0.2])
PLAN_SLOPE = np.array([0.0, 1.5, 3.0])  # effect of tenure per plan: an interaction
PRODUCTS = tuple(f"p{i:02d}" for i in range(40))
COLOURS = ("red", "green", "blue", "black", "white", "grey")
MEMBER_SHARE = 0.35
_truth = np.random.default_rng(13)
PRODUCT_EFFECT = _truth.normal(0.0, 0.8, len(PRODUCTS))
COMPONENTS = ("age", "sin(2 score)", "log income", "plan x tenure", "region", "product", "is_member")
COMPONENT_WEIGHT = np.array([1.0, 1.5, 0.8, 1.0, 1.0, 1.0, 1.0])
# Multi-class: each class scores the components with its own weights (rows: classes).
CLASS_WEIGHTS = _truth.normal(0.0, 1.0, (5, len(COMPONENTS)))
TIERS = ("bronze", "silver", "gold", "platinum", "diamond")

NUMERIC = ("age", "income", "tenure_months", "score", "noise")
CATEGORICAL = ("region", "plan", "product", "colour")
BOOLEAN = ("is_member",)
ID_COLUMN = "customer_id"
DATE_COLUMN = "signup_date"
INFORMATIVE = ("age", "income", "tenure_months", "score", "region", "plan", "product", "is_member")
UNINFORMATIVE = ("noise", "colour", DATE_COLUMN)
MISSING_COLUMNS = NUMERIC + CATEGORICAL

# Regression target: spend = SPEND_BASE + SPEND_SCALE * (f + N(0, 1)).
SPEND_BASE, SPEND_SCALE = 50.0, 5.0
# Binary: P(churned) = sigmoid(BINARY_SCALE (f - F_MEAN)), F_MEAN f's expectation under the
# row distribution, so the classes come out near even. The scales keep label noise low
# enough that the non-linear terms separate a flexible model from a linear one.
BINARY_SCALE = 2.0
CLASS_SCALE = 3.0
F_MEAN = float(
    COMPONENT_WEIGHT[3] * (PLAN_SHARE @ PLAN_SLOPE) * 0.5
    + COMPONENT_WEIGHT[4] * (REGION_SHARE @ REGION_EFFECT)
    + COMPONENT_WEIGHT[5] * PRODUCT_EFFECT.mean()
    + COMPONENT_WEIGHT[6] * MEMBER_SHARE
)


@dataclass(frozen=True)
class Structure:
    """What is true of a table, for tests to check a platform against."""

    task: str  # one of TASKS
    numeric: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    boolean: tuple[str, ...] = ()
    id_column: str = ""
    date_column: str = ""
    # Features the target depends on, and features drawn independently of it.
    informative: tuple[str, ...] = ()
    uninformative: tuple[str, ...] = ()
    missing_columns: tuple[str, ...] = ()
    missing_rate: float = 0.0  # exactly round(rate * rows) values missing per missing column
    classes: tuple[str, ...] = ()  # classification labels, sorted (the platform's class order)
    noise_sd: float = 0.0  # regression: sd of the noise, the least RMSE with every value present
    formula: str = ""

    @property
    def classification(self) -> bool:
        return self.task != "regression"

    @property
    def features(self) -> tuple[str, ...]:
        """The columns a model may learn from (the id excluded, the raw date included)."""
        return self.numeric + self.categorical + self.boolean + ((self.date_column,) if self.date_column else ())


@dataclass(frozen=True)
class Table:
    name: str
    frame: pd.DataFrame
    target: str
    structure: Structure

    @property
    def rows(self) -> int:
        return len(self.frame)


def _components(rows: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The raw feature columns and the matrix of target components (rows x COMPONENTS)."""
    age = rng.uniform(18, 80, rows).round()
    income = np.exp(rng.normal(10.5, 0.5, rows)).round(2)
    tenure = rng.integers(0, 121, rows).astype(np.float64)
    score = rng.normal(0.0, 1.0, rows).round(4)
    noise = rng.normal(0.0, 1.0, rows).round(4)
    region = rng.choice(len(REGIONS), rows, p=REGION_SHARE)
    plan = rng.choice(len(PLANS), rows, p=PLAN_SHARE)
    product = rng.integers(0, len(PRODUCTS), rows)
    colour = rng.integers(0, len(COLOURS), rows)
    member = rng.random(rows) < MEMBER_SHARE
    days = rng.integers(0, 4 * 365 + 1, rows)
    ids = rng.permutation(rows)
    columns = {
        ID_COLUMN: np.array([f"cust-{i:06d}" for i in ids], dtype=object),
        DATE_COLUMN: (np.datetime64("2020-01-01") + days).astype(str).astype(object),
        "age": age,
        "income": income,
        "tenure_months": tenure,
        "score": score,
        "noise": noise,
        "region": np.array(REGIONS, dtype=object)[region],
        "plan": np.array(PLANS, dtype=object)[plan],
        "product": np.array(PRODUCTS, dtype=object)[product],
        "colour": np.array(COLOURS, dtype=object)[colour],
        "is_member": member,
    }
    parts = np.column_stack([
        (age - 49.0) / 18.0,
        np.sin(2.0 * score),
        (np.log(income) - 10.5) / 0.5,
        PLAN_SLOPE[plan] * tenure / 120.0,
        REGION_EFFECT[region],
        PRODUCT_EFFECT[product],
        member.astype(np.float64),
    ])
    return columns, parts * COMPONENT_WEIGHT


def _punch_holes(columns: dict[str, np.ndarray], rate: float, rng: np.random.Generator) -> None:
    """Exactly round(rate * rows) missing values in each missing column, at random rows;
    after the target is drawn, so a hidden value still shaped the target."""
    rows = len(columns[ID_COLUMN])
    count = int(round(rate * rows))
    for name in MISSING_COLUMNS:
        where = rng.choice(rows, count, replace=False)
        values = columns[name].copy()
        values[where] = None if values.dtype == object else np.nan
        columns[name] = values


def _frame(columns: dict[str, np.ndarray], target: str, y: np.ndarray) -> pd.DataFrame:
    order = [ID_COLUMN, DATE_COLUMN, "age", "region", "income", "plan", "tenure_months", "product",
             "score", "is_member", "colour", "noise"]
    frame = pd.DataFrame({name: columns[name] for name in order})
    frame[target] = y
    return frame


def _structure(task: str, missing: float, formula: str, classes=(), noise_sd: float = 0.0) -> Structure:
    return Structure(
        task=task, numeric=NUMERIC, categorical=CATEGORICAL, boolean=BOOLEAN, id_column=ID_COLUMN,
        date_column=DATE_COLUMN, informative=INFORMATIVE, uninformative=UNINFORMATIVE,
        missing_columns=MISSING_COLUMNS, missing_rate=missing, classes=tuple(sorted(classes)),
        noise_sd=noise_sd, formula=formula,
    )


def _check(rows: int, missing: float) -> None:
    if rows < 50:
        raise ValueError(f"rows must be at least 50, got {rows}")
    if not 0.0 <= missing < 0.5:
        raise ValueError(f"missing must be in [0, 0.5), got {missing}")


F_TEXT = ("f = 1.0 (age-49)/18 + 1.5 sin(2 score) + 0.8 (ln income - 10.5)/0.5 "
          "+ plan_slope[plan] tenure_months/120 + region_effect[region] + product_effect[product] + is_member")


def regression_table(rows: int = 300, seed: int = 0, missing: float = 0.08) -> Table:
    """Target `spend` (float): SPEND_BASE + SPEND_SCALE * (f + N(0, 1))."""
    _check(rows, missing)
    rng = np.random.default_rng(seed)
    columns, parts = _components(rows, rng)
    y = SPEND_BASE + SPEND_SCALE * (parts.sum(axis=1) + rng.normal(0.0, 1.0, rows))
    _punch_holes(columns, missing, rng)
    formula = f"spend = {SPEND_BASE:g} + {SPEND_SCALE:g} (f + N(0,1)); {F_TEXT}"
    return Table(f"mixed-regression-{rows}", _frame(columns, "spend", y.round(3)), "spend",
                 _structure("regression", missing, formula, noise_sd=SPEND_SCALE))


def binary_table(rows: int = 300, seed: int = 0, missing: float = 0.08) -> Table:
    """Target `outcome` ("churned" / "stayed"): P(churned) = sigmoid(2 (f - E f))."""
    _check(rows, missing)
    rng = np.random.default_rng(seed)
    columns, parts = _components(rows, rng)
    p = 1.0 / (1.0 + np.exp(-BINARY_SCALE * (parts.sum(axis=1) - F_MEAN)))
    y = np.where(rng.random(rows) < p, "churned", "stayed").astype(object)
    _punch_holes(columns, missing, rng)
    formula = f"P(outcome = churned) = sigmoid({BINARY_SCALE:g} (f - {F_MEAN:.3f})); {F_TEXT}"
    return Table(f"mixed-binary-{rows}", _frame(columns, "outcome", y), "outcome",
                 _structure("binary", missing, formula, classes=("churned", "stayed")))


def multiclass_table(rows: int = 300, seed: int = 0, missing: float = 0.08, classes: int = 4) -> Table:
    """Target `tier` (3-5 labels): drawn from softmax(3 W_class . components)."""
    _check(rows, missing)
    if not 3 <= classes <= len(TIERS):
        raise ValueError(f"classes must be 3 to {len(TIERS)}, got {classes}")
    rng = np.random.default_rng(seed)
    columns, parts = _components(rows, rng)
    # Standardised components, so no single wide one decides the class alone.
    scaled = parts / np.where(COMPONENT_WEIGHT == 0, 1.0, COMPONENT_WEIGHT)
    logits = CLASS_SCALE * scaled @ CLASS_WEIGHTS[:classes].T
    y = np.array(TIERS, dtype=object)[np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)]
    _punch_holes(columns, missing, rng)
    formula = (f"tier ~ softmax({CLASS_SCALE:g} W c) over {classes} tiers, W fixed (CLASS_WEIGHTS), "
               f"c = the unweighted components of f; {F_TEXT}")
    return Table(f"mixed-multiclass-{rows}", _frame(columns, "tier", y), "tier",
                 _structure("multiclass", missing, formula, classes=TIERS[:classes]))


def generated_tables(rows: int = 300, seed: int = 0, missing: float = 0.08) -> list[Table]:
    """One table per task, all at `rows`."""
    return [regression_table(rows, seed, missing), binary_table(rows, seed, missing),
            multiclass_table(rows, seed, missing)]


def sklearn_tables() -> list[Table]:
    """scikit-learn's bundled numeric datasets (no download): diabetes (regression),
    breast_cancer (binary) and wine (3 classes); class targets as their text labels."""
    from sklearn import datasets

    out = []
    diabetes = datasets.load_diabetes(as_frame=True, scaled=False)
    frame = diabetes.frame.rename(columns={"target": "progression"})
    out.append(Table("sklearn-diabetes", frame, "progression", Structure(
        task="regression", numeric=tuple(diabetes.feature_names),
        formula="scikit-learn's diabetes data (Efron et al. 2004): disease progression after one year")))
    for name, loader, target, task in (("breast_cancer", datasets.load_breast_cancer, "diagnosis", "binary"),
                                       ("wine", datasets.load_wine, "cultivar", "multiclass")):
        bunch = loader(as_frame=True)
        frame = bunch.data.copy()
        labels = np.asarray(bunch.target_names, dtype=object)
        frame[target] = labels[bunch.target.to_numpy()]
        out.append(Table(f"sklearn-{name.replace('_', '-')}", frame, target, Structure(
            task=task, numeric=tuple(bunch.feature_names), classes=tuple(sorted(labels)),
            formula=f"scikit-learn's {name} data")))
    return out


def write_table(table: Table, folder: Path) -> dict[str, Path]:
    """The table as `<name>.csv` (header row, no index; missing values empty) and as
    `<name>.parquet` (text columns as strings with nulls, numbers as float64)."""
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / f"{table.name}.csv"
    parquet = folder / f"{table.name}.parquet"
    table.frame.to_csv(csv, index=False)
    table.frame.to_parquet(parquet, index=False, engine="pyarrow")
    return {"csv": csv, "parquet": parquet}
