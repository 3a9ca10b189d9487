"""The tracking domain: study and trial runs, and the queries the UI asks. Knows no
gRPC and no NATS; every MLflow call goes through a TrackingStore, in a thread."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import random
from dataclasses import replace
from datetime import datetime

from kubetune_common.errors import InvalidArgument, NotFound, Unavailable
from services.common import mlflow_tags
from services.tracking.downsample import downsample
from services.tracking.records import (
    ALL_COLUMNS,
    ATTRIBUTES,
    OPS,
    Columns,
    DatasetRecord,
    ExperimentRecord,
    MetricPoint,
    RunFilter,
    RunPage,
    RunQuery,
    RunRecord,
    check_string_comparison,
)
from services.tracking.store import TrackingStore

DEFAULT_PAGE, MAX_PAGE = 100, 1000
MAX_SERIES = 10_000  # runs x keys in one GetMetricHistories
# `one_run`: rounds before giving up, the pause between them, and how long a lone run
# nobody settled is waited on before it is adopted (its creator died before settling).
ONE_RUN_ROUNDS = 200
ONE_RUN_PAUSE_S = (0.02, 0.2)
ONE_RUN_PATIENCE_S = 10.0
MAX_COMPARE = 100
KINDS = ("metric", "param", "tag", "attribute")


def _ms(value: str) -> str:
    """A time filter value (ISO 8601 or epoch milliseconds) as epoch milliseconds."""
    try:
        return str(int(value))
    except ValueError:
        pass
    try:
        return str(int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000))
    except ValueError as exc:
        raise InvalidArgument(f"time value {value!r}: use ISO 8601 or epoch milliseconds") from exc


def check_filter(f: RunFilter) -> RunFilter:
    if f.kind not in KINDS:
        raise InvalidArgument(f"filter kind {f.kind!r}: one of {', '.join(KINDS)}")
    if f.op not in OPS:
        raise InvalidArgument(f"filter operator {f.op!r}: one of {' '.join(OPS)}")
    if not f.key:
        raise InvalidArgument("a filter needs a key")
    check_string_comparison(f)
    if f.kind == "metric":
        try:
            if math.isnan(float(f.value)):
                raise ValueError
        except ValueError as exc:
            raise InvalidArgument(f"metric filter {f.key}: {f.value!r} is not a number") from exc
    if f.kind == "attribute":
        if f.key not in ATTRIBUTES:
            raise InvalidArgument(f"attribute {f.key!r}: one of {', '.join(ATTRIBUTES)}")
        if f.key in ("started_at", "ended_at"):
            return RunFilter(f.kind, f.key, f.op, _ms(f.value))
    return f


def parse_columns(columns: list[str]) -> Columns:
    """`metric:val_loss`, `param:lr`, `tag:x`, `dataset`, `model_uri`; empty: all."""
    if not columns:
        return ALL_COLUMNS
    wanted: dict[str, set[str]] = {"metric": set(), "param": set(), "tag": set()}
    extras = set()
    for c in columns:
        kind, sep, key = c.partition(":")
        if not sep and c in ("dataset", "model_uri"):
            extras.add(c)
        elif sep and kind in wanted and key:
            wanted[kind].add(key)
        else:
            raise InvalidArgument(f"column {c!r}: use metric:KEY, param:KEY, tag:KEY, dataset or model_uri")
    # A curve's name shows the saved epoch's value: read that too (see `summarised`).
    wanted["metric"] |= {mlflow_tags.SUMMARY_OF[k] for k in wanted["metric"] if k in mlflow_tags.SUMMARY_OF}
    return Columns(frozenset(wanted["metric"]), frozenset(wanted["param"]), frozenset(wanted["tag"]),
                   "dataset" in extras, "model_uri" in extras)


def summary_key(kind: str, key: str) -> str:
    """Sorting or filtering by a curve's name ranks by the saved epoch's value."""
    return mlflow_tags.SUMMARY_OF.get(key, key) if kind == "metric" else key


def summarised(runs: list[RunRecord], wanted: frozenset[str] | None = None) -> list[RunRecord]:
    """Each run's metrics as a summary shows them: a trial's `val_loss` is the value
    of the epoch whose weights were saved (the one Optuna got), not its last epoch's.
    `wanted`: the metrics asked for (the summaries read for them are dropped again)."""
    for run in runs:
        run.metrics = mlflow_tags.summary_metrics(run.metrics)
        if wanted is not None:
            run.metrics = {k: v for k, v in run.metrics.items() if k in wanted}
    return runs


class PageTokens:
    """Opaque page tokens: the next offset, bound to the query that made it."""

    @staticmethod
    def fingerprint(query: RunQuery) -> str:
        key = repr((query.experiment_ids, query.filters, query.sort_kind, query.sort_key, query.descending,
                    query.since_ms, query.until_ms))
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    @classmethod
    def encode(cls, query: RunQuery, offset: int) -> str:
        raw = json.dumps({"o": offset, "q": cls.fingerprint(query)}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, query: RunQuery, token: str) -> int:
        if not token:
            return 0
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            offset = int(data["o"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument("page_token is not one this service issued") from exc
        if data.get("q") != cls.fingerprint(query) or offset < 0:
            raise InvalidArgument("page_token belongs to another query (filters or sort changed)")
        return offset


class Tracking:
    def __init__(self, store: TrackingStore):
        self.store = store
        # Creation is idempotent per key across replicas (`one_run`); within one
        # replica, concurrent retries also wait for the first instead of racing it.
        self._locks: dict[tuple, asyncio.Lock] = {}
        # Called with the id of each trial run this process created (and so knows to have
        # no metrics yet): the event recorder then looks up none of its steps.
        self.on_run_created: list = []

    async def _call(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    def _lock(self, key: tuple) -> asyncio.Lock:
        if len(self._locks) > 10_000:
            self._locks = {k: v for k, v in self._locks.items() if v.locked()}
        return self._locks.setdefault(key, asyncio.Lock())

    async def one_run(self, experiment_id: str, wanted: dict[str, str], create, fill) -> str:
        """The one active run carrying the `wanted` tags, created with `create()` if there
        is none; `await fill(run_id, created, settle)` completes it (params, dataset) and
        writes the `settle` tags in its last write (with the params: one MLflow call, not
        two), so a settled run is whole and nobody writes it twice at once (MLflow's
        params insert would collide). Exactly one run survives however
        many tracking replicas ask at once, with MLflow's store as the only arbiter:

        each creator writes its run, then searches. Writes and searches go through one
        database, so of two creators racing, the later to search sees the other's run
        (Dekker's argument): a creator that sees only its own run keeps it and tags it
        settled; one that sees a rival deletes its own and starts over after a random
        pause. A caller that finds runs but none settled waits for the outcome."""
        settle = {mlflow_tags.TAG_SETTLED: "true"}
        settled_tags = {**wanted, **settle}
        lone_run, lone_since = None, 0.0
        for _ in range(ONE_RUN_ROUNDS):
            # Any run at all first: a new trial's (the usual case) is then one look-up, not two.
            found = await self._call(self.store.find_runs, experiment_id, wanted)
            if found:
                settled = await self._call(self.store.find_runs, experiment_id, settled_tags)
                if settled:
                    return settled[0]
                # A rival deciding, or (a lone run for a long while) one whose creator died
                # before settling it, or one made before runs were settled: adopt it.
                # The same lone run all along: a rival's run can be lone for a moment, deleted,
                # and another's lone after it; adopting one on the first's clock would write
                # to a deleted run.
                now = asyncio.get_running_loop().time()
                lone = found[0] if len(found) == 1 else None
                if lone != lone_run:
                    lone_run, lone_since = lone, now
                if lone is not None and now - lone_since >= ONE_RUN_PATIENCE_S:
                    await fill(found[0], False, settle)
                    return found[0]
                await asyncio.sleep(random.uniform(*ONE_RUN_PAUSE_S))
                continue
            mine = await self._call(create)
            rivals = [r for r in await self._call(self.store.find_runs, experiment_id, wanted) if r != mine]
            if not rivals:
                await fill(mine, True, settle)
                return mine
            await self._call(self.store.delete_run, mine)
            await asyncio.sleep(random.uniform(*ONE_RUN_PAUSE_S))
        raise Unavailable(f"no single run for {wanted} after {ONE_RUN_ROUNDS} rounds; try again")

    # --- runs for the tuning service and the workers -----------------------------
    async def create_study_run(
        self, study_id: str, dataset_name: str, dataset_version: str,
        params: dict[str, str], tags: dict[str, str],
    ) -> tuple[str, str]:
        if not study_id or not dataset_name:
            raise InvalidArgument("study_id and dataset_name are required")
        experiment_id = await self._call(self.store.get_or_create_experiment, mlflow_tags.experiment_name(dataset_name))
        wanted = {mlflow_tags.TAG_KIND: mlflow_tags.KIND_STUDY, mlflow_tags.TAG_STUDY: study_id}
        run_tags = {**tags, **wanted, mlflow_tags.TAG_STATE: "RUNNING"}
        if dataset_version:
            run_tags[mlflow_tags.TAG_DATASET] = dataset_version
        async def fill(run_id: str, created: bool, settle: dict[str, str]) -> None:
            existing = {} if created else (await self._call(self.store.get_runs, [run_id]))[0].params
            missing = {k: v for k, v in params.items() if k not in existing}
            await self._call(self.store.log_batch, run_id, [], missing, settle)

        async with self._lock(("study", study_id)):
            run_id = await self.one_run(
                experiment_id, wanted, lambda: self.store.create_run(experiment_id, study_id, run_tags), fill)
        return experiment_id, run_id

    async def create_trial_run(
        self, experiment_id: str, parent_run_id: str, study_id: str, trial: int,
        params: dict[str, str], tags: dict[str, str], dataset: DatasetRecord | None,
    ) -> str:
        if not experiment_id or not parent_run_id or not study_id:
            raise InvalidArgument("experiment_id, parent_run_id and study_id are required")
        if trial < 0:
            raise InvalidArgument(f"trial {trial}: must be 0 or more")
        wanted = {mlflow_tags.TAG_KIND: mlflow_tags.KIND_TRIAL, mlflow_tags.TAG_STUDY: study_id, mlflow_tags.TAG_TRIAL: str(trial)}
        run_tags = {**tags, **wanted, mlflow_tags.MLFLOW_PARENT: parent_run_id, mlflow_tags.TAG_STATE: "RUNNING"}
        async def fill(run_id: str, created: bool, settle: dict[str, str]) -> None:
            # Created now: all of it. Adopted (its creator died before settling it, or it
            # predates settling): what its creator may not have written. The dataset
            # first: the params' batch settles the run.
            existing = None if created else (await self._call(self.store.get_runs, [run_id]))[0]
            if dataset is not None and (existing is None or existing.dataset is None):
                await self._call(self.store.log_dataset, run_id, dataset)
            missing = {k: v for k, v in params.items() if existing is None or k not in existing.params}
            await self._call(self.store.log_batch, run_id, [], missing, settle)
            if created:
                for callback in self.on_run_created:
                    callback(run_id)

        async with self._lock(("trial", study_id, trial)):
            return await self.one_run(experiment_id, wanted, lambda: self.store.create_run(
                experiment_id, mlflow_tags.trial_run_name(study_id, trial), run_tags), fill)

    # --- queries -----------------------------------------------------------------
    async def list_experiments(self, name_contains: str = "", since_ms=None, until_ms=None) -> list[ExperimentRecord]:
        return await self._call(self.store.list_experiments, name_contains, since_ms, until_ms)

    async def list_runs(
        self, *, experiment_ids=(), study_id: str = "", filters=(), sort_kind: str = "", sort_key: str = "",
        descending: bool = False, page_size: int = 0, page_token: str = "", columns=(),
        trials_only: bool = False, since_ms=None, until_ms=None, skip: int = 0,
    ) -> tuple[RunPage, str]:
        """A page of runs and the token of the next page ('' after the last)."""
        checked = [check_filter(f) for f in filters]
        checked = [replace(f, key=summary_key(f.kind, f.key)) for f in checked]
        bad = [e for e in experiment_ids if not (e.isascii() and e.isdigit())]
        if bad:
            raise InvalidArgument(f"experiment_ids: {bad[0]!r} is not an experiment id (a number)", field="experiment_ids")
        if study_id:
            checked.append(RunFilter("tag", mlflow_tags.TAG_STUDY, "=", study_id))
        if trials_only:
            checked.append(RunFilter("tag", mlflow_tags.TAG_KIND, "=", mlflow_tags.KIND_TRIAL))
        if not sort_key:
            sort_kind, sort_key, descending = "attribute", "started_at", True
        elif not sort_kind:
            sort_kind = "metric"
        if sort_kind not in KINDS:
            raise InvalidArgument(f"sort kind {sort_kind!r}: one of {', '.join(KINDS)}")
        if sort_kind == "attribute" and sort_key not in ATTRIBUTES:
            raise InvalidArgument(f"sort attribute {sort_key!r}: one of {', '.join(ATTRIBUTES)}")
        if page_size < 0 or page_size > MAX_PAGE:
            raise InvalidArgument(f"page_size {page_size}: 1 to {MAX_PAGE} (0 means {DEFAULT_PAGE})")
        if skip < 0:
            raise InvalidArgument(f"skip {skip}: the number of runs to skip, 0 or more", field="skip")
        query = RunQuery(
            experiment_ids=tuple(experiment_ids), filters=tuple(checked), sort_kind=sort_kind,
            sort_key=summary_key(sort_kind, sort_key), descending=descending, page_size=page_size or DEFAULT_PAGE,
            columns=parse_columns(list(columns)), since_ms=since_ms, until_ms=until_ms,
        )
        offset = PageTokens.decode(query, page_token) + skip
        query = RunQuery(**{**query.__dict__, "offset": offset})
        page = await self._call(self.store.list_runs, query)
        asked = {c.partition(":")[2] for c in columns if c.startswith("metric:")}
        summarised(page.runs, frozenset(asked) if asked else None)
        token = PageTokens.encode(query, page.next_offset) if page.next_offset is not None else ""
        return page, token

    async def get_run(self, run_id: str) -> RunRecord:
        if not run_id:
            raise InvalidArgument("run_id is required")
        found = await self._call(self.store.get_runs, [run_id])
        if not found:
            raise NotFound(f"run {run_id} not found")
        return summarised(found)[0]

    async def metric_histories(
        self, run_ids: list[str], keys: list[str], max_points: int = 0
    ) -> list[tuple[str, str, list[MetricPoint], int]]:
        """(run, key, points, points before downsampling) for each series that has points."""
        run_ids, keys = list(dict.fromkeys(run_ids)), list(dict.fromkeys(keys))
        if not run_ids or not keys:
            raise InvalidArgument("give at least one run_id and one key")
        if len(run_ids) * len(keys) > MAX_SERIES:
            raise InvalidArgument(f"{len(run_ids)} runs x {len(keys)} keys: at most {MAX_SERIES} series per call")
        if max_points < 0:
            raise InvalidArgument("max_points: 0 (every point) or more")
        series = await self._call(self.store.metric_histories, run_ids, keys)
        out = []
        for run_id in run_ids:
            for key in keys:
                points = series.get((run_id, key))
                if points:
                    out.append((run_id, key, downsample(points, max_points), len(points)))
        return out

    async def compare_runs(self, run_ids: list[str]):
        """(runs, differing params, same params, metrics); params and metrics keyed by name, then run id."""
        run_ids = list(dict.fromkeys(run_ids))
        if not run_ids or len(run_ids) > MAX_COMPARE:
            raise InvalidArgument(f"compare 1 to {MAX_COMPARE} runs")
        runs = summarised(await self._call(self.store.get_runs, run_ids))
        missing = set(run_ids) - {r.run_id for r in runs}
        if missing:
            raise NotFound(f"runs not found: {', '.join(sorted(missing))}")
        differing, same, metrics = {}, {}, {}
        for key in sorted({k for r in runs for k in r.params}):
            values = {r.run_id: r.params[key] for r in runs if key in r.params}
            (same if len(values) == len(runs) and len(set(values.values())) == 1 else differing)[key] = values
        for key in sorted({k for r in runs for k in r.metrics}):
            metrics[key] = {r.run_id: r.metrics[key] for r in runs if key in r.metrics}
        return runs, differing, same, metrics
