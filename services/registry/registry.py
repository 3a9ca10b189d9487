"""The registry domain: versions from trial runs with their lineage, aliases, tags.
Knows no gRPC and no NATS: its changes are announced by the outbox (outbox.py), which
`on_change` tells."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from kubetune_common.errors import FailedPrecondition, InvalidArgument, NotFound
from kubetune_common.prediction_input import KINDS, NUMERIC, Column
from services.common import mlflow_tags
from services.registry.outbox import PUBLISHED, nothing_published
from services.registry.store import ModelRecord, RegistryStore, VersionRecord

log = logging.getLogger(__name__)

# Version tags kubetune writes at registration: the lineage, read back by GetModel/GetLineage.
VTAG_STUDY = mlflow_tags.TAG_STUDY
VTAG_TRIAL = mlflow_tags.TAG_TRIAL
VTAG_DATASET = mlflow_tags.TAG_DATASET
VTAG_TASK = mlflow_tags.TAG_TASK
VTAG_FEATURES = mlflow_tags.TAG_FEATURES
VTAG_INPUT_SCHEMA = mlflow_tags.TAG_INPUT_SCHEMA
VTAG_METRIC_PREFIX = "kubetune.metric."
LINEAGE_TAGS = (VTAG_STUDY, VTAG_TRIAL, VTAG_DATASET, VTAG_TASK, VTAG_FEATURES, VTAG_INPUT_SCHEMA)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- ]{0,254}$")
ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,254}$")



@dataclass
class Version:
    """A model version as the API shows it: MLflow's record plus its lineage."""

    record: VersionRecord
    study_id: str = ""
    trial: int = 0
    dataset_version: str = ""
    task_kind: str = ""
    feature_names: list[str] = field(default_factory=list)
    # The input columns with their kinds; empty when the version's tags name none.
    inputs: list[Column] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # user tags (lineage tags left out)


def input_columns(tags: dict[str, str]) -> list[Column]:
    """The input columns a version's tags name: its input schema (name and kind), or
    for a model logged before kinds existed, its feature names, all numeric."""
    try:
        schema = json.loads(tags.get(VTAG_INPUT_SCHEMA, "[]"))
        columns = [Column(str(c["name"]), c.get("kind", NUMERIC)) for c in schema]
        if columns and all(c.kind in KINDS for c in columns):
            return columns
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("unreadable %s tag: %.200s", VTAG_INPUT_SCHEMA, tags.get(VTAG_INPUT_SCHEMA))
    try:
        return [Column(str(f)) for f in json.loads(tags.get(VTAG_FEATURES, "[]"))]
    except (ValueError, TypeError):
        return []


def version_view(record: VersionRecord) -> Version:
    tags = record.tags
    inputs = input_columns(tags)
    metrics = {}
    for key, value in tags.items():
        if key.startswith(VTAG_METRIC_PREFIX):
            try:
                metrics[key[len(VTAG_METRIC_PREFIX):]] = float(value)
            except ValueError:
                pass
    trial = tags.get(VTAG_TRIAL, "")
    user = {k: v for k, v in tags.items() if k not in LINEAGE_TAGS and not k.startswith(VTAG_METRIC_PREFIX)}
    return Version(
        record=record, study_id=tags.get(VTAG_STUDY, ""), trial=int(trial) if trial.isdigit() else 0,
        dataset_version=tags.get(VTAG_DATASET, ""), task_kind=tags.get(VTAG_TASK, ""),
        feature_names=[c.name for c in inputs], inputs=inputs, metrics=metrics, tags=user,
    )


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise InvalidArgument(
            f"model name {name!r}: letters, digits, '_', '-', '.', ' ' (no '/', '@' or ':'), at most 255 characters"
        )
    return name


def check_alias(alias: str) -> str:
    if not ALIAS.match(alias or "") or re.fullmatch(r"[vV]\d+", alias) or alias == "latest":
        raise InvalidArgument(f"alias {alias!r}: a letter or '_' first, then letters, digits, '_' or '-' "
                              "(not 'latest' nor v<number>)")
    return alias


def parse_model_ref(ref: str) -> tuple[str, str | None, str | None]:
    """`name@alias` or `name/version` -> (name, alias, version). Registry names only:
    a path or URI is refused, so Predict can never load arbitrary files."""
    if "://" in ref or ref.startswith(("/", ".")) or ":" in ref:
        raise InvalidArgument(f"model {ref!r}: give a registered model as name@alias or name/version, not a URI or path")
    if "@" in ref:
        name, _, alias = ref.partition("@")
        return check_name(name), check_alias(alias), None
    name, sep, version = ref.rpartition("/")
    if not sep or not version.isdigit():
        raise InvalidArgument(f"model {ref!r}: use name@alias (e.g. mymodel@champion) or name/version (e.g. mymodel/3)")
    return check_name(name), None, version


class Registry:
    def __init__(self, store: RegistryStore):
        self.store = store
        # One registration of a run as a model at a time in this process; across replicas
        # the versions made concurrently are reconciled after the fact (see _register_once).
        self._registering: dict[tuple[str, str], asyncio.Lock] = {}
        # Called with a model's name after its aliases or versions changed here.
        self.on_change: list[Callable[[str], None]] = []

    def _changed(self, name: str) -> None:
        for callback in self.on_change:
            callback(name)

    async def _call(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    async def register(self, run_id: str, name: str, description: str = "", tags: dict[str, str] | None = None,
                       alias: str = "") -> Version:
        check_name(name)
        if alias:
            check_alias(alias)
        if not run_id:
            raise InvalidArgument("run_id is required")
        try:
            run = await self._call(self.store.get_run, run_id)
        except NotFound as exc:
            raise NotFound(f"run {run_id} not found") from exc
        state = run.tags.get(mlflow_tags.TAG_STATE, "")
        trial = run.tags.get(mlflow_tags.TAG_TRIAL, "?")
        if state in ("PRUNED", "FAIL") or run.tags.get(mlflow_tags.TAG_KIND) == mlflow_tags.KIND_STUDY:
            what = "a study's parent run" if run.tags.get(mlflow_tags.TAG_KIND) == mlflow_tags.KIND_STUDY else \
                f"trial {trial} was {'pruned' if state == 'PRUNED' else 'a failure'}" + \
                (f" ({run.tags[mlflow_tags.TAG_REASON]})" if run.tags.get(mlflow_tags.TAG_REASON) else "")
            raise FailedPrecondition(f"run {run_id} has no model to register: {what}; "
                                     "only completed trials log a model")
        source = await self._call(self.store.model_source, run, run.tags.get(mlflow_tags.TAG_MODEL_URI, ""))
        if source is None:
            raise FailedPrecondition(
                f"run {run_id} has no model to register: nothing at {mlflow_tags.model_uri(run_id)}"
                + (f" (trial state {state})" if state else "")
            )
        async with self._registering.setdefault((name, run_id), asyncio.Lock()):
            record = await self._register_once(run, name, source, description, tags)
        if alias:
            return await self.set_alias(name, alias, record.version)
        return version_view(record)

    async def _register_once(self, run, name: str, source, description: str, tags: dict[str, str] | None) -> VersionRecord:
        """One version per (model, run), however often or concurrently it is asked for."""
        run_id = run.run_id
        existing = await self._call(self.store.versions, name, run_id)
        if existing:
            # A retried call: the run is already a version of this model.
            return min(existing, key=lambda v: int(v.version))
        version_tags = {k: run.tags[k] for k in LINEAGE_TAGS if run.tags.get(k)}
        # The saved epoch's values, as every summary shows them (not the last epoch's).
        metrics = mlflow_tags.summary_metrics(run.metrics)
        version_tags.update({VTAG_METRIC_PREFIX + k: repr(float(v)) for k, v in metrics.items()})
        version_tags.update(tags or {})
        await self._call(self.store.ensure_model, name, description, {PUBLISHED: nothing_published()})
        record = await self._call(self.store.create_version, name, source, run_id, version_tags, description)
        # MLflow cannot refuse a second version of a run: another replica may have made one
        # at the same moment. The lowest version stands; a later one is deleted by its maker.
        first = min(await self._call(self.store.versions, name, run_id), key=lambda v: int(v.version))
        if first.version != record.version:
            log.warning("model %s: run %s was registered concurrently as version %s; version %s removed",
                        name, run_id, first.version, record.version)
            await self._call(self.store.delete_version, name, record.version)
            return first
        self._changed(name)
        return record

    async def list_models(self, name_contains: str = "") -> list[tuple[ModelRecord, list[Version]]]:
        models = await self._call(self.store.list_models, name_contains)
        return [(m, [version_view(v) for v in m.versions]) for m in models]

    async def get_model(self, name: str) -> tuple[ModelRecord, list[Version]]:
        check_name(name)
        model = await self._call(self.store.get_model, name)
        return model, [version_view(v) for v in model.versions]

    async def set_alias(self, name: str, alias: str, version: str) -> Version:
        check_name(name), check_alias(alias)
        if not version.isdigit():
            raise InvalidArgument(f"version {version!r}: a version number")
        await self._call(self.store.get_version, name, version)  # NOT_FOUND before any change
        await self._call(self.store.set_alias, name, alias, version)
        self._changed(name)
        return version_view(await self._call(self.store.get_version, name, version))

    async def delete_alias(self, name: str, alias: str) -> None:
        check_name(name), check_alias(alias)
        await self._call(self.store.version_by_alias, name, alias)  # NOT_FOUND for an unknown alias
        await self._call(self.store.delete_alias, name, alias)
        self._changed(name)

    async def set_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        check_name(name)
        reserved = [k for k in tags if k in LINEAGE_TAGS or k == PUBLISHED or k.startswith(VTAG_METRIC_PREFIX)]
        if reserved:
            raise InvalidArgument(f"tags {', '.join(reserved)} are lineage kubetune keeps; choose other keys")
        await self._call(self.store.set_tags, name, version or None, tags)

    async def delete_version(self, name: str, version: str) -> None:
        check_name(name)
        await self._call(self.store.delete_version, name, version)
        self._changed(name)

    async def resolve(self, ref: str) -> VersionRecord:
        name, alias, version = parse_model_ref(ref)
        try:
            if alias:
                return await self._call(self.store.version_by_alias, name, alias)
            return await self._call(self.store.get_version, name, version)
        except NotFound as exc:
            raise NotFound(f"model {ref!r} not found: no registered model {name!r} with "
                           + (f"alias {alias!r}" if alias else f"version {version}")) from exc

    async def lineage(self, *, model: str = "", run_id: str = "", dataset_version: str = "") -> list[Version]:
        if model:
            return [version_view(await self.resolve(model))]
        if run_id:
            return [version_view(v) for v in await self._call(self.store.versions, None, run_id)]
        if dataset_version:
            return [version_view(v) for v in await self._call(self.store.versions, None, None,
                                                               (VTAG_DATASET, dataset_version))]
        raise InvalidArgument("give one of model, run_id or dataset_version")
