"""MLflow's tracking and registry REST API (`/api/2.0/mlflow/...`), one method per
endpoint the tracking and registry stores use, and nothing else. Only the stores use
it: nothing above a store knows the REST API's shape."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from services.common.mlflow_rest.entities import (
    DatasetInput, Experiment, FileInfo, LoggedModel, Metric, ModelVersion, Page, RegisteredModel, Run,
    drop_none, json_float, pairs, parse_experiment, parse_file_info, parse_logged_model, parse_metric,
    parse_model_version, parse_registered_model, parse_run,
)
from services.common.mlflow_rest.errors import MlflowError
from services.common.mlflow_rest.transport import Transport


def _all_pages(fetch, token: str | None = None) -> Iterator:
    """Every item of a paged listing: `fetch(token)` returns one Page."""
    while True:
        page = fetch(token)
        yield from page
        token = page.token
        if not token:
            return


class MlflowRest:
    """The API over a `Transport` (its options: connect/read timeouts, retries, backoff,
    pool size). Thread-safe, as the transport is."""

    def __init__(self, uri: str, **transport_options):
        self.transport = Transport(uri, **transport_options)
        self.uri = self.transport.uri
        self.call = self.transport.call

    def close(self) -> None:
        self.transport.close()

    # --- experiments ------------------------------------------------------------
    def get_experiment_by_name(self, name: str) -> Experiment | None:
        try:
            js = self.call("GET", "experiments/get-by-name", {"experiment_name": name})
        except MlflowError as exc:
            if exc.not_found:
                return None
            raise
        return parse_experiment(js["experiment"])

    def create_experiment(self, name: str, tags: dict[str, str] | None = None) -> str:
        return str(self.call("POST", "experiments/create", {"name": name, "tags": pairs(tags) or None})
                   ["experiment_id"])

    def restore_experiment(self, experiment_id: str) -> None:
        self.call("POST", "experiments/restore", {"experiment_id": experiment_id})

    def search_experiments(self, view_type: str = "ACTIVE_ONLY", max_results: int = 1000,
                           filter_string: str | None = None, page_token: str | None = None) -> Page:
        js = self.call("POST", "experiments/search", {
            "view_type": view_type, "max_results": max_results, "filter": filter_string or None,
            "page_token": page_token,
        })
        return Page([parse_experiment(e) for e in js.get("experiments", ())], js.get("next_page_token"))

    def all_experiments(self, view_type: str = "ACTIVE_ONLY") -> list[Experiment]:
        return list(_all_pages(lambda t: self.search_experiments(view_type, page_token=t)))

    # --- runs -------------------------------------------------------------------
    def create_run(self, experiment_id: str, tags: dict[str, str] | None = None, run_name: str | None = None,
                   start_time: int | None = None) -> Run:
        tags = tags or {}
        js = self.call("POST", "runs/create", {
            "experiment_id": experiment_id, "start_time": start_time or int(time.time() * 1000),
            "tags": pairs(tags), "run_name": run_name, "user_id": tags.get("mlflow.user", "unknown"),
        })
        return parse_run(js["run"])

    def delete_run(self, run_id: str) -> None:
        self.call("POST", "runs/delete", {"run_id": run_id})

    def get_run(self, run_id: str) -> Run:
        return parse_run(self.call("GET", "runs/get", {"run_id": run_id})["run"])

    def search_runs(self, experiment_ids: list[str], filter_string: str = "", view_type: str = "ACTIVE_ONLY",
                    max_results: int = 1000, order_by: list[str] | None = None,
                    page_token: str | None = None) -> Page:
        js = self.call("POST", "runs/search", {
            "experiment_ids": list(experiment_ids), "filter": filter_string or None, "run_view_type": view_type,
            "max_results": max_results, "order_by": list(order_by or ()) or None, "page_token": page_token,
        })
        return Page([parse_run(r) for r in js.get("runs", ())], js.get("next_page_token"))

    def log_batch(self, run_id: str, metrics: Iterable[Metric] = (), params: dict[str, str] | None = None,
                  tags: dict[str, str] | None = None) -> None:
        """One log-batch call: the caller keeps within MLflow's limits (1000 metrics,
        100 params, 100 tags)."""
        self.call("POST", "runs/log-batch", {
            "run_id": run_id,
            "metrics": [{"key": m.key, "value": json_float(m.value), "timestamp": int(m.timestamp),
                         "step": int(m.step)} for m in metrics],
            "params": pairs(params), "tags": pairs(tags),
        })

    def log_inputs(self, run_id: str, datasets: Iterable[DatasetInput]) -> None:
        self.call("POST", "runs/log-inputs", {"run_id": run_id, "datasets": [
            {"tags": pairs(d.tags), "dataset": drop_none({
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
            return Page([parse_metric(m) for m in js.get("metrics", ())], js.get("next_page_token"))

        return list(_all_pages(page))

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        """The entries directly under `path` of the run's artifacts (paths relative to
        the run's root). The server lists them, proxied artifact stores included."""
        js = self.call("GET", "artifacts/list", {"run_id": run_id, "run_uuid": run_id, "path": path})
        return [parse_file_info(f) for f in js.get("files", ())]

    def search_logged_models(self, experiment_ids: list[str], filter_string: str | None = None,
                             max_results: int = 100) -> list[LoggedModel]:
        def page(token):
            js = self.call("POST", "logged-models/search", {
                "experiment_ids": list(experiment_ids), "filter": filter_string, "max_results": max_results,
                "page_token": token,
            })
            return Page([parse_logged_model(m) for m in js.get("models", ())], js.get("next_page_token"))

        return list(_all_pages(page))

    # --- model registry ---------------------------------------------------------
    def create_registered_model(self, name: str, description: str | None = None,
                                tags: dict[str, str] | None = None) -> RegisteredModel:
        js = self.call("POST", "registered-models/create",
                       {"name": name, "description": description, "tags": pairs(tags) or None})
        return parse_registered_model(js["registered_model"])

    def get_registered_model(self, name: str) -> RegisteredModel:
        return parse_registered_model(self.call("GET", "registered-models/get", {"name": name})["registered_model"])

    def search_registered_models(self, filter_string: str | None = None, max_results: int = 1000,
                                 page_token: str | None = None) -> Page:
        js = self.call("GET", "registered-models/search",
                       {"filter": filter_string, "max_results": max_results, "page_token": page_token})
        return Page([parse_registered_model(m) for m in js.get("registered_models", ())], js.get("next_page_token"))

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        self.call("POST", "registered-models/set-tag", {"name": name, "key": key, "value": str(value)})

    def create_model_version(self, name: str, source: str, run_id: str | None = None,
                             tags: dict[str, str] | None = None, description: str | None = None,
                             model_id: str | None = None, await_ready_s: float = 300.0) -> ModelVersion:
        js = self.call("POST", "model-versions/create", {
            "name": name, "source": source, "run_id": run_id, "tags": pairs(tags) or None,
            "description": description, "model_id": model_id,
        })
        version = parse_model_version(js["model_version"])
        # A registry that copies files answers PENDING_REGISTRATION first; wait for READY.
        deadline = time.monotonic() + await_ready_s
        while version.status == "PENDING_REGISTRATION" and time.monotonic() < deadline:
            time.sleep(0.5)
            version = self.get_model_version(name, version.version)
        if version.status == "FAILED_REGISTRATION":
            raise MlflowError("INVALID_STATE", f"model version {name}/{version.version} failed to register")
        return version

    def get_model_version(self, name: str, version: str) -> ModelVersion:
        return parse_model_version(self.call("GET", "model-versions/get", {"name": name, "version": str(version)})
                              ["model_version"])

    def search_model_versions(self, filter_string: str | None = None, max_results: int = 10_000,
                              page_token: str | None = None) -> Page:
        js = self.call("GET", "model-versions/search",
                       {"filter": filter_string, "max_results": max_results, "page_token": page_token})
        return Page([parse_model_version(v) for v in js.get("model_versions", ())], js.get("next_page_token"))

    def delete_model_version(self, name: str, version: str) -> None:
        self.call("DELETE", "model-versions/delete", {"name": name, "version": str(version)})

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.call("POST", "model-versions/set-tag",
                  {"name": name, "version": str(version), "key": key, "value": str(value)})

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return parse_model_version(self.call("GET", "registered-models/alias", {"name": name, "alias": alias})
                              ["model_version"])

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.call("POST", "registered-models/alias", {"name": name, "alias": alias, "version": str(version)})

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self.call("DELETE", "registered-models/alias", {"name": name, "alias": alias})
