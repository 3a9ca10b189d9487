"""One ticket, one trial: ask Optuna, train, log the model, tell Optuna.

Synchronous (it runs in a worker thread) and free of grpc, nats and protobuf: plain
records in and out (records.py, and the tuning service's), and the dataset, the MLflow
run and the events come in through `Ports` (a Protocol; adapters.TrialPorts is the
NATS and gRPC one)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import mlflow
import numpy as np
import optuna
import pandas as pd
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from services.common import mlflow_tags, packed_model
from services.tuning import space, store
from services.tuning.records import StudySpec, TrialEnd, TrialTicket
from services.tuning.worker import baseline, metrics, tabular_model
from services.tuning.worker.curves import CurveLog
from services.tuning.worker.datasets import DatasetCache
from services.tuning.worker.heartbeat import Heartbeat
from services.tuning.worker.records import DatasetVersion, TrialRun
from services.tuning.worker.training import (EpochEndPruning, EpochResult, TabularData, TrainResult, eval_chunks,
                                             resolve_device, train)

log = logging.getLogger(__name__)


class Ports(Protocol):
    def get_dataset(self, ref: str) -> DatasetVersion:
        """Raises NotFound for an unknown dataset."""

    def create_run(self, run: TrialRun) -> str:
        """The trial's MLflow run id; the same run again for the same (study, trial)."""

    # Events. A trial's start and epochs go out without waiting for their acks;
    # `trial_ended` waits for theirs and its own, so none is lost.
    def trial_started(self, study_id: str, trial: int, params: dict[str, str], mlflow_run_id: str,
                      worker: str) -> None: ...

    def epoch_completed(self, study_id: str, trial: int, mlflow_run_id: str, epoch: EpochResult) -> None: ...

    def trial_ended(self, end: TrialEnd) -> None:
        """Publishes a trial's end under its one event id (store.end_event_id)."""

    def study_stopped(self, study_id: str) -> bool: ...

    def shutting_down(self) -> bool:
        """This worker is stopping."""

    def crash_point(self, step: str) -> None:
        """Test hook (crash_points.py): exits the process at a named step when asked to."""


class Outcome:
    DONE = "done"  # ack: the ticket produced a finished trial
    DROPPED = "dropped"  # ack: the ticket is not needed (study stopped, finished, or surplus)
    ABANDONED = "abandoned"  # nak: this worker stops; another one runs the ticket


def _fmt_params(params: dict, dists: dict) -> dict[str, str]:
    shown = {k: params[k] for k in dists} if dists else {}
    for k in ("learning_rate", "dropout", "n_layers", "batch_size", "optimizer", "activation", "max_epochs"):
        shown.setdefault(k, params[k])
    shown["layer_units"] = ",".join(str(u) for u in params["layer_units"])
    return {k: space.format_value(v) for k, v in shown.items()}


class _RunWhileTraining:
    """A trial's MLflow run, created while the trial trains: creating it takes a few
    round trips (tracking, then MLflow), which training need not wait for.

    Events name the run, so the first epochs' events wait here until its id is known;
    then `trial_started` goes out and they follow it, in order."""

    def __init__(self, creating: Future, started: Callable[[str], None], epoch_done: Callable[[str, EpochResult], None]):
        self._creating = creating
        self._started = started
        self._epoch_done = epoch_done
        self._waiting: list[EpochResult] = []
        self.run_id = ""

    def epoch(self, e: EpochResult) -> None:
        self._waiting.append(e)
        if self.run_id or self._creating.done():
            self.announce()

    def announce(self) -> str:
        """Waits for the run (raising if it could not be created), then sends what waited."""
        if not self.run_id:
            run_id = self._creating.result()
            self._started(run_id)
            self.run_id = run_id
        for e in self._waiting:
            self._epoch_done(self.run_id, e)
        self._waiting.clear()
        return self.run_id


def _announced(run: _RunWhileTraining | None) -> str:
    """The run id of a trial that ended early, or '' where it has no run."""
    if run is None:
        return ""
    try:
        return run.announce()
    except Exception:  # noqa: BLE001 - the trial's end is reported all the same
        log.warning("the trial's MLflow run could not be created", exc_info=True)
        return ""


class TrialRunner:
    def __init__(self, storage: optuna.storages.BaseStorage, ports: Ports, cache: DatasetCache,
                 worker: str, mlflow_uri: str, patience_default: int = 5, *,
                 heartbeat_s: float = 5.0, grace_s: float = 30.0, curve_every_s: float = 1.0, device: str = "auto"):
        self.storage = storage
        # Resolved once, at the worker's start: `cuda` where there is none stops it here.
        self.device = resolve_device(device)
        self.ports = ports
        self.cache = cache
        self.worker = worker
        self.mlflow = mlflow.MlflowClient(mlflow_uri)
        self.mlflow_uri = mlflow_uri
        self.patience_default = patience_default
        self.heartbeat_s = heartbeat_s
        self.grace_s = grace_s
        self._beat: Heartbeat | None = None
        self.curve_every_s = curve_every_s
        # Creates each trial's MLflow run while the trial trains, notes its curves while
        # its model uploads.
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trial-run")
        # experiment id -> where its runs' artifact folders are (see `_artifacts`).
        self._artifact_roots: dict[str, str] = {}

    # -- the ticket ----------------------------------------------------------------

    def run(self, ticket: TrialTicket) -> str:
        storage = self.storage
        study_key = storage.get_study_id_from_name(ticket.study_id)
        attrs = storage.get_study_user_attrs(study_key)
        spec = store.spec_from_attrs(attrs)
        trials = storage.get_all_trials(study_key, deepcopy=False)
        lost = self._abandon_lost(ticket, study_key, trials)
        if lost is None:
            return Outcome.DROPPED  # its trial is alive on another worker (still beating)
        if lost:
            trials = storage.get_all_trials(study_key, deepcopy=False)
        mine = [t for t in trials if t.system_attrs.get(store.T_TICKET) == ticket.ticket_id]
        if any(t.state.is_finished() and not t.user_attrs.get(store.T_ABANDONED) for t in mine):
            return Outcome.DROPPED  # done before; only the ack was lost
        if any(t.user_attrs.get(store.T_RECLAIMED) for t in mine):
            return Outcome.DROPPED  # the tuning service reclaimed its trial and issued a replacement
        counted = store.counts(trials)
        if attrs.get(store.STATE) != store.RUNNING or self.ports.study_stopped(ticket.study_id):
            return Outcome.DROPPED
        if counted["finished"] + counted["running"] >= spec.n_trials or store.timed_out(spec, attrs):
            return Outcome.DROPPED
        if ticket.sequence == 0 and store.BASELINE not in attrs:
            self._baseline(ticket.study_id, study_key, attrs)
        study = optuna.load_study(
            study_name=ticket.study_id,
            storage=storage,
            sampler=space.make_sampler(spec, seed_offset=ticket.sequence),
            pruner=space.make_pruner(spec),
        )
        # Like study.ask(), but the trial carries its ticket from the first instant.
        trial = optuna.Trial(study, store.new_trial(storage, study_key, ticket=ticket.ticket_id,
                                                      sequence=ticket.sequence, worker=self.worker))
        self.ports.crash_point("after_ask")
        try:
            with Heartbeat(storage, trial._trial_id, self.heartbeat_s) as self._beat:
                return self._run_trial(study, trial, spec, attrs)
        except UpdateFinishedTrialError:
            log.warning("trial %s/%d was finished elsewhere; this worker lets it go", ticket.study_id, trial.number)
            return Outcome.DROPPED
        finally:
            self._beat = None

    def _baseline(self, study_id: str, study_key: int, attrs: dict) -> None:
        """Fits the study's linear baseline before its first trial and records it: an
        MLflow run in the study's experiment and the study's `baseline` attribute. A
        failure is recorded as the reason there is none; the trial runs all the same."""
        record: dict = {}
        try:
            version = self.ports.get_dataset(attrs[store.DATASET])
            fitted = baseline.fit(self.cache.prepared(version))
            record = {"model": fitted.model, "metrics": {k: v for k, v in fitted.metrics.items() if math.isfinite(v)}}
            record["run_id"] = self._baseline_run(study_id, attrs, fitted)
        except Exception as exc:  # noqa: BLE001 - a missing baseline must not cost the study a trial
            log.warning("study %s: the baseline could not be fitted", study_id, exc_info=True)
            record["error"] = f"{type(exc).__name__}: {exc}"[:500]
        self.storage.set_study_user_attr(study_key, store.BASELINE, record)

    def _baseline_run(self, study_id: str, attrs: dict, fitted: baseline.Baseline) -> str:
        """The baseline's MLflow run, found again if a first attempt created it."""
        from mlflow.entities import Metric, Param, RunTag  # noqa: PLC0415

        experiment = attrs.get(store.EXPERIMENT, "")
        if not experiment:
            return ""
        found = self.mlflow.search_runs(
            [experiment], f"tags.`{mlflow_tags.TAG_KIND}` = '{mlflow_tags.KIND_BASELINE}' and "
                          f"tags.`{mlflow_tags.TAG_STUDY}` = '{study_id}'", max_results=1)
        if found:
            return found[0].info.run_id
        run = self.mlflow.create_run(experiment, run_name=mlflow_tags.baseline_run_name(study_id), tags={
            mlflow_tags.TAG_KIND: mlflow_tags.KIND_BASELINE, mlflow_tags.TAG_STUDY: study_id,
            mlflow_tags.MLFLOW_PARENT: attrs.get(store.RUN, ""), mlflow_tags.TAG_DATASET: attrs[store.DATASET],
            mlflow_tags.TAG_STATE: "COMPLETE"})
        now = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
        self.mlflow.log_batch(run.info.run_id, metrics=[Metric(k, v, now, 0) for k, v in fitted.metrics.items()],
                              params=[Param("model", fitted.model)], tags=[RunTag(mlflow_tags.TAG_TASK, attrs.get(store.TASK, ""))])
        self.mlflow.set_terminated(run.info.run_id)
        return run.info.run_id

    def _abandon_lost(self, ticket: TrialTicket, study_key: int, trials) -> bool | None:
        """A redelivered ticket whose trial is still RUNNING. With no heartbeat for grace_s its
        worker is gone: the trial is finished from the end it saved, else abandoned (FAIL) and
        the ticket runs again; True. A trial still beating is alive elsewhere: None (this
        delivery is not needed; if that worker dies, the tuning service reclaims the trial)."""
        lost = [t for t in trials if t.state == TrialState.RUNNING and t.system_attrs.get(store.T_TICKET) == ticket.ticket_id]
        if not lost:
            return False
        stale = set(store.stale_trial_ids(self.storage, study_key, self.grace_s))
        if any(t._trial_id not in stale for t in lost):
            return None
        for t in lost:
            try:
                saved = store.saved_end(t)
                if saved is None:
                    reason = (f"worker {t.user_attrs.get(store.T_WORKER, '?')} was lost (no heartbeat for "
                              f"{self.grace_s:g}s); the ticket runs again")
                    self._finish_abandoned(t._trial_id, t.number, ticket.study_id, t.user_attrs.get(store.T_RUN, ""), reason)
                else:  # it died after its end was decided: that end stands
                    self.ports.trial_ended(saved)
                    self.storage.set_trial_state_values(t._trial_id, *store.end_state(saved))
            except UpdateFinishedTrialError:
                pass  # the tuning service reclaimed it meanwhile
        return True

    def _finish_abandoned(self, trial_id: int, number: int, study_id: str, run_id: str, reason: str) -> None:
        self.storage.set_trial_user_attr(trial_id, store.T_ABANDONED, True)
        self.storage.set_trial_user_attr(trial_id, store.T_REASON, reason)
        failed = TrialEnd("trial_failed", study_id, number, run_id, reason=reason)
        store.save_end(self.storage, trial_id, failed)
        self.ports.trial_ended(failed)
        self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        log.warning("trial %s/%d abandoned: %s", study_id, number, reason)

    def _end(self, study: optuna.Study, trial: optuna.Trial, end: TrialEnd) -> str:
        """Saves the trial's end on it, publishes it, then tells Optuna: whatever instant the
        worker dies at, the end reaches tracking at least once (see store.T_END)."""
        if end.reason:
            trial.set_user_attr(store.T_REASON, end.reason)
        store.save_end(self.storage, trial._trial_id, end)
        self.ports.trial_ended(end)
        self.ports.crash_point("after_end_published")
        state, values = store.end_state(end)
        told = study.tell(trial, values, state=state, skip_if_finished=True)
        self.ports.crash_point("after_tell")
        if told.state != state:
            log.warning("trial %s/%d was finished elsewhere as %s", study.study_name, trial.number, told.state.name)
            return Outcome.DROPPED
        return Outcome.DONE

    # -- the trial -------------------------------------------------------------------

    def _run_trial(self, study: optuna.Study, trial: optuna.Trial, spec: StudySpec, attrs: dict) -> str:
        study_id = study.study_name
        run: _RunWhileTraining | None = None
        curves = CurveLog(trial.storage, trial._trial_id, self._background, self.curve_every_s)
        try:
            dists = space.distributions(spec)
            params = space.suggest(trial, spec, dists)
            version = self.ports.get_dataset(attrs[store.DATASET])
            data = self.cache.prepared(version)
            shown = _fmt_params(params, dists)
            request = TrialRun(
                experiment_id=attrs.get(store.EXPERIMENT, ""),
                parent_run_id=attrs.get(store.RUN, ""),
                study_id=study_id,
                trial=trial.number,
                params=shown,
                tags={
                    mlflow_tags.TAG_WORKER: self.worker,
                    mlflow_tags.TAG_DATASET: attrs[store.DATASET],
                    mlflow_tags.TAG_TASK: "classification" if data.classification else "regression",
                    mlflow_tags.TAG_FEATURES: json.dumps(data.features),
                    mlflow_tags.TAG_INPUT_SCHEMA: json.dumps(input_schema(data)),
                },
                dataset=version,
            )

            def create_run() -> str:  # in the background, while the trial trains
                run_id = self.ports.create_run(request)
                trial.set_user_attr(store.T_RUN, run_id)
                self.ports.crash_point("after_run_created")
                return run_id

            def started(run_id: str) -> None:
                self.ports.trial_started(study_id, trial.number, shown, run_id, self.worker)

            def epoch_done(run_id: str, e: EpochResult) -> None:
                self.ports.epoch_completed(study_id, trial.number, run_id, e)

            run = _RunWhileTraining(self._background.submit(create_run), started, epoch_done)

            def on_epoch(e: EpochResult) -> None:
                curves.add(e)
                run.epoch(e)
                if e.epoch == 1:
                    self.ports.crash_point("mid_epoch")

            result, data = self._train(trial, spec, params, data, on_epoch)
            run_id = run.announce()
        except optuna.TrialPruned as pruned:
            run_id = _announced(run)
            curves.flush()
            epochs = len(curves.val_loss)
            best, metrics = curves.best_so_far()
            return self._end(study, trial, TrialEnd(
                "trial_pruned", study_id, trial.number, run_id, epochs_done=epochs, reason=str(pruned),
                metrics=metrics, best_epoch=best))
        except Exception as exc:  # noqa: BLE001 - a failed trial is a result, not a crash
            run_id = _announced(run)
            reason = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, UpdateFinishedTrialError):
                raise  # finished elsewhere: nothing of ours to report
            log.warning("trial %s/%d failed: %s", study_id, trial.number, reason, exc_info=True)
            curves.flush()
            best, metrics = curves.best_so_far()
            return self._end(study, trial, TrialEnd(
                "trial_failed", study_id, trial.number, run_id, reason=reason[:1000], metrics=metrics,
                best_epoch=best))

        if self._beat is not None and self._beat.taken_over.is_set():
            log.warning("trial %s/%d was finished elsewhere; stopped at epoch %d", study_id, trial.number, len(result.history) - 1)
            return Outcome.DROPPED
        if result.stopped_by_request:
            why = "worker shutting down" if self.ports.shutting_down() else "study stopped"
            curves.flush()
            self._finish_abandoned(trial._trial_id, trial.number, study_id, run_id, f"{why} at epoch {len(result.history) - 1}")
            return Outcome.ABANDONED if self.ports.shutting_down() else Outcome.DONE

        values = self._objective_values(spec, result)
        summary = self._final_metrics(result, data)
        # The curves go into the storage while the model uploads; both before the tell.
        stored = self._background.submit(self._note_results, trial, curves, summary)
        log_model(self.mlflow, run_id, result, data, self._artifacts(attrs.get(store.EXPERIMENT, ""), run_id))
        self.ports.crash_point("after_model_logged")
        stored.result()
        return self._end(study, trial, TrialEnd(
            "trial_completed", study_id, trial.number, run_id, values=tuple(values), metrics=summary,
            epochs_done=len(result.history), best_epoch=result.best_epoch))

    def _artifacts(self, experiment_id: str, run_id: str):
        """The run's artifact repository without a look-up of the run (one MLflow call a
        trial fewer): MLflow puts a run's artifacts at `<experiment root>/<run id>/artifacts`.
        The root is learnt from the first run of each experiment, whose artifact URI is
        looked up; where a URI does not follow that rule, every run's is looked up."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository  # noqa: PLC0415

        suffix = f"/{run_id}/artifacts"
        root = self._artifact_roots.get(experiment_id)
        if root is not None:
            uri = root + suffix
        else:
            uri = self.mlflow.get_run(run_id).info.artifact_uri
            if experiment_id and uri.endswith(suffix):
                if len(self._artifact_roots) > 1000:
                    self._artifact_roots.clear()
                self._artifact_roots[experiment_id] = uri[:-len(suffix)]
        return get_artifact_repository(uri, tracking_uri=self.mlflow_uri)

    @staticmethod
    def _note_results(trial: optuna.Trial, curves: CurveLog, summary: dict[str, float]) -> None:
        trial.set_user_attr(store.T_METRICS, {k: v for k, v in summary.items() if math.isfinite(v)})
        curves.flush()

    def _train(self, trial: optuna.Trial, spec: StudySpec, params: dict, data: TabularData,
               on_epoch: Callable[[EpochResult], None]) -> tuple[TrainResult, TabularData]:
        """The trained model and the data it was fitted on. With k folds, fold 1 trains
        as a plain trial would (its epochs reported, pruned on its curve); the others
        train after it, silently; the objective is their mean best validation loss."""
        study_id = trial.study.study_name
        objectives = space.objectives(spec)
        callbacks = []
        monitor = objectives[0][0]
        if len(objectives) == 1 and space.pruner_of(spec) != "none" and monitor in ("val_loss", "val_accuracy"):
            callbacks.append(EpochEndPruning(trial, monitor=monitor))
        folds = data.folds(spec.cv_folds) if spec.cv_folds >= 2 else [data]
        stop = lambda: (self.ports.shutting_down() or self.ports.study_stopped(study_id)  # noqa: E731
                        or (self._beat is not None and self._beat.taken_over.is_set()))
        seed = (spec.seed or 42) + trial.number
        patience = spec.early_stopping_patience or self.patience_default
        result = train(folds[0], params, seed=seed, patience=patience, callbacks=callbacks, on_epoch=on_epoch,
                       should_stop=stop, device=self.device)
        if len(folds) > 1 and not result.stopped_by_request:
            others = [train(fold, params, seed=seed, patience=patience, should_stop=stop, device=self.device)
                      for fold in folds[1:]]
            result.cv_val_losses = [result.best_val_loss, *(r.best_val_loss for r in others)]
            result.cv_val_accuracies = [result.val_accuracy, *(r.val_accuracy for r in others)]
            result.stopped_by_request = any(r.stopped_by_request for r in others)
        return result, folds[0]

    @staticmethod
    def _objective_values(spec: StudySpec, result: TrainResult) -> list[float]:
        best = result.history[result.best_epoch]
        by_metric = {
            "val_loss": result.objective_val_loss,
            "val_accuracy": result.objective_val_accuracy,
            "train_loss": best.train_loss,
            "duration_s": result.duration_s,
            "n_params": float(result.n_params),
        }
        values = [by_metric[m] for m, _ in space.objectives(spec)]
        if not all(math.isfinite(v) for v in values):
            raise FloatingPointError(f"objective is not a finite number: {values}")
        return values

    def _final_metrics(self, result: TrainResult, data: TabularData) -> dict[str, float]:
        """The saved epoch's quality on every split, in the target's units (`val/rmse`,
        `test/accuracy`, ...), and its losses (`train/loss`, `val/loss`: what Optuna got).
        The objective never reads the test split; its numbers are recorded for the user."""
        best = result.history[result.best_epoch]
        return {
            "val/loss": result.best_val_loss,
            "train/loss": best.train_loss,
            "best_epoch": float(result.best_epoch),
            "duration_s": result.duration_s,
            "n_params": float(result.n_params),
            **split_metrics(result.architecture, result.state_dict, data),
            **cv_metrics(result),
        }


def cv_metrics(result: TrainResult) -> dict[str, float]:
    if not result.cv_val_losses:
        return {}
    out = {"cv/mean_val_loss": result.objective_val_loss}
    for i, loss in enumerate(result.cv_val_losses):
        out[f"cv/fold_{i + 1}/val_loss"] = loss
    return out


def split_metrics(architecture: dict, state_dict: dict, data: TabularData) -> dict[str, float]:
    """Every split's metrics for a network, in the target's units."""
    net = tabular_model.TabularNet(**architecture)
    net.load_state_dict(state_dict)
    net.eval()

    def outputs(split: str) -> np.ndarray:
        x_num, x_cat, y = data.split(split)
        with torch.no_grad():
            return np.concatenate([net(x_num[rows], x_cat[rows]).numpy() for rows in eval_chunks(len(y))])

    return metrics.scores(outputs, data)


def log_model(client: mlflow.MlflowClient, run_id: str, result: TrainResult, data: TabularData,
              repository=None) -> None:
    """The trial's model as ONE artifact, `model/kubetune-model.pt` (packed_model.py): the
    weights, the preprocessing and architecture, the signature naming each input column
    and its type, and the pip requirements. One upload where a pyfunc folder took ~7;
    the registry makes the full pyfunc of it when the run is registered. `repository`:
    the run's artifact repository where the caller knows it (else MLflow looks the run up)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = packed_model.pack(
            Path(tmp) / packed_model.PACKED_FILE, result.state_dict,
            {**data.spec(), "architecture": result.architecture}, model_signature(data).to_dict(),
            # Explicit: inferring requirements costs seconds per model (DESIGN.md).
            [f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}",
             f"pandas=={pd.__version__}", f"numpy=={np.__version__}"])
        if repository is not None:
            repository.log_artifact(str(path), mlflow_tags.MODEL_ARTIFACT)
        else:
            client.log_artifact(run_id, str(path), mlflow_tags.MODEL_ARTIFACT)


def input_schema(data: TabularData) -> list[dict[str, str]]:
    """The model's inputs as the `kubetune.input_schema` tag lists them."""
    return [{"name": c["name"], "kind": c["kind"]} for c in data.prep.columns]


def model_signature(data: TabularData):
    """Numbers (numeric, boolean) as doubles, categories as strings; the outputs as
    `prediction` and, for classification, a probability per class."""
    from mlflow.models import ModelSignature  # noqa: PLC0415
    from mlflow.types import ColSpec, Schema  # noqa: PLC0415

    inputs = Schema([ColSpec("string" if c["kind"] == tabular_model.CATEGORICAL else "double", c["name"])
                     for c in data.prep.columns])
    if data.classification:
        outputs = Schema([ColSpec("string", "prediction"),
                          *(ColSpec("double", f"proba_{label}") for label in data.classes)])
    else:
        outputs = Schema([ColSpec("double", "prediction")])
    return ModelSignature(inputs=inputs, outputs=outputs)
