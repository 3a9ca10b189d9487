"""What MLflow's REST API answers, as plain dataclasses (never MLflow's own entities),
and the JSON each is read from or written as. No I/O here: the client calls, this parses."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


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


def json_float(value: float):
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def kv(items) -> dict[str, str]:
    return {t["key"]: t.get("value", "") for t in items or ()}


def pairs(mapping: dict[str, Any] | None) -> list[dict[str, str]]:
    return [{"key": str(k), "value": str(v)} for k, v in (mapping or {}).items()]


def parse_experiment(js: dict) -> Experiment:
    return Experiment(
        experiment_id=str(js["experiment_id"]), name=js.get("name", ""),
        lifecycle_stage=js.get("lifecycle_stage", "active"), creation_time=_int(js.get("creation_time"), 0),
        last_update_time=_int(js.get("last_update_time"), 0), artifact_location=js.get("artifact_location", ""),
        tags=kv(js.get("tags")),
    )


def parse_run(js: dict) -> Run:
    info, data = js.get("info", {}), js.get("data", {})
    datasets = []
    for d in (js.get("inputs") or {}).get("dataset_inputs", ()):
        ds = d.get("dataset", {})
        datasets.append(DatasetInput(
            name=ds.get("name", ""), digest=ds.get("digest", ""), source_type=ds.get("source_type", ""),
            source=ds.get("source", ""), schema=ds.get("schema") or None, profile=ds.get("profile") or None,
            tags=kv(d.get("tags")),
        ))
    outputs = [m["model_id"] for m in (js.get("outputs") or {}).get("model_outputs", ()) if m.get("model_id")]
    return Run(
        run_id=info.get("run_id") or info.get("run_uuid", ""), experiment_id=str(info.get("experiment_id", "")),
        run_name=info.get("run_name", ""), status=info.get("status", ""),
        start_time=_int(info.get("start_time")), end_time=_int(info.get("end_time")),
        lifecycle_stage=info.get("lifecycle_stage", "active"), artifact_uri=info.get("artifact_uri", ""),
        params=kv(data.get("params")), metrics={m["key"]: _float(m["value"]) for m in data.get("metrics", ())},
        tags=kv(data.get("tags")), datasets=datasets, model_outputs=outputs,
    )


def parse_metric(js: dict) -> Metric:
    return Metric(js["key"], _float(js.get("value", 0.0)), _int(js.get("timestamp"), 0), _int(js.get("step"), 0))


def parse_logged_model(js: dict) -> LoggedModel:
    info = js.get("info", js)
    return LoggedModel(
        model_id=info["model_id"], name=info.get("name", ""), experiment_id=str(info.get("experiment_id", "")),
        source_run_id=info.get("source_run_id", ""), creation_timestamp=_int(info.get("creation_timestamp_ms"), 0),
        artifact_location=info.get("artifact_uri", ""),
    )


def parse_model_version(js: dict) -> ModelVersion:
    return ModelVersion(
        name=js["name"], version=str(js["version"]), run_id=js.get("run_id", ""), source=js.get("source", ""),
        description=js.get("description", ""), status=js.get("status", ""), user_id=js.get("user_id", ""),
        creation_timestamp=_int(js.get("creation_timestamp"), 0), tags=kv(js.get("tags")),
        aliases=list(js.get("aliases", ())),
    )


def parse_registered_model(js: dict) -> RegisteredModel:
    return RegisteredModel(
        name=js["name"], description=js.get("description", ""),
        creation_timestamp=_int(js.get("creation_timestamp"), 0),
        last_updated_timestamp=_int(js.get("last_updated_timestamp"), 0), tags=kv(js.get("tags")),
        aliases={a["alias"]: str(a["version"]) for a in js.get("aliases", ())},
    )


def parse_file_info(js: dict) -> FileInfo:
    return FileInfo(js["path"], bool(js.get("is_dir", False)), _int(js.get("file_size")))


def drop_none(body: dict) -> dict:
    return {k: v for k, v in body.items() if v is not None}
