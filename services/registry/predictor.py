"""Predict: a registered version loaded once with mlflow.pyfunc (and torch, on the
first prediction that needs it), kept in a bounded LRU, fed validated rows."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.common.errors import FailedPrecondition, InvalidArgument
from services.registry.registry import VTAG_FEATURES, VTAG_TASK, Registry

log = logging.getLogger(__name__)

PREDICTION = "prediction"
PROBA_PREFIX = "proba_"


@dataclass
class Loaded:
    model: Any  # mlflow.pyfunc.PyFuncModel
    features: list[str]
    task_kind: str


@dataclass
class Prediction:
    value: float
    label: str = ""
    probabilities: dict[str, float] = field(default_factory=dict)


def load_pyfunc(uri: str, mlflow_uri: str | None = None):
    """The model behind a `models:/...` URI. The one place the registry imports mlflow:
    heavy (~165 MB, 1-3 s), so only when a model is first needed."""
    import mlflow.pyfunc  # noqa: PLC0415

    if mlflow_uri:
        # load_model("models:/...") resolves through the process-wide URIs.
        mlflow.set_tracking_uri(mlflow_uri)
        mlflow.set_registry_uri(mlflow_uri)
    return mlflow.pyfunc.load_model(uri)


def _input_names(model) -> list[str]:
    try:
        schema = model.metadata.get_input_schema()
        return list(schema.input_names()) if schema is not None else []
    except Exception:  # noqa: BLE001 - a model without a signature
        return []


def to_matrix(rows: Sequence[Sequence[float] | Sequence[str]], features: list[str]):
    """Rows -> a float64 matrix, refusing a wrong width or a value that is not a number."""
    import numpy as np

    width = len(features)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise InvalidArgument(
                f"row {i} has {len(row)} values; the model expects {width}: {', '.join(features)}"
            )
    if rows and all(not r or not isinstance(r[0], str) for r in rows):
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), width)
    out = np.empty((len(rows), width), dtype=np.float64)
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if isinstance(value, str):
                try:
                    value = float(value.strip())
                except ValueError:
                    raise InvalidArgument(
                        f"row {i}, column {features[j]!r}: {value!r} is not a number"
                    ) from None
            out[i, j] = value
    return out


def to_predictions(frame, task_kind: str) -> list[Prediction]:
    if PREDICTION not in frame.columns:
        raise FailedPrecondition(f"the model's output has no {PREDICTION!r} column: {list(frame.columns)}")
    proba_cols = [c for c in frame.columns if str(c).startswith(PROBA_PREFIX)]
    if task_kind != "classification" and not proba_cols:
        return [Prediction(float(v)) for v in frame[PREDICTION].to_numpy(dtype="float64")]
    labels = [str(v) for v in frame[PREDICTION].tolist()]
    classes = [str(c)[len(PROBA_PREFIX):] for c in proba_cols]
    probas = frame[proba_cols].to_numpy(dtype="float64") if proba_cols else None
    out = []
    for i, label in enumerate(labels):
        try:
            value = float(label)
        except ValueError:
            value = math.nan  # a text label has no number; read `label`
        out.append(Prediction(value, label, dict(zip(classes, probas[i].tolist())) if probas is not None else {}))
    return out


class Predictor:
    def __init__(self, registry: Registry, *, cache_size: int = 8, max_rows: int = 100_000,
                 resolve_ttl_s: float = 5.0, loader: Callable[[str], Any] = load_pyfunc):
        self.registry = registry
        # `name@alias` -> version, kept briefly: asking MLflow costs more than the
        # prediction. Alias changes made through this registry drop it at once.
        self.resolve_ttl_s = resolve_ttl_s
        self._resolved: dict[str, tuple[float, Any]] = {}
        registry.on_change.append(self.forget)
        self.cache_size = max(1, cache_size)
        self.max_rows = max_rows
        self.loader = loader
        self._cache: OrderedDict[tuple[str, str], Loaded] = OrderedDict()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.loads = 0

    async def _loaded(self, name: str, version: str, tags: dict[str, str]) -> Loaded:
        key = (name, version)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        async with self._locks.setdefault(key, asyncio.Lock()):
            hit = self._cache.get(key)
            if hit is not None:
                return hit
            model = await asyncio.to_thread(self.loader, f"models:/{name}/{version}")
            self.loads += 1
            try:
                features = [str(f) for f in json.loads(tags.get(VTAG_FEATURES, "[]"))]
            except ValueError:
                features = []
            features = features or _input_names(model)
            if not features:
                raise FailedPrecondition(f"model {name}/{version} names no feature columns "
                                         f"(no {VTAG_FEATURES} tag and no signature)")
            loaded = Loaded(model, features, tags.get(VTAG_TASK, ""))
            self._cache[key] = loaded
            while len(self._cache) > self.cache_size:
                evicted, _ = self._cache.popitem(last=False)
                self._locks.pop(evicted, None)
                log.info("model %s/%s unloaded (cache full)", *evicted)
            return loaded

    async def predict(self, ref: str, rows: Sequence[Sequence[float] | Sequence[str]]):
        """(name, version, predictions) for rows of raw feature values."""
        if not rows:
            raise InvalidArgument("no rows to predict")
        if len(rows) > self.max_rows:
            raise InvalidArgument(f"{len(rows)} rows: at most {self.max_rows} per call; use PredictStream")
        record = await self._resolve(ref)
        loaded = await self._loaded(record.name, record.version, record.tags)
        matrix = to_matrix(rows, loaded.features)
        predictions = await asyncio.to_thread(self._run, loaded, matrix)
        return record.name, record.version, predictions

    async def _resolve(self, ref: str):
        hit = self._resolved.get(ref)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.resolve_ttl_s:
            return hit[1]
        record = await self.registry.resolve(ref)
        if len(self._resolved) > 10_000:
            self._resolved.clear()
        self._resolved[ref] = (now, record)
        return record

    def forget(self, name: str) -> None:
        """Drops cached resolutions of a model whose aliases or versions changed."""
        for ref in [r for r in self._resolved if r.split("@")[0].rsplit("/", 1)[0] == name]:
            self._resolved.pop(ref, None)

    @staticmethod
    def _run(loaded: Loaded, matrix) -> list[Prediction]:
        import pandas as pd

        frame = pd.DataFrame(matrix, columns=loaded.features)
        out = loaded.model.predict(frame)
        if not isinstance(out, pd.DataFrame):
            out = pd.DataFrame({PREDICTION: list(out)})
        return to_predictions(out, loaded.task_kind)
