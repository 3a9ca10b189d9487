"""Study helpers for tests and benchmarks: specs and waiting on a study through the gateway."""

from __future__ import annotations

import time

from kubetune.tuning.v1 import tuning_pb2 as pb


def param_float(name, low, high, log=False):
    return pb.ParamSpec(name=name, float_range=pb.FloatRange(low=low, high=high, log=log))


def param_int(name, low, high, log=False):
    return pb.ParamSpec(name=name, int_range=pb.IntRange(low=low, high=high, log=log))


def param_choice(name, *choices):
    return pb.ParamSpec(name=name, categorical=pb.Categorical(choices=list(choices)))


def small_spec(trials=3, epochs=3, parallel=2, dataset="sample", **kw) -> pb.StudySpec:
    return pb.StudySpec(
        dataset=dataset, n_trials=trials, max_parallel=parallel, max_epochs=epochs,
        search_space=[param_float("learning_rate", 1e-4, 1e-1, log=True), param_int("n_layers", 1, 3),
                      param_int("units", 4, 64, log=True), param_choice("batch_size", "16", "32")],
        **kw,
    )


def finished(study: pb.Study) -> int:
    return study.counts.complete + study.counts.pruned + study.counts.fail


def wait_for_study(gateway, study_id: str, until, timeout: float = 180, every: float = 0.2) -> pb.Study:
    deadline = time.monotonic() + timeout
    while True:
        study = gateway.GetStudy(pb.GetStudyRequest(study_id=study_id)).study
        if until(study):
            return study
        if time.monotonic() > deadline:
            raise TimeoutError(f"study {study_id} did not get there in {timeout}s: state {study.state}, {study.counts}")
        time.sleep(every)


def completed(study: pb.Study) -> bool:
    return study.state == pb.STUDY_STATE_COMPLETED


def run_study(gateway, spec: pb.StudySpec, timeout: float = 180) -> pb.Study:
    study = gateway.CreateStudy(pb.CreateStudyRequest(spec=spec)).study
    return wait_for_study(gateway, study.id, completed, timeout)


def wait_for_mlflow(gateway, study: pb.Study, timeout: float = 60) -> None:
    """Until the tracking service has written the study's end to MLflow. Trial and study
    events reach MLflow after the study completes (they are written in batches, and a slow
    tracking service delays them), in order: once the study's run is finished, every trial
    event before it has been written too."""
    from kubetune.tracking.v1 import tracking_pb2

    deadline = time.monotonic() + timeout
    while gateway.GetRun(tracking_pb2.GetRunRequest(run_id=study.mlflow_run_id)).run.status != tracking_pb2.RUN_STATUS_FINISHED:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the MLflow run of study {study.id} did not finish in {timeout}s")
        time.sleep(0.1)
