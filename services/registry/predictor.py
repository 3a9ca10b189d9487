"""Predict: a registered version loaded once with mlflow.pyfunc (and torch, on the
first prediction that needs it), kept in a bounded LRU, fed validated rows."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubetune_common.errors import FailedPrecondition, InvalidArgument
from kubetune_common.prediction_input import (BOOLEAN, CATEGORICAL, NUMERIC, BadValue, Column, listed, parse,
                                              parse_number)
from services.registry.registry import VTAG_FEATURES, VTAG_INPUT_SCHEMA, VTAG_TASK, Registry, input_columns

log = logging.getLogger(__name__)

PREDICTION = "prediction"
PROBA_PREFIX = "proba_"


@dataclass
class Loaded:
    model: Any  # mlflow.pyfunc.PyFuncModel
    inputs: list[Column]
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


def signature_columns(model) -> list[Column]:
    """The input columns of a model's MLflow signature (a model with no kubetune tags)."""
    try:
        schema = model.metadata.get_input_schema()
        specs = schema.inputs if schema is not None and schema.has_input_names() else []
    except Exception:  # noqa: BLE001 - a model without a signature
        return []
    kinds = {"string": CATEGORICAL, "boolean": BOOLEAN}
    return [Column(str(s.name), kinds.get(str(getattr(s.type, "name", "")), NUMERIC)) for s in specs]


def _where(row: int, column: str) -> str:
    return f"row {row}, column {column!r}"


def to_frame(rows: Sequence[Sequence[float] | Sequence[str]], names: Sequence[str], inputs: list[Column]):
    """Rows -> (the model's input DataFrame, the named columns it ignores).

    `names` names the values of every row (any order; extra columns ignored); when
    empty, rows hold exactly the model's inputs in order. Numeric and boolean columns
    become float64 (NaN = missing), categorical ones object str (None = missing).
    InvalidArgument names a missing column, or the row and column of a bad value."""
    import numpy as np
    import pandas as pd

    wanted = [c.name for c in inputs]
    if names:
        names = list(names)
        repeated = sorted(n for n, count in Counter(names).items() if count > 1)
        if repeated:
            raise InvalidArgument(f"columns {listed(repeated)} named more than once")
        given, needed = set(names), set(wanted)
        missing = [n for n in wanted if n not in given]
        if missing:
            raise InvalidArgument(f"missing column{'s' if len(missing) > 1 else ''} {listed(missing)}: "
                                  f"the model needs {listed(wanted)}")
        width, what = len(names), f"the request names {len(names)} columns"
        position = {n: j for j, n in enumerate(names)}
        ignored = [n for n in names if n not in needed]
    else:
        width, what = len(inputs), f"the model expects {len(inputs)}: {listed(wanted)}"
        position = {n: j for j, n in enumerate(wanted)}
        ignored = []
    for i, row in enumerate(rows):
        if len(row) != width:
            raise InvalidArgument(f"row {i} has {len(row)} values; {what}")
    # Rows of numbers (not text: numpy would read "1.5" as a number, and "abc" badly)
    # are read at once; with only numeric inputs that is the whole frame.
    matrix = None if any(r and isinstance(r[0], str) for r in rows) else \
        np.asarray(rows, dtype=np.float64).reshape(len(rows), width)
    if matrix is not None and all(c.kind == NUMERIC for c in inputs):
        block = matrix[:, [position[n] for n in wanted]]
        bad = np.argwhere(np.isinf(block))
        if bad.size:
            i, j = (int(v) for v in bad[0])
            raise InvalidArgument(f"{_where(i, wanted[j])}: {block[i, j]} is not a finite number")
        return pd.DataFrame(block, columns=wanted), ignored
    data = {}
    for column in inputs:
        j = position[column.name]
        if matrix is not None and column.kind != CATEGORICAL:
            values = matrix[:, j].copy()
            bad = np.flatnonzero(np.isinf(values) | (
                (column.kind == BOOLEAN) & ~np.isnan(values) & (values != 0) & (values != 1)))
            if bad.size:
                i = int(bad[0])
                try:
                    parse_number(float(values[i]), column.kind)
                except BadValue as exc:
                    raise InvalidArgument(f"{_where(i, column.name)}: {exc}") from None
            data[column.name] = values
            continue
        out = []
        for i, row in enumerate(rows):
            try:
                out.append(parse(row[j], column.kind))
            except BadValue as exc:
                raise InvalidArgument(f"{_where(i, column.name)}: {exc}") from None
        data[column.name] = pd.Series(out, dtype=object) if column.kind == CATEGORICAL else \
            np.asarray(out, dtype=np.float64)
    return pd.DataFrame(data, columns=wanted), ignored


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
        self._loading: dict[tuple[str, str], asyncio.Task] = {}
        self.loads = 0

    async def _loaded(self, name: str, version: str, tags: dict[str, str]) -> Loaded:
        key = (name, version)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        task = self._loading.get(key)
        if task is None:
            task = self._loading[key] = asyncio.ensure_future(self._load(name, version, tags))
            task.add_done_callback(lambda t: (self._loading.pop(key, None), t.cancelled() or t.exception()))
        # Shielded: a caller that gives up (a client's deadline shorter than a cold load
        # of mlflow and torch) leaves the load running, so the next call finds it done.
        return await asyncio.shield(task)

    async def _load(self, name: str, version: str, tags: dict[str, str]) -> Loaded:
        model = await asyncio.to_thread(self.loader, f"models:/{name}/{version}")
        self.loads += 1
        inputs = input_columns(tags) or signature_columns(model)
        if not inputs:
            raise FailedPrecondition(f"model {name}/{version} names no input columns "
                                     f"(no {VTAG_INPUT_SCHEMA} or {VTAG_FEATURES} tag and no signature)")
        loaded = self._cache[(name, version)] = Loaded(model, inputs, tags.get(VTAG_TASK, ""))
        while len(self._cache) > self.cache_size:
            evicted, _ = self._cache.popitem(last=False)
            log.info("model %s/%s unloaded (cache full)", *evicted)
        return loaded

    async def predict(self, ref: str, rows: Sequence[Sequence[float] | Sequence[str]], columns: Sequence[str] = ()):
        """(name, version, predictions, ignored columns) for rows of raw values named by
        `columns` (or, without, in the model's input order)."""
        if not rows:
            raise InvalidArgument("no rows to predict")
        if len(rows) > self.max_rows:
            raise InvalidArgument(f"{len(rows)} rows: at most {self.max_rows} per call; use PredictStream")
        record = await self._resolve(ref)
        loaded = await self._loaded(record.name, record.version, record.tags)
        frame, ignored = await asyncio.to_thread(to_frame, rows, columns, loaded.inputs)
        predictions = await asyncio.to_thread(self._run, loaded, frame)
        return record.name, record.version, predictions, ignored

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
    def _run(loaded: Loaded, frame) -> list[Prediction]:
        import pandas as pd

        out = loaded.model.predict(frame)
        if not isinstance(out, pd.DataFrame):
            out = pd.DataFrame({PREDICTION: list(out)})
        if len(out) != len(frame):
            raise FailedPrecondition(f"the model answered {len(out)} rows for {len(frame)}")
        return to_predictions(out, loaded.task_kind)
