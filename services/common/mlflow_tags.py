"""How kubetune names things in MLflow. Workers, tracking and registry all read
and write runs by these names, so they live in one place."""

from __future__ import annotations

EXPERIMENT_PREFIX = "kubetune/"

# Run tags.
TAG_KIND = "kubetune.kind"  # "study" (a study's parent run) or "trial"
TAG_STUDY = "kubetune.study_id"
TAG_TRIAL = "kubetune.trial"  # the Optuna trial number
TAG_STATE = "kubetune.state"  # RUNNING, COMPLETE, PRUNED, FAIL
TAG_WORKER = "kubetune.worker"
TAG_DATASET = "kubetune.dataset_version"  # name@version
TAG_TASK = "kubetune.task_kind"  # regression or classification
TAG_FEATURES = "kubetune.features"  # JSON list of feature column names, in order
# JSON list of {"name", "kind"}: each input column and how the model reads it
# ("numeric", "categorical", "boolean").
TAG_INPUT_SCHEMA = "kubetune.input_schema"
TAG_REASON = "kubetune.reason"  # why a trial failed or was pruned
TAG_MODEL_URI = "kubetune.model_uri"  # where the trial's model was logged
# Set on the one run a study or trial keeps, once no other replica can create a rival
# (services/tracking/tracking.py, `one_run`).
TAG_SETTLED = "kubetune.settled"
MLFLOW_PARENT = "mlflow.parentRunId"
MLFLOW_RUN_NAME = "mlflow.runName"

KIND_STUDY = "study"
KIND_TRIAL = "trial"
KIND_BASELINE = "baseline"  # a study's linear baseline, fitted before its first trial

# The artifact path of a trial's model in its run: `runs:/<run_id>/model`.
MODEL_ARTIFACT = "model"

# Per-epoch metrics (step = epoch, 0-based): the learning curves.
EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy")
# When a trial ends, the saved (best-validation) epoch's numbers, per split:
# `train/loss`, `val/loss` (the value Optuna got), `val/rmse`, `test/accuracy`, ...
# Losses are on the standardised target (regression) or cross-entropy (classification);
# the other metrics are in the target's units.
# A summary of a run shows the saved epoch's value under the curve's name: a trial's
# `val_loss` is the model's, not its last epoch's.
SUMMARY_OF = {"train_loss": "train/loss", "val_loss": "val/loss", "val_accuracy": "val/accuracy"}


def summary_metrics(latest: dict[str, float]) -> dict[str, float]:
    """A run's latest metric values, with each curve's value replaced by the saved
    epoch's where the run recorded one."""
    out = dict(latest)
    for curve, summary in SUMMARY_OF.items():
        if summary in latest:
            out[curve] = latest[summary]
    return out


def experiment_name(dataset_name: str) -> str:
    return EXPERIMENT_PREFIX + dataset_name


def trial_run_name(study_id: str, trial: int) -> str:
    return f"{study_id}-trial-{trial}"


def baseline_run_name(study_id: str) -> str:
    return f"{study_id}-baseline"


def model_uri(run_id: str) -> str:
    return f"runs:/{run_id}/{MODEL_ARTIFACT}"
