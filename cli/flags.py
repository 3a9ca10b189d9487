"""The CLI's flag rules: what a numeric flag accepts, and the API fields that error
messages name translated back to the flags a user typed.

One rule for every numeric flag: a count or a size (trials, parallel, epochs, patience,
seed, limit, ports) takes 1 or more; 0 would mean nothing, so it is refused, and
leaving the flag out gives the default that --help shows. 0 is accepted only where it
means something, and --help says what (--timeout 0: no time budget; --workers 0: no
workers; --cv 0: one validation split)."""

from __future__ import annotations

import argparse
import math
import re

# API field (as error messages name it) -> the flag that sets it. Longest match wins, so
# `search_space.learning_rate` finds --lr before `search_space` finds --param.
FIELD_FLAGS = {
    "options.target_column": "--target",
    "options.exclude_columns": "--exclude",
    "options.missing_policy": "--missing",
    "options.categorical_columns": "--categorical",
    "options.numeric_columns": "--numeric",
    "n_trials": "--trials",
    "max_parallel": "--parallel",
    "max_epochs": "--epochs",
    "early_stopping_patience": "--patience",
    "timeout_seconds": "--timeout",
    "cv_folds": "--cv",
    "seed": "--seed",
    "sampler": "--sampler",
    "pruner": "--pruner",
    "objectives": "--objective",
    "dataset": "--dataset",
    "search_space": "--param",
    "search_space.learning_rate": "--lr",
    "search_space.dropout": "--dropout",
    "search_space.n_layers": "--layers",
    "search_space.units": "--units",
    "search_space.batch_size": "--batch-size",
    "search_space.optimizer": "--optimizer",
    "search_space.activation": "--activation",
    "search_space.weight_decay": "--weight-decay",
    "search_space.momentum": "--momentum",
    "page_size": "--limit",
    "name": "--name",
}
# A message names its field first ("n_trials: must be ..."), possibly indexed
# ("objectives[1].metric: ..."), or a hyperparameter with no flag of its own
# ("search_space.units_l0: ...", set with --param units_l0=...).
_LEADING_FIELD = re.compile(r"^([a-z_]+(?:\[\d+\])?(?:\.[a-z0-9_]+)*):")


def flag_for(field: str) -> str | None:
    """The flag that sets an API field, or None when the CLI has none."""
    base = re.sub(r"\[\d+\]", "", field)
    parts = base.split(".")
    for n in range(len(parts), 0, -1):
        flag = FIELD_FLAGS.get(".".join(parts[:n]))
        if flag is not None:
            if flag == "--param" and len(parts) > 1:
                return f"--param {parts[1]}=..."
            return flag
    return None


# Inside a message only names no sentence uses otherwise are replaced ("set
# options.missing_policy to ..."); a plain word such as "dataset" is left alone there.
_NAMED_INSIDE = re.compile(r"(?<![\w.-])(" + "|".join(
    sorted((re.escape(f) for f in FIELD_FLAGS if "." in f or "_" in f), key=len, reverse=True)) + r")(?!\w|\.\w)")


def in_flag_terms(message: str) -> str:
    """An error message with the API fields it names given as the flags that set them:
    'options.target_column: no column "x"' -> '--target: no column "x"'."""
    m = _LEADING_FIELD.match(message)
    if m and (flag := flag_for(m.group(1))):
        message = f"{flag}{message[m.end(1):]}"
    return _NAMED_INSIDE.sub(lambda hit: flag_for(hit.group(1)) or hit.group(1), message)


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def count(text: str) -> int:
    """A whole number of 1 or more (argparse type)."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more (got {value}); leave the flag out for its default")
    return value


def zero_or_more(text: str) -> int:
    """A whole number of 0 or more, for flags whose --help says what 0 means."""
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more (got {value})")
    return value


def seconds(text: str) -> float:
    """A finite number of seconds, 0 or more (0: no limit, as --help says)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no limit) or a positive number of seconds (got {text})")
    return value


def port(text: str) -> int:
    """A TCP port, 1 to 65535."""
    value = count(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535 (got {value})")
    return value


def bounded(low: int, high: int):
    """A whole number in [low, high] (argparse type)."""

    def parse(text: str) -> int:
        value = count(text) if low >= 1 else zero_or_more(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high} (got {value})")
        return value

    parse.__name__ = f"between {low} and {high}"
    return parse
