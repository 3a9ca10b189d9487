"""The search space's rules, on the spec as the API sends it (translated to the domain's
record as the servicer does)."""

import dataclasses
import math

import optuna
import pytest

import hyperparams
from kubetune.tuning.v1 import tuning_pb2 as pb
from kubetune_common.errors import InvalidArgument
from services.tuning import messages, space
from services.tuning.records import StudySpec


def spec(*params, **kw) -> StudySpec:
    base = dict(dataset="sample", n_trials=4)
    base.update(kw)
    return messages.spec_from_pb(pb.StudySpec(search_space=list(params), **base))


def flt(name, low, high, log=False):
    return pb.ParamSpec(name=name, float_range=pb.FloatRange(low=low, high=high, log=log))


def integer(name, low, high, step=0, log=False):
    return pb.ParamSpec(name=name, int_range=pb.IntRange(low=low, high=high, step=step, log=log))


def cat(name, *choices):
    return pb.ParamSpec(name=name, categorical=pb.Categorical(choices=list(choices)))


ORIGINAL = spec(flt("learning_rate", 1e-5, 1e-1, log=True), flt("dropout", 0.2, 0.4),
                integer("n_layers", 1, 5), integer("units", 4, 128, log=True), cat("batch_size", "8", "16", "32"))


def validate(s):
    return space.validate(s, max_trials=100, max_parallel=8)


def test_the_original_projects_ranges_are_valid():
    dists = validate(ORIGINAL)
    assert dists["learning_rate"].log and dists["units"].log
    assert dists["batch_size"].choices == (8, 16, 32)
    assert math.isinf(hyperparams.space_size(messages.spec_to_pb(ORIGINAL).search_space))


@pytest.mark.parametrize("bad, field, words", [
    (spec(flt("dropout", 0.4, 0.2)), "search_space.dropout", "greater than max"),
    (spec(flt("learning_rate", 0, 0.1, log=True)), "search_space.learning_rate", "log scale needs min > 0"),
    (spec(flt("learning_rate", -1, 0.1, log=True)), "search_space.learning_rate", "log scale"),
    (spec(cat("optimizer")), "search_space.optimizer", "choices are empty"),
    (spec(cat("optimizer", "adam", "rmsprop")), "search_space.optimizer", "'rmsprop'"),
    (spec(cat("batch_size", "8", "big")), "search_space.batch_size", "not a number"),
    (spec(cat("precision", "bf16")), "search_space.precision", "'bf16' is not one of 32, bf16-mixed, 16-mixed"),
    (spec(flt("learning_rate", float("nan"), 1)), "search_space.learning_rate", "finite"),
    (spec(integer("n_layers", 1, 500)), "search_space.n_layers", "within"),
    (spec(flt("colour", 0, 1)), "search_space", "unknown hyperparameter"),
    (spec(flt("dropout", 0.1, 0.2), flt("dropout", 0.1, 0.3)), "search_space", "given twice"),
    (spec(n_trials=0), "n_trials", "between 1 and 100"),
    (spec(n_trials=101), "n_trials", "between 1 and 100"),
    (spec(dataset=""), "dataset", "name the dataset"),
    (spec(max_parallel=9), "max_parallel", "between 1 and 8"),
    (spec(cat("optimizer", "adam", "sgd"), sampler=pb.SAMPLER_CMAES), "sampler", "CMA-ES cannot search categorical"),
    (spec(flt("dropout", 0.1, 0.2), sampler=pb.SAMPLER_GRID), "sampler", "grid needs every parameter"),
    (spec(objectives=[pb.Objective(metric="val_loss"), pb.Objective(metric="n_params")], pruner=pb.PRUNER_MEDIAN),
     "pruner", "single objective"),
    (spec(objectives=[pb.Objective(metric="f1")]), "objectives[0].metric", "'f1'"),
    (spec(name="../../etc"), "name", "lowercase"),
    (spec(timeout_seconds=-1), "timeout_seconds", "positive"),
])
def test_invalid_specs_name_their_field(bad, field, words):
    with pytest.raises(InvalidArgument) as err:
        validate(bad)
    assert err.value.field == field
    assert words in err.value.message and field.split("[")[0] in err.value.message


def test_every_sampler_and_pruner_builds_and_suggests():
    grid = spec(cat("optimizer", "adam", "sgd"), cat("batch_size", "16", "32"), sampler=pb.SAMPLER_GRID)
    numeric = spec(flt("learning_rate", 1e-4, 1e-1, log=True), integer("n_layers", 1, 3))
    for s in [numeric, grid, *[spec(dataset="d", n_trials=2, sampler=k) for k in (1, 2, 4, 5)]]:
        s = spec(dataset="d", n_trials=2) if not s.search_space and s.sampler != "nsga2" else s
        for pruner in (pb.PRUNER_MEDIAN, pb.PRUNER_HYPERBAND, pb.PRUNER_SUCCESSIVE_HALVING, pb.PRUNER_NONE):
            s = dataclasses.replace(s, pruner=messages.spec_from_pb(pb.StudySpec(pruner=pruner)).pruner)
            dists = validate(s)
            study = optuna.create_study(sampler=space.make_sampler(s), pruner=space.make_pruner(s))
            params = space.suggest(study.ask(), s, dists)
            assert len(params["layer_units"]) == params["n_layers"]
    s = spec(flt("learning_rate", 1e-4, 1e-1), sampler=pb.SAMPLER_CMAES)
    assert isinstance(space.make_sampler(s), optuna.samplers.CmaEsSampler)


def test_per_layer_units_and_defaults():
    s = spec(integer("n_layers", 3, 3), integer("units_l0", 8, 8), integer("units_l1", 16, 16))
    params = space.suggest(optuna.create_study().ask(), s, validate(s))
    assert params["layer_units"] == [8, 16, 32]  # units_l2 falls back to the shared default
    assert params["optimizer"] == "adam" and params["max_epochs"] == 20 and params["precision"] == "32"
    mixed = spec(cat("precision", "bf16-mixed"))
    assert space.suggest(optuna.create_study().ask(), mixed, validate(mixed))["precision"] == "bf16-mixed"
    with pytest.raises(InvalidArgument, match="not both"):
        validate(spec(integer("units", 4, 8), integer("units_l0", 4, 8)))


def test_different_ticket_sequences_draw_different_points():
    s = spec(flt("learning_rate", 1e-5, 1e-1, log=True), sampler=pb.SAMPLER_RANDOM)
    dists = validate(s)
    draws = {space.suggest(optuna.create_study(sampler=space.make_sampler(s, i)).ask(), s, dists)["learning_rate"]
             for i in range(5)}
    assert len(draws) == 5


def names(s: StudySpec) -> list[str]:
    return [p.name for p in s.search_space]


def test_a_spec_without_ranges_gets_the_default_space_and_its_own_seed():
    bare = spec()
    first, second = space.with_defaults(bare), space.with_defaults(bare)
    assert names(first) == ["learning_rate", "dropout", "n_layers", "units"]
    assert list(messages.spec_to_pb(first).search_space) == list(hyperparams.DEFAULT_SEARCH_SPACE)
    assert 1 <= first.seed <= space.MAX_SEED and first.seed != second.seed
    assert not bare.search_space and bare.seed == 0  # the request itself is left as sent
    dists = validate(first)
    assert dists["learning_rate"].log and (dists["n_layers"].low, dists["n_layers"].high) == (1, 5)


def test_given_ranges_and_seed_are_kept():
    chosen = space.with_defaults(spec(cat("optimizer", "sgd"), seed=7))
    assert names(chosen) == ["optimizer"] and chosen.seed == 7


def test_a_grid_without_choices_is_still_refused():
    with pytest.raises(InvalidArgument, match="grid needs every parameter"):
        validate(space.with_defaults(spec(sampler=pb.SAMPLER_GRID)))


def test_a_seed_numpy_cannot_take_is_refused():
    with pytest.raises(InvalidArgument, match=r"^seed: must be between 1 and 2147483647"):
        validate(spec(flt("dropout", 0.1, 0.2), seed=2**32))
    space.make_sampler(space.with_defaults(spec(seed=space.MAX_SEED)), seed_offset=1000)


def test_the_tune_pages_ticked_ranges_are_the_default_space():
    from ui.search_form import default_rows, search_space

    assert search_space(default_rows()) == list(hyperparams.DEFAULT_SEARCH_SPACE)


def test_a_spec_reads_back_as_sent():
    """The servicer's translation loses nothing: a study's spec is kept as its message's
    JSON and GetStudy answers it as it was sent."""
    sent = pb.StudySpec(name="s", dataset="d@2", search_space=[flt("dropout", 0.1, 0.2), integer("units", 4, 64, step=4),
                                                              cat("optimizer", "adam")],
                        objectives=[pb.Objective(metric="val_accuracy", direction=pb.DIRECTION_MAXIMIZE),
                                    pb.Objective(metric="n_params")],
                        sampler=pb.SAMPLER_NSGA2, seed=7, pruner=pb.PRUNER_NONE, n_trials=3, max_parallel=2,
                        timeout_seconds=1.5, early_stopping_patience=4, max_epochs=9, pruner_warmup_epochs=2,
                        cv_folds=3)
    # Every field set: a field added to StudySpec fails here until records.py carries it.
    assert {f.name for f, _ in sent.ListFields()} == {f.name for f in pb.StudySpec.DESCRIPTOR.fields}
    assert messages.spec_to_pb(messages.spec_from_pb(sent)) == sent
    assert messages.spec_from_json(messages.spec_to_json(messages.spec_from_pb(sent))) == messages.spec_from_pb(sent)
    assert messages.spec_to_pb(messages.spec_from_pb(pb.StudySpec())) == pb.StudySpec()


def test_an_unknown_sampler_number_is_named_in_the_refusal():
    with pytest.raises(InvalidArgument, match="sampler: unknown value 17"):
        validate(spec(flt("dropout", 0.1, 0.2), sampler=17))
