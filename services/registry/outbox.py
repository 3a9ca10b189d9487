"""The registry's outbox. MLflow's registry is not ours to add a table to, and it writes
a version, or an alias, in a transaction of its own. So each registered model carries a
tag, PUBLISHED, recording what has been announced: the highest version, and each alias's
version with how many times it was set. The relay compares that record with the model as
MLflow holds it and sends the difference as ModelRegistered / AliasSet events, whose ids
are derived from the record: an event re-derived after a crash or an outage has the id of
the one it stands for (JetStream and subscribers drop a repeat). Sent, the record is
moved on. A model made before this record existed starts from what it has: announced."""

from __future__ import annotations

import copy
import json
import logging
import threading
import time

from kubetune.events.v1 import events_pb2
from kubetune_common.errors import NotFound
from services.common import mlflow_tags
from services.common.outbox import OutboxEvent, OutboxStore
from services.registry.store import ModelRecord, RegistryStore

log = logging.getLogger(__name__)

PUBLISHED = "kubetune.events_published"
# Every model is compared this often too: a change whose process died before its wake.
SWEEP_S = 60.0


def nothing_published() -> str:
    """The record a model is created with (in the same call): nothing announced yet."""
    return json.dumps({"version": 0, "aliases": {}})


def _current(model: ModelRecord) -> dict:
    return {"version": max((int(v.version) for v in model.versions), default=0),
            "aliases": {a: [v, 1] for a, v in model.aliases.items()}}


def unpublished(model: ModelRecord) -> list[tuple[OutboxEvent, dict]]:
    """The events `model` owes, each with the record as it is once that event is sent."""
    state = json.loads(model.tags[PUBLISHED])
    out = []
    prefix = f"{model.name}.{model.created_ms}"
    lowest: dict[str, int] = {}
    for v in model.versions:
        lowest[v.run_id] = min(lowest.get(v.run_id, int(v.version)), int(v.version))
    for v in sorted(model.versions, key=lambda v: int(v.version)):
        # A second version of one run is a concurrent registration's: its maker deletes it.
        if int(v.version) <= state["version"] or lowest[v.run_id] != int(v.version):
            continue
        state["version"] = int(v.version)
        out.append((OutboxEvent.of(f"{prefix}.v{v.version}.registered", model_registered=events_pb2.ModelRegistered(
            name=model.name, version=v.version, run_id=v.run_id, study_id=v.tags.get(mlflow_tags.TAG_STUDY, ""),
            dataset_version=v.tags.get(mlflow_tags.TAG_DATASET, ""))), copy.deepcopy(state)))
    for alias in list(state["aliases"]):
        if alias not in model.aliases:  # deleted: setting it again, even to the same version, is news
            state["aliases"][alias][0] = None
    for alias, version in sorted(model.aliases.items()):
        announced, times = state["aliases"].get(alias, [None, 0])
        if announced == version:
            continue
        state["aliases"][alias] = [version, times + 1]
        out.append((OutboxEvent.of(f"{prefix}.alias.{alias}.{times + 1}", alias_set=events_pb2.AliasSet(
            name=model.name, alias=alias, version=version)), copy.deepcopy(state)))
    return out


class RegistryOutbox(OutboxStore):
    """What the models named by `touch` (and, every SWEEP_S, all models) owe."""

    def __init__(self, store: RegistryStore, sweep_s: float = SWEEP_S):
        self.store = store
        self.sweep_s = sweep_s
        self._touched: set[str] = set()
        self._swept = 0.0  # never: the first look covers every model
        self._after: dict[str, tuple[str, dict]] = {}  # event id -> (model, its record once sent)
        self._guard = threading.Lock()

    def touch(self, name: str) -> None:
        with self._guard:
            self._touched.add(name)

    def _models(self) -> list[ModelRecord]:
        with self._guard:
            names, everything = set(self._touched), time.monotonic() - self._swept > self.sweep_s
        if everything:
            self._swept = time.monotonic()
            return self.store.list_models()
        models = []
        for name in names:
            try:
                models.append(self.store.get_model(name))
            except NotFound:
                self._settled(name)
        return models

    def _settled(self, name: str) -> None:
        with self._guard:
            self._touched.discard(name)

    def pending(self, limit):
        out: list[OutboxEvent] = []
        for model in self._models():
            if PUBLISHED not in model.tags:
                self.store.set_tags(model.name, None, {PUBLISHED: json.dumps(_current(model))})
                continue
            owed = unpublished(model)
            if not owed:
                self._settled(model.name)
            for event, after in owed:
                self._after[event.id] = (model.name, after)
                out.append(event)
        return out[:limit]

    def mark_sent(self, events):
        records: dict[str, dict] = {}
        for event in events:  # in order: each model's last one carries its record
            name, after = self._after.pop(event.id)
            records[name] = after
        for name, after in records.items():
            self.store.set_tags(name, None, {PUBLISHED: json.dumps(after)})
