"""The Tune page's search space: rows of the form -> ParamSpecs. A row checks only its
own shape here (both bounds, whole numbers); the rules are the tuning service's, which
the page asks as the user types (CreateStudy with validate_only), so the page and the
service agree on every message."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import hyperparams
from kubetune.tuning.v1 import tuning_pb2 as pb
from ui.formatting import plural

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
        """'' when the row has a shape the service can judge (or is off); otherwise what is missing."""
        if not self.enabled:
            return ""
        try:
            self.spec()
        except ValueError as exc:
            return str(exc)
        return ""


def default_rows() -> list[ParamRow]:
    """The original project's defaults, and the rest of the model family switched off."""
    return [
        ParamRow("learning_rate", FLOAT, True, 1e-5, 1e-1, log=True, help="step size of the optimizer"),
        ParamRow("dropout", FLOAT, True, 0.2, 0.4, help="fraction of units dropped in training"),
        ParamRow("n_layers", INT, True, 1, 5, help="hidden layers"),
        ParamRow("units", INT, True, 4, 128, log=True, help="units per hidden layer"),
        ParamRow("batch_size", CHOICES, False, choices=["16", "32", "64"], help="rows per step (default 32)"),
        ParamRow("optimizer", CHOICES, False, choices=["adam", "adamw"], options=list(hyperparams.OPTIMIZERS),
                 help="default adam"),
        ParamRow("activation", CHOICES, False, choices=["relu", "tanh"],
                 options=list(hyperparams.ACTIVATIONS), help="default relu"),
        ParamRow("weight_decay", FLOAT, False, 1e-6, 1e-2, log=True, help="L2 penalty (default 0)"),
        ParamRow("momentum", FLOAT, False, 0.8, 0.99, help="for sgd (default 0.9)"),
        ParamRow("precision", CHOICES, False, choices=["bf16-mixed"], options=["32", "bf16-mixed", "16-mixed"],
                 help="mixed precision, faster on a GPU (default 32)"),
    ]


def search_space(rows: list[ParamRow]) -> list[pb.ParamSpec]:
    return [r.spec() for r in rows if r.enabled and not r.error()]


def size_text(rows: list[ParamRow], refused: set[str] = frozenset()) -> str:
    """How big the search space is, for the summary line. Counts every ticked row: a
    row being edited (a bound cleared, a min above its max: `refused` by the service)
    is still searched once fixed."""
    ticked = [r for r in rows if r.enabled]
    if not ticked:
        # An empty search space is filled in by the tuning service with its default space,
        # which these rows mirror (ticked by default).
        names = ", ".join(r.name for r in default_rows() if r.enabled)
        return f"Nothing ticked: the study searches the default space ({names})."
    wrong = [r.name for r in ticked if r.error() or r.name in refused]
    if wrong:
        return f"{_count(len(ticked))} searched; fix {', '.join(wrong)} to see the size of the space."
    specs = [r.spec() for r in ticked]
    size = hyperparams.space_size(specs)
    if math.isinf(size):
        continuous = [p.name for p in specs if p.WhichOneof("domain") == "float_range"
                      or (p.WhichOneof("domain") == "int_range" and p.int_range.log)]
        return (f"{_count(len(ticked))} searched; continuous or log-scaled ranges "
                f"({', '.join(continuous)}) make the space unbounded.")
    return f"{_count(len(ticked))} searched; {int(size):,} distinct combinations."


def _count(n: int) -> str:
    return plural(n, "hyperparameter")
