"""The CLI's range grammar: `1e-5..1e-1:log`, `4..128:log`, `1..5`, `0.1..0.5:step=0.1`,
`8,16,32`, or one value. Parsed and checked before any call is made."""

from __future__ import annotations

from kubetune.tuning.v1 import tuning_pb2 as pb
from services.common.errors import InvalidArgument
from services.tuning import space


def parse_param(name: str, text: str) -> pb.ParamSpec:
    """A ParamSpec from the grammar, validated with the same rules the service applies."""
    kind = space.param_kind(name)
    text = text.strip()
    if not text:
        raise InvalidArgument(f"--{name}: empty range")
    if ".." not in text:
        choices = [c.strip() for c in text.split(",")]
        if any(not c for c in choices):
            raise InvalidArgument(f"--{name}: empty choice in {text!r}")
        spec = pb.ParamSpec(name=name, categorical=pb.Categorical(choices=choices))
    else:
        bounds, *mods = text.split(":")
        low_text, _, high_text = bounds.partition("..")
        try:
            low, high = float(low_text), float(high_text)
        except ValueError:
            raise InvalidArgument(f"--{name}: {text!r} is not LOW..HIGH[:log][:step=S]") from None
        log, step = False, 0.0
        for mod in mods:
            if mod == "log":
                log = True
            elif mod.startswith("step="):
                try:
                    step = float(mod[5:])
                except ValueError:
                    raise InvalidArgument(f"--{name}: bad step in {text!r}") from None
            else:
                raise InvalidArgument(f"--{name}: unknown modifier {mod!r} (use :log or :step=S)")
        if kind == "int":
            if not (low.is_integer() and high.is_integer() and float(step).is_integer()):
                raise InvalidArgument(f"--{name}: {name} takes whole numbers (got {text!r})")
            spec = pb.ParamSpec(name=name, int_range=pb.IntRange(low=int(low), high=int(high), log=log, step=int(step)))
        else:
            spec = pb.ParamSpec(name=name, float_range=pb.FloatRange(low=low, high=high, log=log, step=step))
    space.distribution(spec)
    return spec
