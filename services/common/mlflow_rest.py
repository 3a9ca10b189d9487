"""A small client of MLflow's REST API (`/api/2.0/mlflow/...`): what the tracking and
registry stores need, and nothing else.

Why not `mlflow.MlflowClient`: `import mlflow` alone costs ~165 MB and 1-3 s (it pulls
in pandas, fastapi, the GenAI stack...), which the query services cannot afford. This
client is `requests` and `json`: one pooled session per store, explicit timeouts, and
a few retries with backoff on connection errors and 5xx answers (never on 4xx).

It returns plain dataclasses, never MLflow entities. Errors leave it as `MlflowError`,
carrying MLflow's `error_code` (RESOURCE_DOES_NOT_EXIST, INVALID_PARAMETER_VALUE, ...)
or CONNECTION_ERROR / TIMEOUT; each store turns those into domain errors. Only the
stores use it: nothing above a store knows the REST API's shape.

Auth and TLS follow MLflow's own environment variables: MLFLOW_TRACKING_TOKEN (bearer),
MLFLOW_TRACKING_USERNAME/PASSWORD (basic), MLFLOW_TRACKING_INSECURE_TLS,
MLFLOW_TRACKING_SERVER_CERT_PATH, MLFLOW_TRACKING_CLIENT_CERT_PATH."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from services.common.errors import FailedPrecondition, InvalidArgument, KubetuneError, NotFound, Unavailable

log = logging.getLogger(__name__)

API = "/api/2.0/mlflow/"
# Error codes of our own, beside MLflow's.
CONNECTION_ERROR = "CONNECTION_ERROR"
TIMEOUT = "TIMEOUT"
NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"})
ALREADY_EXISTS_CODES = frozenset({"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"})
INVALID_CODES = frozenset({"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE"})
# Codes that say the server (or the way to it) failed, not the request.
# ENDPOINT_NOT_FOUND: the URI leads somewhere that is not an MLflow server.
TRANSIENT_CODES = frozenset({"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED",
                             "ENDPOINT_NOT_FOUND", CONNECTION_ERROR, TIMEOUT})
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_STATUS_CODE = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "ENDPOINT_NOT_FOUND", 429: "REQUEST_LIMIT_EXCEEDED", 503: "TEMPORARILY_UNAVAILABLE"}


class MlflowError(Exception):
    """An MLflow call that failed: MLflow's error code and message, or a transport failure."""

    def __init__(self, error_code: str, message: str, http_status: int | None = None):
        super().__init__(f"{error_code}: {message}")
        self.error_code = error_code
        self.message = message
        self.http_status = http_status

    @property
    def not_found(self) -> bool:
        return self.error_code in NOT_FOUND_CODES

    @property
    def already_exists(self) -> bool:
        return self.error_code in ALREADY_EXISTS_CODES

    @property
    def transient(self) -> bool:
        """The server, the network or the configuration failed (worth a later retry),
        not the request."""
        return self.error_code in TRANSIENT_CODES or (self.http_status or 0) >= 500


def domain_error(exc: Exception, server: str = "MLflow tracking server") -> KubetuneError:
    """MLflow's errors as the domain's, for every store that talks to MLflow: a refusal
    of the request is the caller's to fix; anything else is worth a retry later."""
    if isinstance(exc, KubetuneError):
        return exc
    if isinstance(exc, MlflowError) and not exc.transient:
        if exc.not_found:
            return NotFound(exc.message)
        if exc.already_exists:
            return FailedPrecondition(exc.message)
        # INVALID_PARAMETER_VALUE, BAD_REQUEST, INVALID_STATE and any other refusal.
        return InvalidArgument(exc.message)
    return Unavailable(f"{server}: {exc}")


def mlflow_calls(method=None, *, server: str = "MLflow tracking server"):
    """Decorates a store method (or every public method of a store class) so that
    MLflow's exceptions leave it as domain errors."""

    def wrap(fn):
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - MLflow's errors and any other failure alike
                raise domain_error(exc, server) from exc

        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        return wrapper

    def apply(target):
        if isinstance(target, type):
            for attr, fn in list(vars(target).items()):
                if not attr.startswith("_") and callable(fn):
                    setattr(target, attr, wrap(fn))
            return target
        return wrap(target)

    return apply(method) if method is not None else apply


# --- what MLflow answers, as plain data ---------------------------------------------
class Page(list):
    """One page of results; `token` asks for the next one, None on the last page."""

    def __init__(self, items: Iterable = (), token: str | None = None):
        super().__init__(items)
        self.token = token or None


@dataclass
class Experiment:
    experiment_id: str
    name: str
    lifecycle_stage: str = "active"
    creation_time: int = 0
    last_update_time: int = 0
    artifact_location: str = ""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Metric:
    key: str
    value: float
    timestamp: int
    step: int = 0


@dataclass
class DatasetInput:
    name: str
    digest: str
    source_type: str
    source: str
    schema: str | None = None
    profile: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Run:
    run_id: str
    experiment_id: str
    run_name: str = ""
    status: str = ""
    start_time: int | None = None
    end_time: int | None = None
    lifecycle_stage: str = "active"
    artifact_uri: str = ""
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # latest value of each
    tags: dict[str, str] = field(default_factory=dict)
    datasets: list[DatasetInput] = field(default_factory=list)
    model_outputs: list[str] = field(default_factory=list)  # logged model ids


@dataclass
class FileInfo:
    path: str
    is_dir: bool = False
    file_size: int | None = None


@dataclass
class LoggedModel:
    model_id: str
    name: str = ""
    experiment_id: str = ""
    source_run_id: str = ""
    creation_timestamp: int = 0
    artifact_location: str = ""


@dataclass
class ModelVersion:
    name: str
    version: str
    run_id: str = ""
    source: str = ""
    description: str = ""
    status: str = ""
    user_id: str = ""
    creation_timestamp: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)


@dataclass
class RegisteredModel:
    name: str
    description: str = ""
    creation_timestamp: int = 0
    last_updated_timestamp: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> version


# --- JSON <-> plain data ------------------------------------------------------------
def _int(value, default=None):
    return default if value is None or value == "" else int(value)


def _float(value) -> float:
    # Protobuf JSON writes NaN and the infinities as strings; float() reads them.
    return float(value)


def _json_float(value: float):
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _kv(items) -> dict[str, str]:
    return {t["key"]: t.get("value", "") for t in items or ()}


def _pairs(mapping: dict[str, Any] | None) -> list[dict[str, str]]:
    return [{"key": str(k), "value": str(v)} for k, v in (mapping or {}).items()]


def _experiment(js: dict) -> Experiment:
    return Experiment(
        experiment_id=str(js["experiment_id"]), name=js.get("name", ""),
        lifecycle_stage=js.get("lifecycle_stage", "active"), creation_time=_int(js.get("creation_time"), 0),
        last_update_time=_int(js.get("last_update_time"), 0), artifact_location=js.get("artifact_location", ""),
        tags=_kv(js.get("tags")),
    )


def _run(js: dict) -> Run:
    info, data = js.get("info", {}), js.get("data", {})
    datasets = []
    for d in (js.get("inputs") or {}).get("dataset_inputs", ()):
        ds = d.get("dataset", {})
        datasets.append(DatasetInput(
            name=ds.get("name", ""), digest=ds.get("digest", ""), source_type=ds.get("source_type", ""),
            source=ds.get("source", ""), schema=ds.get("schema") or None, profile=ds.get("profile") or None,
            tags=_kv(d.get("tags")),
        ))
    outputs = [m["model_id"] for m in (js.get("outputs") or {}).get("model_outputs", ()) if m.get("model_id")]
    return Run(
        run_id=info.get("run_id") or info.get("run_uuid", ""), experiment_id=str(info.get("experiment_id", "")),
        run_name=info.get("run_name", ""), status=info.get("status", ""),
        start_time=_int(info.get("start_time")), end_time=_int(info.get("end_time")),
        lifecycle_stage=info.get("lifecycle_stage", "active"), artifact_uri=info.get("artifact_uri", ""),
        params=_kv(data.get("params")), metrics={m["key"]: _float(m["value"]) for m in data.get("metrics", ())},
        tags=_kv(data.get("tags")), datasets=datasets, model_outputs=outputs,
    )


def _metric(js: dict) -> Metric:
    return Metric(js["key"], _float(js.get("value", 0.0)), _int(js.get("timestamp"), 0), _int(js.get("step"), 0))


def _logged_model(js: dict) -> LoggedModel:
    info = js.get("info", js)
    return LoggedModel(
        model_id=info["model_id"], name=info.get("name", ""), experiment_id=str(info.get("experiment_id", "")),
        source_run_id=info.get("source_run_id", ""), creation_timestamp=_int(info.get("creation_timestamp_ms"), 0),
        artifact_location=info.get("artifact_uri", ""),
    )


def _model_version(js: dict) -> ModelVersion:
    return ModelVersion(
        name=js["name"], version=str(js["version"]), run_id=js.get("run_id", ""), source=js.get("source", ""),
        description=js.get("description", ""), status=js.get("status", ""), user_id=js.get("user_id", ""),
        creation_timestamp=_int(js.get("creation_timestamp"), 0), tags=_kv(js.get("tags")),
        aliases=list(js.get("aliases", ())),
    )


def _registered_model(js: dict) -> RegisteredModel:
    return RegisteredModel(
        name=js["name"], description=js.get("description", ""),
        creation_timestamp=_int(js.get("creation_timestamp"), 0),
        last_updated_timestamp=_int(js.get("last_updated_timestamp"), 0), tags=_kv(js.get("tags")),
        aliases={a["alias"]: str(a["version"]) for a in js.get("aliases", ())},
    )


def _drop_none(body: dict) -> dict:
    return {k: v for k, v in body.items() if v is not None}


class MlflowRest:
    """MLflow's tracking and registry REST API. Thread-safe: one pooled session,
    shared by the threads the stores run in."""

    def __init__(self, uri: str, *, connect_timeout_s: float = 5.0, read_timeout_s: float = 120.0,
                 retries: int = 2, backoff_s: float = 0.5, pool_size: int = 32):
        if not uri.startswith(("http://", "https://")):
            raise ValueError(f"MLflow URI {uri!r}: an http(s):// tracking server is required")
        self.uri = uri.rstrip("/")
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self._session = requests.Session()
        # requests' own retries stay off (max_retries=0): ours know MLflow's errors.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["Accept"] = "application/json"
        self._configure_auth()
        self._closed = threading.Event()

    def _configure_auth(self) -> None:
        env = os.environ
        if env.get("MLFLOW_TRACKING_TOKEN"):
            self._session.headers["Authorization"] = f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"
        elif env.get("MLFLOW_TRACKING_USERNAME") and env.get("MLFLOW_TRACKING_PASSWORD"):
            self._session.auth = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
        if env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("1", "true"):
            self._session.verify = False
        elif env.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
            self._session.verify = env["MLFLOW_TRACKING_SERVER_CERT_PATH"]
        if env.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
            self._session.cert = env["MLFLOW_TRACKING_CLIENT_CERT_PATH"]

    def close(self) -> None:
        self._closed.set()
        self._session.close()

    # --- transport --------------------------------------------------------------
    def call(self, method: str, endpoint: str, body: dict | None = None) -> dict:
        """One API call; `body` goes as query parameters for GET, as JSON otherwise."""
        url = self.uri + API + endpoint
        body = _drop_none(body or {})
        kwargs: dict[str, Any] = {"params": body} if method == "GET" else {"json": body}
        attempt = 0
        while True:
            try:
                response = self._session.request(method, url, timeout=self.timeout, **kwargs)
            except requests.Timeout as exc:
                if not isinstance(exc, requests.ConnectTimeout):
                    # The server may be working on it still: a retry could do it twice.
                    raise MlflowError(TIMEOUT, f"{method} {endpoint}: no answer within {self.timeout[1]} s") from exc
                error = MlflowError(CONNECTION_ERROR, f"{self.uri} unreachable: {exc}")
            except requests.ConnectionError as exc:
                error = MlflowError(CONNECTION_ERROR, f"{self.uri} unreachable: {exc}")
            except requests.RequestException as exc:
                raise MlflowError("BAD_REQUEST", f"{method} {endpoint}: {exc}") from exc
            else:
                if response.status_code < 300:
                    return response.json() if response.content else {}
                error = self._error(response, method, endpoint)
                if response.status_code not in _RETRY_STATUS:
                    raise error
            if attempt >= self.retries or self._closed.is_set():
                raise error
            delay = self.backoff_s * 2**attempt
            log.debug("MLflow %s %s failed (%s); retrying in %.1f s", method, endpoint, error, delay)
            time.sleep(delay)
            attempt += 1

    @staticmethod
    def _error(response: requests.Response, method: str, endpoint: str) -> MlflowError:
        status = response.status_code
        try:
            js = response.json()
        except ValueError:
            js = None
        if isinstance(js, dict) and js.get("error_code"):
            return MlflowError(str(js["error_code"]), str(js.get("message", "")), status)
        code = _STATUS_CODE.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
        text = response.text.strip()[:200]
        return MlflowError(code, f"{method} {endpoint}: HTTP {status} {text}", status)

    def _pages(self, fetch, token: str | None = None) -> Iterator:
        while True:
            page = fetch(token)
            yield from page
            token = page.token
            if not token:
                return

    # --- experiments ------------------------------------------------------------
    def get_experiment_by_name(self, name: str) -> Experiment | None:
        try:
            js = self.call("GET", "experiments/get-by-name", {"experiment_name": name})
        except MlflowError as exc:
            if exc.not_found:
                return None
            raise
        return _experiment(js["experiment"])

    def create_experiment(self, name: str, tags: dict[str, str] | None = None) -> str:
        return str(self.call("POST", "experiments/create", {"name": name, "tags": _pairs(tags) or None})
                   ["experiment_id"])

    def restore_experiment(self, experiment_id: str) -> None:
        self.call("POST", "experiments/restore", {"experiment_id": experiment_id})

    def search_experiments(self, view_type: str = "ACTIVE_ONLY", max_results: int = 1000,
                           filter_string: str | None = None, page_token: str | None = None) -> Page:
        js = self.call("POST", "experiments/search", {
            "view_type": view_type, "max_results": max_results, "filter": filter_string or None,
            "page_token": page_token,
        })
        return Page([_experiment(e) for e in js.get("experiments", ())], js.get("next_page_token"))

    def all_experiments(self, view_type: str = "ACTIVE_ONLY") -> list[Experiment]:
        return list(self._pages(lambda t: self.search_experiments(view_type, page_token=t)))

    # --- runs -------------------------------------------------------------------
    def create_run(self, experiment_id: str, tags: dict[str, str] | None = None, run_name: str | None = None,
                   start_time: int | None = None) -> Run:
        tags = tags or {}
        js = self.call("POST", "runs/create", {
            "experiment_id": experiment_id, "start_time": start_time or int(time.time() * 1000),
            "tags": _pairs(tags), "run_name": run_name, "user_id": tags.get("mlflow.user", "unknown"),
        })
        return _run(js["run"])

    def delete_run(self, run_id: str) -> None:
        self.call("POST", "runs/delete", {"run_id": run_id})

    def get_run(self, run_id: str) -> Run:
        return _run(self.call("GET", "runs/get", {"run_id": run_id})["run"])

    def search_runs(self, experiment_ids: list[str], filter_string: str = "", view_type: str = "ACTIVE_ONLY",
                    max_results: int = 1000, order_by: list[str] | None = None,
                    page_token: str | None = None) -> Page:
        js = self.call("POST", "runs/search", {
            "experiment_ids": list(experiment_ids), "filter": filter_string or None, "run_view_type": view_type,
            "max_results": max_results, "order_by": list(order_by or ()) or None, "page_token": page_token,
        })
        return Page([_run(r) for r in js.get("runs", ())], js.get("next_page_token"))

    def log_batch(self, run_id: str, metrics: Iterable[Metric] = (), params: dict[str, str] | None = None,
                  tags: dict[str, str] | None = None) -> None:
        """One log-batch call: the caller keeps within MLflow's limits (1000 metrics,
        100 params, 100 tags)."""
        self.call("POST", "runs/log-batch", {
            "run_id": run_id,
            "metrics": [{"key": m.key, "value": _json_float(m.value), "timestamp": int(m.timestamp),
                         "step": int(m.step)} for m in metrics],
            "params": _pairs(params), "tags": _pairs(tags),
        })

    def log_inputs(self, run_id: str, datasets: Iterable[DatasetInput]) -> None:
        self.call("POST", "runs/log-inputs", {"run_id": run_id, "datasets": [
            {"tags": _pairs(d.tags), "dataset": _drop_none({
                "name": d.name, "digest": d.digest, "source_type": d.source_type, "source": d.source,
                "schema": d.schema, "profile": d.profile,
            })} for d in datasets
        ]})

    def set_terminated(self, run_id: str, status: str = "FINISHED", end_time: int | None = None) -> None:
        self.call("POST", "runs/update", {
            "run_id": run_id, "run_uuid": run_id, "status": status, "end_time": end_time or int(time.time() * 1000),
        })

    def get_metric_history(self, run_id: str, key: str, page_size: int = 25_000) -> list[Metric]:
        """Every logged value of the metric, over as many pages as it takes."""

        def page(token):
            js = self.call("GET", "metrics/get-history", {
                "run_id": run_id, "run_uuid": run_id, "metric_key": key, "max_results": page_size,
                "page_token": token,
            })
            return Page([_metric(m) for m in js.get("metrics", ())], js.get("next_page_token"))

        return list(self._pages(page))

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        """The entries directly under `path` of the run's artifacts (paths relative to
        the run's root). The server lists them, proxied artifact stores included."""
        js = self.call("GET", "artifacts/list", {"run_id": run_id, "run_uuid": run_id, "path": path})
        return [FileInfo(f["path"], bool(f.get("is_dir", False)), _int(f.get("file_size")))
                for f in js.get("files", ())]

    def search_logged_models(self, experiment_ids: list[str], filter_string: str | None = None,
                             max_results: int = 100) -> list[LoggedModel]:
        def page(token):
            js = self.call("POST", "logged-models/search", {
                "experiment_ids": list(experiment_ids), "filter": filter_string, "max_results": max_results,
                "page_token": token,
            })
            return Page([_logged_model(m) for m in js.get("models", ())], js.get("next_page_token"))

        return list(self._pages(page))

    # --- model registry ---------------------------------------------------------
    def create_registered_model(self, name: str, description: str | None = None,
                                tags: dict[str, str] | None = None) -> RegisteredModel:
        js = self.call("POST", "registered-models/create",
                       {"name": name, "description": description, "tags": _pairs(tags) or None})
        return _registered_model(js["registered_model"])

    def get_registered_model(self, name: str) -> RegisteredModel:
        return _registered_model(self.call("GET", "registered-models/get", {"name": name})["registered_model"])

    def search_registered_models(self, filter_string: str | None = None, max_results: int = 1000,
                                 page_token: str | None = None) -> Page:
        js = self.call("GET", "registered-models/search",
                       {"filter": filter_string, "max_results": max_results, "page_token": page_token})
        return Page([_registered_model(m) for m in js.get("registered_models", ())], js.get("next_page_token"))

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        self.call("POST", "registered-models/set-tag", {"name": name, "key": key, "value": str(value)})

    def create_model_version(self, name: str, source: str, run_id: str | None = None,
                             tags: dict[str, str] | None = None, description: str | None = None,
                             model_id: str | None = None, await_ready_s: float = 300.0) -> ModelVersion:
        js = self.call("POST", "model-versions/create", {
            "name": name, "source": source, "run_id": run_id, "tags": _pairs(tags) or None,
            "description": description, "model_id": model_id,
        })
        version = _model_version(js["model_version"])
        # A registry that copies files answers PENDING_REGISTRATION first; wait for READY.
        deadline = time.monotonic() + await_ready_s
        while version.status == "PENDING_REGISTRATION" and time.monotonic() < deadline:
            time.sleep(0.5)
            version = self.get_model_version(name, version.version)
        if version.status == "FAILED_REGISTRATION":
            raise MlflowError("INVALID_STATE", f"model version {name}/{version.version} failed to register")
        return version

    def get_model_version(self, name: str, version: str) -> ModelVersion:
        return _model_version(self.call("GET", "model-versions/get", {"name": name, "version": str(version)})
                              ["model_version"])

    def search_model_versions(self, filter_string: str | None = None, max_results: int = 10_000,
                              page_token: str | None = None) -> Page:
        js = self.call("GET", "model-versions/search",
                       {"filter": filter_string, "max_results": max_results, "page_token": page_token})
        return Page([_model_version(v) for v in js.get("model_versions", ())], js.get("next_page_token"))

    def delete_model_version(self, name: str, version: str) -> None:
        self.call("DELETE", "model-versions/delete", {"name": name, "version": str(version)})

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.call("POST", "model-versions/set-tag",
                  {"name": name, "version": str(version), "key": key, "value": str(value)})

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return _model_version(self.call("GET", "registered-models/alias", {"name": name, "alias": alias})
                              ["model_version"])

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.call("POST", "registered-models/alias", {"name": name, "alias": alias, "version": str(version)})

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self.call("DELETE", "registered-models/alias", {"name": name, "alias": alias})


__all__ = [
    "DatasetInput", "Experiment", "FileInfo", "LoggedModel", "Metric", "MlflowError", "MlflowRest",
    "ModelVersion", "Page", "RegisteredModel", "Run",
]
