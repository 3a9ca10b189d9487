"""The hyperparameters kubetune tunes, as plain data: names, kinds, bounds, defaults,
the default search space, sampler and pruner names. Shared by the tuning service
(services/tuning/space.py builds its rules on it), the CLI and the UI, which import
nothing from services (the UI image carries no optuna): the rules themselves stay the
service's, and the CLI and the Tune page ask it (CreateStudy with validate_only)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from kubetune.tuning.v1 import tuning_pb2 as pb

MAX_LAYERS = 16
MAX_UNITS = 8192
MAX_EPOCHS = 10_000
ACTIVATIONS = ("relu", "tanh", "gelu", "leaky_relu", "silu", "elu")
OPTIMIZERS = ("adam", "adamw", "sgd")
# Training precision (Lightning's names): fp32, or autocast to bfloat16 / float16 (with
# gradient scaling) for the matrix products; weights and the logged model stay fp32.
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
# Float hyperparameters with the bounds a value may take.
FLOAT_PARAMS = {
    "learning_rate": (1e-8, 10.0),
    "dropout": (0.0, 0.95),
    "weight_decay": (0.0, 1.0),
    "momentum": (0.0, 0.999),
}
INT_PARAMS = {
    "n_layers": (1, MAX_LAYERS),
    "units": (1, MAX_UNITS),
    "batch_size": (1, 65536),
    "max_epochs": (1, MAX_EPOCHS),
}
CATEGORICAL_PARAMS = {"activation": ACTIVATIONS, "optimizer": OPTIMIZERS, "precision": PRECISIONS}
PER_LAYER_UNITS = re.compile(r"^units_l(\d+)$")

# What a trial uses for a hyperparameter the search space leaves out.
DEFAULTS = {
    "learning_rate": 1e-3,
    "dropout": 0.0,
    "weight_decay": 0.0,
    "momentum": 0.9,
    "n_layers": 2,
    "units": 32,
    "batch_size": 32,
    "activation": "relu",
    "optimizer": "adam",
    "precision": "32",
}

# What a study searches when its spec names no hyperparameter: the Tune page's ticked
# ranges and `kubetune study create` without range flags. A grid sampler gets none (it
# needs choices), so a grid without a space is still refused.
# name -> (low, high, log): a float range for a float hyperparameter, else an int range.
DEFAULT_RANGES = {
    "learning_rate": (1e-5, 1e-1, True),
    "dropout": (0.2, 0.4, False),
    "n_layers": (1, 5, False),
    "units": (4, 128, True),
}
# The same, as the messages the UI and the CLI send.
DEFAULT_SEARCH_SPACE = tuple(
    pb.ParamSpec(name=name, float_range=pb.FloatRange(low=low, high=high, log=log)) if name in FLOAT_PARAMS
    else pb.ParamSpec(name=name, int_range=pb.IntRange(low=low, high=high, log=log))
    for name, (low, high, log) in DEFAULT_RANGES.items()
)
# numpy (behind every Optuna sampler) takes seeds below 2**32, and a worker adds the
# ticket's sequence to the study's seed: a study's seed stays below 2**31.
MAX_SEED = 2**31 - 1


SAMPLER_NAMES = {
    pb.SAMPLER_UNSPECIFIED: "tpe",
    pb.SAMPLER_TPE: "tpe",
    pb.SAMPLER_RANDOM: "random",
    pb.SAMPLER_CMAES: "cmaes",
    pb.SAMPLER_QMC: "qmc",
    pb.SAMPLER_NSGA2: "nsga2",
    pb.SAMPLER_GRID: "grid",
}
PRUNER_NAMES = {
    pb.PRUNER_UNSPECIFIED: "median",
    pb.PRUNER_MEDIAN: "median",
    pb.PRUNER_HYPERBAND: "hyperband",
    pb.PRUNER_SUCCESSIVE_HALVING: "successive_halving",
    pb.PRUNER_NONE: "none",
}


def kind_of(name: str) -> str | None:
    """"float", "int" or "categorical"; None for a name kubetune does not tune."""
    if name in FLOAT_PARAMS:
        return "float"
    if name in INT_PARAMS or PER_LAYER_UNITS.match(name):
        return "int"
    if name in CATEGORICAL_PARAMS:
        return "categorical"
    return None


KNOWN = ", ".join([*FLOAT_PARAMS, *INT_PARAMS, "units_l0..", *CATEGORICAL_PARAMS])


def format_value(value) -> str:
    """How a parameter value is shown: '0.001', '64', 'adam'."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def space_size(search_space: Iterable[pb.ParamSpec]) -> float:
    """Number of distinct points; inf when any dimension is continuous (a float range,
    or a log-scaled int range)."""
    size = 1.0
    for p in search_space:
        domain = p.WhichOneof("domain")
        if domain == "categorical":
            size *= len(p.categorical.choices)
        elif domain == "int_range" and not p.int_range.log:
            size *= (p.int_range.high - p.int_range.low) // (p.int_range.step or 1) + 1
        else:
            return math.inf
    return size
