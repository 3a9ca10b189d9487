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
TAG_REASON = "kubetune.reason"  # why a trial failed or was pruned
TAG_MODEL_URI = "kubetune.model_uri"  # where the trial's model was logged
MLFLOW_PARENT = "mlflow.parentRunId"
MLFLOW_RUN_NAME = "mlflow.runName"

KIND_STUDY = "study"
KIND_TRIAL = "trial"

# The artifact path of a trial's model in its run: `runs:/<run_id>/model`.
MODEL_ARTIFACT = "model"

# Per-epoch metrics (step = epoch, 0-based) and the ones logged when a trial ends.
EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy")
FINAL_METRICS = ("best_val_loss", "best_epoch", "test_loss", "rmse", "accuracy")


def experiment_name(dataset_name: str) -> str:
    return EXPERIMENT_PREFIX + dataset_name


def trial_run_name(study_id: str, trial: int) -> str:
    return f"{study_id}-trial-{trial}"


def model_uri(run_id: str) -> str:
    return f"runs:/{run_id}/{MODEL_ARTIFACT}"
