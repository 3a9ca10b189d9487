"""The CLI's range grammar: `1e-5..1e-1:log`, `4..128:log`, `1..5`, `0.1..0.5:step=0.1`,
`8,16,32`, or one value. Parsed here into ParamSpecs; their rules are the tuning
service's, which `study create` asks first (CreateStudy with validate_only)."""

from __future__ import annotations

import hyperparams
from kubetune.tuning.v1 import tuning_pb2 as pb
from kubetune_common.errors import InvalidArgument


def parse_param(name: str, text: str) -> pb.ParamSpec:
    """A ParamSpec from the grammar: int or float as the hyperparameter takes."""
    kind = hyperparams.kind_of(name)
    if kind is None:
        raise InvalidArgument(f"search_space: unknown hyperparameter {name!r}; known: {hyperparams.KNOWN}",
                              field="search_space")
    field = f"search_space.{name}"  # as the service names it; cli.flags names the flag
    text = text.strip()
    if not text:
        raise InvalidArgument(f"{field}: empty range")
    if ".." not in text:
        choices = [c.strip() for c in text.split(",")]
        if any(not c for c in choices):
            raise InvalidArgument(f"{field}: empty choice in {text!r}")
        spec = pb.ParamSpec(name=name, categorical=pb.Categorical(choices=choices))
    else:
        bounds, *mods = text.split(":")
        low_text, _, high_text = bounds.partition("..")
        try:
            low, high = float(low_text), float(high_text)
        except ValueError:
            raise InvalidArgument(f"{field}: {text!r} is not LOW..HIGH[:log][:step=S]") from None
        log, step = False, 0.0
        for mod in mods:
            if mod == "log":
                log = True
            elif mod.startswith("step="):
                try:
                    step = float(mod[5:])
                except ValueError:
                    raise InvalidArgument(f"{field}: bad step in {text!r}") from None
            else:
                raise InvalidArgument(f"{field}: unknown modifier {mod!r} (use :log or :step=S)")
        if kind == "int":
            if not (low.is_integer() and high.is_integer() and float(step).is_integer()):
                raise InvalidArgument(f"{field}: {name} takes whole numbers (got {text!r})")
            spec = pb.ParamSpec(name=name, int_range=pb.IntRange(low=int(low), high=int(high), log=log, step=int(step)))
        else:
            spec = pb.ParamSpec(name=name, float_range=pb.FloatRange(low=low, high=high, log=log, step=step))
    return spec


def describe(spec: pb.ParamSpec) -> str:
    """A ParamSpec in the grammar above, as a user would type it: '1e-05..0.1:log'."""
    domain = spec.WhichOneof("domain")
    if domain == "categorical":
        return ",".join(spec.categorical.choices)
    rng = getattr(spec, domain)
    text = f"{rng.low:g}..{rng.high:g}"
    if rng.log:
        text += ":log"
    if rng.step and not (domain == "int_range" and rng.step == 1):
        text += f":step={rng.step:g}"
    return text
