"""StudySummary: best-so-far history, counts by state, parameter importances and
parallel-coordinates data for one study, computed from its trials once per change
of the study and cached under its revision.

It lives beside the studies it reads (it needs Optuna and scikit-learn, which the
tuning service has, and no MLflow data). `summarize` is pure: it takes the study and
its trials as plain data (`ManagedStudies` reads them off the StudyManager) and
imports Optuna only to build an in-memory study for the importance evaluator."""

from __future__ import annotations

import abc
import asyncio
import logging
import math
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from services.tuning.records import Study, StudySpec, Trial

log = logging.getLogger(__name__)

FINISHED = ("COMPLETE", "PRUNED", "FAIL")


@dataclass(frozen=True)
class ParamSpace:
    name: str
    kind: str  # float, int or categorical
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float = 0.0  # 0: continuous (float) or 1 (int)
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class StudyView:
    study_id: str
    directions: tuple[str, ...] = ("minimize",)
    search_space: tuple[ParamSpace, ...] = ()
    # Changes whenever a trial finishes or the study's state changes.
    revision: str = ""
    running: bool = False  # trials may still finish


@dataclass(frozen=True)
class TrialView:
    number: int
    state: str  # QUEUED, RUNNING, COMPLETE, PRUNED, FAIL
    params: dict[str, str] = field(default_factory=dict)
    values: tuple[float, ...] = ()
    val_loss_curve: tuple[float, ...] = ()


@dataclass(frozen=True)
class HistoryPoint:
    trial: int
    value: float
    best_so_far: float
    state: str


@dataclass
class Summary:
    study_id: str
    revision: str
    history: list[HistoryPoint]
    counts_by_state: dict[str, int]
    importances: list[tuple[str, float]]
    parallel_coordinates: list[tuple[int, dict[str, str], float]]
    importances_from: int = 0  # completed trials the importances were computed from


class StudySource(abc.ABC):
    """Where studies and their trials come from (the StudyManager, in the service)."""

    @abc.abstractmethod
    async def get_study(self, study_id: str) -> StudyView: ...

    @abc.abstractmethod
    async def list_trials(self, study_id: str) -> list[TrialView]: ...


def _distribution(space: ParamSpace):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if space.kind == "float":
        return FloatDistribution(space.low, space.high, log=space.log, step=space.step or None)
    if space.kind == "int":
        return IntDistribution(int(space.low), int(space.high), log=space.log, step=int(space.step or 1))
    return CategoricalDistribution(list(space.choices))


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _observed_space(trials: list[TrialView]) -> list[ParamSpace]:
    """A search space read off the trials, when the study's spec has none."""
    values: dict[str, set[str]] = {}
    for t in trials:
        for k, v in t.params.items():
            values.setdefault(k, set()).add(v)
    out = []
    for name, seen in sorted(values.items()):
        numbers = [_number(v) for v in seen]
        if all(n is not None for n in numbers):
            if min(numbers) < max(numbers):
                out.append(ParamSpace(name, "float", min(numbers), max(numbers)))
        elif len(seen) > 1:
            out.append(ParamSpace(name, "categorical", choices=tuple(sorted(seen))))
    return out


def _param_value(space: ParamSpace, text: str):
    if space.kind == "categorical":
        return text
    value = float(text)
    return int(round(value)) if space.kind == "int" else value


def importances(study: StudyView, trials: list[TrialView]) -> list[tuple[str, float]]:
    """Optuna's parameter importances for the first objective, most important first.
    Empty with fewer than two completed trials or nothing that varies."""
    complete = [t for t in trials if t.state == "COMPLETE" and t.values]
    if len(complete) < 2:
        return []
    import optuna

    spaces = {s.name: s for s in (study.search_space or _observed_space(complete))}
    frozen = []
    for t in complete:
        params, dists = {}, {}
        for name, text in t.params.items():
            space = spaces.get(name)
            if space is None:
                continue
            try:
                dist = _distribution(space)
                value = _param_value(space, text)
                if not dist._contains(dist.to_internal_repr(value)):
                    continue
            except (ValueError, TypeError):
                continue
            params[name], dists[name] = value, dist
        if not params:
            continue
        try:
            frozen.append(optuna.trial.create_trial(
                params=params, distributions=dists, values=list(t.values), state=optuna.trial.TrialState.COMPLETE,
            ))
        except ValueError as exc:
            log.debug("trial %d left out of importances: %s", t.number, exc)
    if len(frozen) < 2:
        return []
    directions = [optuna.study.StudyDirection.MAXIMIZE if d == "maximize" else optuna.study.StudyDirection.MINIMIZE
                  for d in study.directions] or [optuna.study.StudyDirection.MINIMIZE]
    n_values = len(frozen[0].values)
    directions = (directions + [directions[-1]] * n_values)[:n_values]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    mem = optuna.create_study(directions=directions)
    mem.add_trials(frozen)
    try:
        import sklearn  # noqa: F401 - fANOVA needs scikit-learn's random forest

        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    except ImportError:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    try:
        result = optuna.importance.get_param_importances(mem, evaluator=evaluator, target=lambda t: t.values[0])
    except (ValueError, RuntimeError) as exc:  # e.g. no parameter common to every trial
        log.info("no importances for study %s: %s", study.study_id, exc)
        return []
    finally:
        _forget_fanova_trees()
    return [(k, float(v)) for k, v in result.items()]


def _forget_fanova_trees() -> None:
    """Lets the forest of the fANOVA just computed be freed. Optuna's _FanovaTree caches its
    node look-ups with `lru_cache` on the methods, i.e. in one class-wide cache keyed by the
    tree itself, so every tree of every computation (64 a call, with their scikit-learn trees
    and arrays) stayed alive for good: the tuning service grew by 16 MB per computation at
    150 trials, 364 -> 572 MB over a 500-trial study (tests/reliability/test_soak.py;
    optuna/optuna#6859). The caches only speed up one computation; clearing them while
    another study's runs in its thread costs that one some look-ups again, nothing more."""
    try:
        from optuna.importance._fanova._tree import _FanovaTree
    except ImportError:  # scikit-learn absent (PED-ANOVA) or Optuna moved it: nothing cached here
        return
    for attribute in vars(_FanovaTree).values():
        if hasattr(attribute, "cache_clear"):
            attribute.cache_clear()


# While a study runs, importances are computed again once its completed trials have grown
# by this fraction. fANOVA over every completed trial costs O(trials); computed at every
# trial's end, as each open study page asked, a 300-trial study kept the service computing it
# (then tracking) busy on it alone and StudySummary took ~20 s (tests/reliability/test_soak.py).
# Growing geometrically, a study of n trials costs a few times one computation over n.
IMPORTANCE_GROWTH = 0.10


def summarize(study: StudyView, trials: list[TrialView], previous: Summary | None = None) -> Summary:
    """`previous`: the study's last summary, whose importances are kept while the study
    runs and has not grown by IMPORTANCE_GROWTH since they were computed."""
    maximize = bool(study.directions) and study.directions[0] == "maximize"
    better = max if maximize else min
    history, best = [], math.nan
    for t in sorted(trials, key=lambda t: t.number):
        if t.state not in FINISHED:
            continue
        if t.state == "COMPLETE" and t.values:
            value = t.values[0]
            best = value if math.isnan(best) else better(best, value)
        elif t.state == "PRUNED" and t.val_loss_curve:
            value = t.val_loss_curve[-1]  # the value the pruner judged
        else:
            value = math.nan
        history.append(HistoryPoint(t.number, value, best, t.state))
    parallel = [(t.number, dict(t.params), t.values[0]) for t in sorted(trials, key=lambda t: t.number)
                if t.state == "COMPLETE" and t.values]
    complete = sum(1 for t in trials if t.state == "COMPLETE" and t.values)
    if (previous is not None and study.running and previous.importances_from
            and complete < previous.importances_from * (1 + IMPORTANCE_GROWTH)):
        found, found_from = previous.importances, previous.importances_from
    else:
        found, found_from = importances(study, trials), complete
    return Summary(
        study_id=study.study_id,
        revision=study.revision,
        history=history,
        counts_by_state=dict(Counter(t.state for t in trials)),
        importances=found,
        parallel_coordinates=parallel,
        importances_from=found_from,
    )


class SummaryCache:
    """One summary per study, recomputed only when the study's revision changes.

    A computation, once started, finishes and is kept even when every caller has gone (a
    deadline, a closed page): shielded from their cancellation. Cancelled with its caller,
    fANOVA over a few hundred trials on a loaded machine (~30 s) outlasted the gateway's
    deadline each time, was never kept, and each new request started it again: the tuning
    service computed importances without end once the soak's study had completed, its
    event loop starved (GetStudy past 10 s) and its RSS +48% (tests/reliability/test_soak.py)."""

    def __init__(self, source: StudySource, capacity: int = 64):
        self.source = source
        self.capacity = capacity
        self._cache: OrderedDict[str, Summary] = OrderedDict()
        self._running: dict[str, asyncio.Task] = {}  # study -> its computation under way
        self.computed = 0  # how many times a summary was computed (tests read it)

    async def get(self, study_id: str) -> Summary:
        while True:
            study = await self.source.get_study(study_id)
            cached = self._cache.get(study_id)
            if cached is not None and cached.revision == study.revision:
                self._cache.move_to_end(study_id)
                return cached
            task = self._running.get(study_id)
            if task is None:
                task = asyncio.get_running_loop().create_task(self._compute(study, cached))
                self._running[study_id] = task
                task.add_done_callback(lambda _, study_id=study_id: self._running.pop(study_id, None))
            summary = await asyncio.shield(task)
            if summary.revision == study.revision:
                return summary
            # That computation was of an older revision: the study has changed since.

    async def _compute(self, study: StudyView, cached: Summary | None) -> Summary:
        trials = await self.source.list_trials(study.study_id)
        summary = await asyncio.to_thread(summarize, study, trials, cached)
        self.computed += 1
        self._cache[study.study_id] = summary
        self._cache.move_to_end(study.study_id)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return summary


def search_space(spec: StudySpec) -> tuple[ParamSpace, ...]:
    out = []
    for p in spec.search_space:
        if p.float_range is not None:
            r = p.float_range
            out.append(ParamSpace(p.name, "float", r.low, r.high, r.log, r.step))
        elif p.int_range is not None:
            r = p.int_range
            out.append(ParamSpace(p.name, "int", r.low, r.high, r.log, r.step or 1))
        elif p.categorical is not None:
            out.append(ParamSpace(p.name, "categorical", choices=tuple(p.categorical)))
    return tuple(out)


def study_view(study: Study) -> StudyView:
    directions = tuple(o.direction or "minimize" for o in study.spec.objectives) or ("minimize",)
    c = study.counts
    revision = ":".join(str(x) for x in (
        c.queued, c.running, c.complete, c.pruned, c.fail, study.state,
        ",".join(repr(v) for v in study.best_values), study.finished_at.isoformat() if study.finished_at else "",
    ))
    return StudyView(study.id, directions, search_space(study.spec), revision, running=study.state == "RUNNING")


def trial_view(t: Trial) -> TrialView:
    return TrialView(t.number, t.state or "UNSPECIFIED", dict(t.params), tuple(t.values), tuple(t.val_loss_curve))


class ManagedStudies(StudySource):
    """The studies the service's own StudyManager holds, as plain views."""

    def __init__(self, studies):
        self.studies = studies

    async def get_study(self, study_id: str) -> StudyView:
        return study_view(await self.studies.get(study_id))

    async def list_trials(self, study_id: str) -> list[TrialView]:
        return [trial_view(t) for t in await self.studies.trials(study_id, curves=True)]
