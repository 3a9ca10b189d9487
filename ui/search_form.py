"""The Tune page's search space: rows of the form -> ParamSpecs, checked inline with
the tuning service's own validation (services/tuning/space.py), so the page and the
service agree on every message."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kubetune.tuning.v1 import tuning_pb2 as pb
from ui.formatting import plural

try:  # the service's rules; the UI image may lack optuna, and then the service still checks on submit
    from services.common.errors import InvalidArgument
    from services.tuning import space
except ImportError:  # pragma: no cover - exercised only in a slim image
    space = None
    InvalidArgument = ValueError

FLOAT, INT, CHOICES = "float", "int", "choices"


@dataclass
class ParamRow:
    name: str
    kind: str
    enabled: bool = True
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)  # what choices may be picked from; empty: free text
    help: str = ""

    def spec(self) -> pb.ParamSpec:
        if self.kind == CHOICES:
            return pb.ParamSpec(name=self.name, categorical=pb.Categorical(choices=[str(c) for c in self.choices]))
        if self.low is None or self.high is None:
            raise ValueError(f"{self.name}: enter both min and max")
        if self.kind == INT:
            if not (float(self.low).is_integer() and float(self.high).is_integer()):
                raise ValueError(f"{self.name}: min and max must be whole numbers")
            return pb.ParamSpec(name=self.name, int_range=pb.IntRange(low=int(self.low), high=int(self.high),
                                                                      log=self.log))
        return pb.ParamSpec(name=self.name, float_range=pb.FloatRange(low=float(self.low), high=float(self.high),
                                                                      log=self.log))

    def error(self) -> str:
        """'' when the row is valid (or off); otherwise what is wrong, in the service's words."""
        if not self.enabled:
            return ""
        try:
            spec = self.spec()
        except ValueError as exc:
            return str(exc)
        if space is None:
            return _basic_check(spec)
        try:
            space.distribution(spec)
        except InvalidArgument as exc:
            return str(exc).removeprefix("search_space.")
        return ""


def _basic_check(spec: pb.ParamSpec) -> str:
    domain = spec.WhichOneof("domain")
    if domain == "categorical":
        return "" if spec.categorical.choices else f"{spec.name}: choices are empty"
    rng = getattr(spec, domain)
    if rng.low > rng.high:
        return f"{spec.name}: min {rng.low:g} is greater than max {rng.high:g}"
    if rng.log and rng.low <= 0:
        return f"{spec.name}: a log scale needs min > 0 (got {rng.low:g})"
    return ""


def default_rows() -> list[ParamRow]:
    """The original project's defaults, and the rest of the model family switched off."""
    return [
        ParamRow("learning_rate", FLOAT, True, 1e-5, 1e-1, log=True, help="step size of the optimizer"),
        ParamRow("dropout", FLOAT, True, 0.2, 0.4, help="fraction of units dropped in training"),
        ParamRow("n_layers", INT, True, 1, 5, help="hidden layers"),
        ParamRow("units", INT, True, 4, 128, log=True, help="units per hidden layer"),
        ParamRow("batch_size", CHOICES, False, choices=["16", "32", "64"], help="rows per step (default 32)"),
        ParamRow("optimizer", CHOICES, False, choices=["adam", "adamw"], options=["adam", "adamw", "sgd"],
                 help="default adam"),
        ParamRow("activation", CHOICES, False, choices=["relu", "tanh"],
                 options=["relu", "tanh", "gelu", "leaky_relu", "silu", "elu"], help="default relu"),
        ParamRow("weight_decay", FLOAT, False, 1e-6, 1e-2, log=True, help="L2 penalty (default 0)"),
        ParamRow("momentum", FLOAT, False, 0.8, 0.99, help="for sgd (default 0.9)"),
        ParamRow("precision", CHOICES, False, choices=["bf16-mixed"], options=["32", "bf16-mixed", "16-mixed"],
                 help="mixed precision, faster on a GPU (default 32)"),
    ]


def search_space(rows: list[ParamRow]) -> list[pb.ParamSpec]:
    return [r.spec() for r in rows if r.enabled and not r.error()]


def spec_error(spec: pb.StudySpec) -> str:
    """What the service would refuse in the whole spec (sampler vs. space, objectives...), or ''."""
    if space is None:
        return ""
    try:
        space.validate(spec, max_trials=1_000_000, max_parallel=1_000_000)
    except InvalidArgument as exc:
        return str(exc)
    return ""


def size_text(rows: list[ParamRow]) -> str:
    """How big the search space is, for the summary line. Counts every ticked row: a
    row being edited (a bound cleared, a min above its max) is still searched once fixed."""
    ticked = [r for r in rows if r.enabled]
    if not ticked:
        # An empty search space is filled in by the tuning service with its default space,
        # which these rows mirror (ticked by default).
        names = ", ".join(r.name for r in default_rows() if r.enabled)
        return f"Nothing ticked: the study searches the default space ({names})."
    wrong = [r.name for r in ticked if r.error()]
    if wrong:
        return f"{_count(len(ticked))} searched; fix {', '.join(wrong)} to see the size of the space."
    enabled = ticked
    if space is None:
        return f"{_count(len(enabled))} searched."
    dists = {r.name: space.distribution(r.spec()) for r in enabled}
    size = space.space_size(dists)
    continuous = [n for n, d in dists.items()
                  if type(d).__name__ == "FloatDistribution" or (type(d).__name__ == "IntDistribution" and d.log)]
    if math.isinf(size):
        return (f"{_count(len(enabled))} searched; continuous or log-scaled ranges "
                f"({', '.join(continuous)}) make the space unbounded.")
    return f"{_count(len(enabled))} searched; {int(size):,} distinct combinations."


def _count(n: int) -> str:
    return plural(n, "hyperparameter")
