"""The search space and study settings: validation, Optuna distributions,
samplers and pruners, on the hyperparameters named in hyperparams/. Shared by the
tuning service (which validates) and the workers (which suggest); imports no grpc
and no nats, and takes the plain StudySpec of records.py."""

from __future__ import annotations

import dataclasses
import math
import re
import secrets

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hyperparams import (  # noqa: F401 - the names the service and workers read as space.X
    ACTIVATIONS, CATEGORICAL_PARAMS, DEFAULT_RANGES, DEFAULTS, FLOAT_PARAMS, INT_PARAMS, KNOWN, MAX_EPOCHS,
    MAX_LAYERS, MAX_SEED, MAX_UNITS, OPTIMIZERS, PER_LAYER_UNITS, PRECISIONS, PRUNER_NAMES, SAMPLER_NAMES, format_value,
    kind_of,
)
from kubetune_common.errors import InvalidArgument
from services.tuning.records import ParamSpec, Range, StudySpec

SAMPLERS = frozenset(SAMPLER_NAMES.values())
PRUNERS = frozenset(PRUNER_NAMES.values())
# What a study searches when its spec names no hyperparameter (hyperparams/ writes the
# same as the messages the UI and the CLI send).
DEFAULT_SPACE = tuple(
    ParamSpec(name, **{"float_range" if name in FLOAT_PARAMS else "int_range": Range(low, high, log)})
    for name, (low, high, log) in DEFAULT_RANGES.items()
)

OBJECTIVE_METRICS = {"val_loss", "val_accuracy", "train_loss", "duration_s", "n_params"}
STUDY_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def param_kind(name: str) -> str:
    kind = kind_of(name)
    if kind is None:
        raise InvalidArgument(f"search_space: unknown hyperparameter {name!r}; known: {KNOWN}", field="search_space")
    return kind


def _is_int_like(text: str) -> bool:
    try:
        return float(text) == int(float(text))
    except ValueError:
        return False


def _bounds(name: str) -> tuple[float, float]:
    if name in FLOAT_PARAMS:
        return FLOAT_PARAMS[name]
    if name in INT_PARAMS:
        return INT_PARAMS[name]
    return INT_PARAMS["units"]


def sampler_of(spec: StudySpec) -> str:
    return spec.sampler or "tpe"


def pruner_of(spec: StudySpec) -> str:
    return spec.pruner or "median"


def distribution(spec: ParamSpec) -> BaseDistribution:
    """The Optuna distribution of one parameter, validated; errors name the field."""
    field = f"search_space.{spec.name}"
    kind = param_kind(spec.name)
    domain = spec.domain
    if domain is None:
        raise InvalidArgument(f"{field}: give a float_range, int_range or categorical", field=field)
    if domain == "categorical":
        choices = list(spec.categorical)
        if not choices:
            raise InvalidArgument(f"{field}: choices are empty", field=field)
        if len(set(choices)) != len(choices):
            raise InvalidArgument(f"{field}: choices repeat a value", field=field)
        if kind == "categorical":
            allowed = CATEGORICAL_PARAMS[spec.name]
            bad = [c for c in choices if c not in allowed]
            if bad:
                raise InvalidArgument(f"{field}: {bad[0]!r} is not one of {', '.join(allowed)}", field=field)
            return CategoricalDistribution(choices)
        low, high = _bounds(spec.name)
        values = []
        for c in choices:
            try:
                v = float(c)
            except ValueError:
                raise InvalidArgument(f"{field}: choice {c!r} is not a number", field=field) from None
            if kind == "int" and not _is_int_like(c):
                raise InvalidArgument(f"{field}: choice {c!r} is not a whole number", field=field)
            if not (math.isfinite(v) and low <= v <= high):
                raise InvalidArgument(f"{field}: choice {c!r} is outside [{low:g}, {high:g}]", field=field)
            values.append(int(float(c)) if kind == "int" else v)
        return CategoricalDistribution(values)
    if kind == "categorical":
        raise InvalidArgument(f"{field}: {spec.name} takes categorical choices", field=field)
    rng = spec.float_range if domain == "float_range" else spec.int_range
    low, high, log = rng.low, rng.high, rng.log
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InvalidArgument(f"{field}: bounds must be finite numbers", field=field)
    if low > high:
        raise InvalidArgument(f"{field}: min {low:g} is greater than max {high:g}", field=field)
    if log and low <= 0:
        raise InvalidArgument(f"{field}: a log scale needs min > 0 (got {low:g})", field=field)
    lo_ok, hi_ok = _bounds(spec.name)
    if low < lo_ok or high > hi_ok:
        raise InvalidArgument(f"{field}: range must lie within [{lo_ok:g}, {hi_ok:g}]", field=field)
    step = rng.step
    if step < 0:
        raise InvalidArgument(f"{field}: step must not be negative", field=field)
    if log and step not in (0, 1) and domain == "int_range":
        raise InvalidArgument(f"{field}: a log scale cannot have a step", field=field)
    if log and step and domain == "float_range":
        raise InvalidArgument(f"{field}: a log scale cannot have a step", field=field)
    if kind == "int" or domain == "int_range":
        if domain == "float_range" and not (float(low).is_integer() and float(high).is_integer()):
            raise InvalidArgument(f"{field}: {spec.name} takes whole numbers", field=field)
        return IntDistribution(int(low), int(high), log=log, step=int(step or 1))
    return FloatDistribution(low, high, log=log, step=step or None)


def distributions(spec: StudySpec) -> dict[str, BaseDistribution]:
    names = [p.name for p in spec.search_space]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise InvalidArgument(f"search_space: {sorted(dupes)[0]} is given twice", field="search_space")
    dists = {p.name: distribution(p) for p in spec.search_space}
    per_layer = sorted(int(PER_LAYER_UNITS.match(n).group(1)) for n in dists if PER_LAYER_UNITS.match(n))
    if per_layer and "units" in dists:
        raise InvalidArgument("search_space: give units (shared) or units_lN (per layer), not both", field="search_space")
    return dists


def with_defaults(spec: StudySpec) -> StudySpec:
    """The spec a study records: the default search space when none is given, and a seed
    drawn for this study when none is given (so studies do not all replay the same first
    configurations); the recorded seed reproduces the study."""
    if not spec.search_space and spec.sampler != "grid":
        spec = dataclasses.replace(spec, search_space=DEFAULT_SPACE)
    if not spec.seed:
        spec = dataclasses.replace(spec, seed=1 + secrets.randbelow(MAX_SEED))
    return spec


def objectives(spec: StudySpec) -> list[tuple[str, str]]:
    """(metric, 'minimize'|'maximize') per objective; val_loss minimised by default."""
    if not spec.objectives:
        return [("val_loss", "minimize")]
    out = []
    for i, obj in enumerate(spec.objectives):
        metric = obj.metric or "val_loss"
        if metric not in OBJECTIVE_METRICS:
            raise InvalidArgument(
                f"objectives[{i}].metric: {metric!r} is not one of {', '.join(sorted(OBJECTIVE_METRICS))}",
                field=f"objectives[{i}].metric",
            )
        direction = obj.direction or ("maximize" if metric == "val_accuracy" else "minimize")
        out.append((metric, direction))
    if len({m for m, _ in out}) != len(out):
        raise InvalidArgument("objectives: a metric is given twice", field="objectives")
    return out


MAX_CV_FOLDS = 10


def validate(spec: StudySpec, *, max_trials: int, max_parallel: int) -> dict[str, BaseDistribution]:
    """Checks everything but the dataset; returns the distributions."""
    if spec.name and not STUDY_NAME.match(spec.name):
        raise InvalidArgument(
            "name: use lowercase letters, digits, '-' and '_' (at most 63), starting with a letter or digit",
            field="name",
        )
    if not spec.dataset:
        raise InvalidArgument("dataset: name the dataset to tune on", field="dataset")
    if spec.n_trials < 1 or spec.n_trials > max_trials:
        raise InvalidArgument(f"n_trials: must be between 1 and {max_trials} (got {spec.n_trials})", field="n_trials")
    if spec.max_parallel < 0 or spec.max_parallel > max_parallel:
        raise InvalidArgument(f"max_parallel: must be between 1 and {max_parallel}", field="max_parallel")
    if not (0 <= spec.max_epochs <= MAX_EPOCHS):
        raise InvalidArgument(f"max_epochs: must be between 1 and {MAX_EPOCHS}", field="max_epochs")
    if not (0 <= spec.early_stopping_patience <= MAX_EPOCHS):
        raise InvalidArgument("early_stopping_patience: must be between 0 and the epochs", field="early_stopping_patience")
    if not (math.isfinite(spec.timeout_seconds) and spec.timeout_seconds >= 0):
        raise InvalidArgument("timeout_seconds: must be 0 (none) or a positive number", field="timeout_seconds")
    if spec.seed > MAX_SEED:
        raise InvalidArgument(f"seed: must be between 1 and {MAX_SEED} (0 draws one)", field="seed")
    if spec.pruner_warmup_epochs < 0:
        raise InvalidArgument("pruner_warmup_epochs: must not be negative", field="pruner_warmup_epochs")
    if not (0 <= spec.cv_folds <= MAX_CV_FOLDS):
        raise InvalidArgument(f"cv_folds: 0 or 1 (one validation split) or 2 to {MAX_CV_FOLDS} folds",
                              field="cv_folds")
    if sampler_of(spec) not in SAMPLERS:
        raise InvalidArgument(f"sampler: unknown value {spec.sampler}", field="sampler")
    if pruner_of(spec) not in PRUNERS:
        raise InvalidArgument(f"pruner: unknown value {spec.pruner}", field="pruner")
    dists = distributions(spec)
    objs = objectives(spec)
    sampler = sampler_of(spec)
    categorical = [n for n, d in dists.items() if isinstance(d, CategoricalDistribution)]
    if sampler == "cmaes" and categorical:
        raise InvalidArgument(
            f"sampler: CMA-ES cannot search categorical parameters ({', '.join(categorical)}); "
            "use TPE or give them ranges",
            field="sampler",
        )
    if sampler == "cmaes" and len(objs) > 1:
        raise InvalidArgument("sampler: CMA-ES handles one objective; use NSGA-II", field="sampler")
    if sampler == "grid":
        not_grid = [n for n, d in dists.items() if not isinstance(d, CategoricalDistribution)]
        if not dists or not_grid:
            raise InvalidArgument(
                f"sampler: grid needs every parameter as categorical choices ({', '.join(not_grid) or 'none given'})",
                field="sampler",
            )
    if len(objs) > 1 and sampler not in ("nsga2", "random", "tpe"):
        raise InvalidArgument("objectives: several objectives need NSGA-II, TPE or random", field="objectives")
    if len(objs) > 1 and pruner_of(spec) != "none":
        raise InvalidArgument("pruner: pruning needs a single objective; choose none", field="pruner")
    return dists


def make_sampler(spec: StudySpec, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """Rebuilt by each worker per ticket: the seed plus the ticket's sequence keeps
    parallel workers from drawing the same random points."""
    seed = (spec.seed or 42) + seed_offset
    name = sampler_of(spec)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "qmc":
        # QMC draws its sequence from the number of trials, so the seed stays the study's.
        return optuna.samplers.QMCSampler(seed=spec.seed or 42, warn_independent_sampling=False)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "grid":
        grid = {p.name: distributions(spec)[p.name].choices for p in spec.search_space}
        return optuna.samplers.GridSampler(grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    name = pruner_of(spec)
    warmup = spec.pruner_warmup_epochs or 1
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=warmup)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=warmup, max_resource=max_epochs(spec))
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=warmup)
    return optuna.pruners.NopPruner()


def max_epochs(spec: StudySpec) -> int:
    for p in spec.search_space:
        if p.name == "max_epochs" and p.int_range is not None:
            return int(p.int_range.high)
    return spec.max_epochs or 20


def suggest(trial: optuna.Trial, spec: StudySpec, dists: dict[str, BaseDistribution]) -> dict:
    """The trial's full hyperparameters: suggested where searched, defaults elsewhere."""
    params = dict(DEFAULTS)
    params["max_epochs"] = spec.max_epochs or 20
    for name, dist in dists.items():
        params[name] = _suggest(trial, name, dist)
    n_layers = int(params["n_layers"])
    params["layer_units"] = [int(params.get(f"units_l{i}", params["units"])) for i in range(n_layers)]
    return params


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution):
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
