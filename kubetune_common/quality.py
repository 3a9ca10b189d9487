"""One line that says how good a study's model is: the best trial's test metric beside
the linear baseline's, as the CLI and the web UI both print it."""

from __future__ import annotations

import math

# The metric a headline leads with, per task, and how it reads.
LEAD = {"regression": ("rmse", "RMSE", "r2", "R²"), "classification": ("accuracy", "accuracy", "f1_macro", "macro F1")}
# The validation split below which selecting on it is noisy enough to say so.
SMALL_VALIDATION = 100


def _number(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.4g}"


def headline(task_kind: str, best: dict[str, float], baseline: dict[str, float], baseline_model: str = "",
             val_rows: int = 0, cv_folds: int = 0) -> str:
    """E.g. `best trial: test RMSE 52.1 (R² 0.48; validation 48.3) · baseline (ridge regression): test RMSE 55.8 (R² 0.42)`."""
    key, label, second, second_label = LEAD.get(task_kind, LEAD["regression"])
    parts = []
    if f"test/{key}" in best:
        parts.append(f"best trial: test {label} {_number(best.get(f'test/{key}'))} "
                     f"({second_label} {_number(best.get(f'test/{second}'))}; validation {_number(best.get(f'val/{key}'))})")
    if f"test/{key}" in baseline:
        name = f" ({baseline_model})" if baseline_model else ""
        parts.append(f"baseline{name}: test {label} {_number(baseline.get(f'test/{key}'))} "
                     f"({second_label} {_number(baseline.get(f'test/{second}'))})")
    if parts and 0 < val_rows < SMALL_VALIDATION and cv_folds < 2:
        parts.append(f"the validation split has {val_rows} rows: selecting on it is noisy, cross-validation "
                     "(cv folds) selects more reliably")
    return " · ".join(parts)


def beats_baseline(task_kind: str, best: dict[str, float], baseline: dict[str, float]) -> bool | None:
    """Whether the best trial is better than the baseline on test; None when either is unknown."""
    key = LEAD.get(task_kind, LEAD["regression"])[0]
    a, b = best.get(f"test/{key}"), baseline.get(f"test/{key}")
    if a is None or b is None:
        return None
    return a < b if key == "rmse" else a > b
