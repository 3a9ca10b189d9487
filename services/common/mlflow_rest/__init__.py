"""A small client of MLflow's REST API: what the tracking and registry stores need,
and nothing else. `transport` (session, timeouts, retries, auth), `entities` (plain
dataclasses and their JSON), `errors` (MlflowError and the one policy that turns it
into domain errors), `client` (one method per endpoint).

Why not MLflow's own client: the query services must start fast and stay small.
`import mlflow` with the full package pulls in pandas, flask and the GenAI stack
(~165 MB, 1-3 s). mlflow-skinny, MLflow's client without them, still costs, measured
once by `python -m bench.footprint --mlflow-import` (mlflow-skinny 3.17.2 alone in a
fresh venv; medians of 7 fresh processes in rotating order, peak = VmHWM, on the shared
2-core machine at load ~11, so times are inflated alike): `import mlflow` and an
MlflowClient 2.41 s and 77 MB peak, against 0.36 s and 27 MB for `requests`, which is
all this client adds (the bare interpreter: 9 MB). 2 s more at every start and 50 MB
more per replica, for a few dozen endpoints: this client stays."""

from services.common.mlflow_rest.client import MlflowRest
from services.common.mlflow_rest.entities import (
    DatasetInput, Experiment, FileInfo, LoggedModel, Metric, ModelVersion, Page, RegisteredModel, Run,
)
from services.common.mlflow_rest.errors import CONNECTION_ERROR, TIMEOUT, MlflowError, domain_error, mlflow_calls

__all__ = [
    "CONNECTION_ERROR", "TIMEOUT", "DatasetInput", "Experiment", "FileInfo", "LoggedModel", "Metric", "MlflowError",
    "MlflowRest", "ModelVersion", "Page", "RegisteredModel", "Run", "domain_error", "mlflow_calls",
]
