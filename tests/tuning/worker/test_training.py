"""The worker's training on the seed data: its loop, device, precision and pruning."""

import mlflow
import numpy as np
import optuna
import pandas as pd
import pydantic
import pytest
import torch

from services.tuning.worker import baseline, metrics
from services.tuning.worker.tabular_model import (FIRST_CATEGORY, UNKNOWN, InputError, Preprocessing, TabularNet,
                                                 embedding_dim)
from services.common import mlflow_tags, packed_model
from services.tuning.worker.config import Settings
from services.tuning.worker.training import (EpochEndPruning, TabularModule, prepare, resolve_device, split_indices,
                                             train)
from services.tuning.worker.trials import TrialRunner, log_model, split_metrics
from tests.conftest import SEED

PARAMS = dict(learning_rate=1e-2, dropout=0.0, weight_decay=0.0, momentum=0.9, n_layers=2, units=16,
              layer_units=[16, 16], batch_size=16, activation="relu", optimizer="adam", max_epochs=8)


def numeric(frame: pd.DataFrame) -> dict[str, str]:
    return {c: "numeric" for c in frame.columns}


@pytest.fixture(scope="module")
def seed_data():
    x = pd.read_csv(SEED / "X.csv", header=None).iloc[:, 1:]
    x.columns = [f"x{i}" for i in range(5)]
    y = pd.read_csv(SEED / "y.csv", header=None).iloc[: len(x), 0].to_numpy()
    return prepare(x, numeric(x), y, seed=42)


def test_split_is_80_10_10_fixed_and_disjoint():
    a, b = split_indices(99, 7), split_indices(99, 7)
    assert [len(a[k]) for k in ("train", "val", "test")] == [79, 10, 10]
    assert all((a[k] == b[k]).all() for k in a)
    assert len(set(np.concatenate(list(a.values())))) == 99


def test_loss_is_a_real_mse_not_a_broadcast(seed_data):
    module = TabularModule(seed_data, PARAMS)
    x_num, x_cat, y = (t[:8] for t in seed_data.split("train"))
    out = module(x_num, x_cat)
    assert out.shape == y.shape == (8,)
    assert torch.isclose(module.loss_fn(out, y), ((out - y) ** 2).mean())


def test_training_reports_each_epoch_and_keeps_the_best_weights(seed_data):
    seen = []
    result = train(seed_data, PARAMS, seed=1, patience=100, on_epoch=seen.append)
    assert [e.epoch for e in seen] == list(range(8))
    best = min(seen, key=lambda e: e.val_loss)
    assert result.best_val_loss == pytest.approx(best.val_loss) and result.best_epoch == best.epoch
    module = TabularModule(seed_data, PARAMS)
    module.net.load_state_dict(result.state_dict)
    module.eval()
    with torch.no_grad():
        x_num, x_cat, y = seed_data.split("val")
        val = module.loss_fn(module(x_num, x_cat), y).item()
    assert val == pytest.approx(result.best_val_loss, rel=1e-5)


def test_early_stopping_and_stop_requests(seed_data):
    params = {**PARAMS, "max_epochs": 200, "learning_rate": 0.05}
    stopped = train(seed_data, params, seed=1, patience=2)
    assert len(stopped.history) < 200 and len(stopped.history) - 1 - stopped.best_epoch <= 2
    asked = train(seed_data, params, seed=1, patience=500, should_stop=lambda: True)
    assert len(asked.history) == 1 and asked.stopped_by_request


def test_classification_logs_accuracy():
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    y = (x["a"] + x["b"] > 0).to_numpy().astype(np.int64)
    data = prepare(x, numeric(x), y, seed=1, classes=["no", "yes"])
    result = train(data, {**PARAMS, "max_epochs": 15}, seed=0, patience=50)
    assert 0.0 <= result.history[-1].val_accuracy <= 1.0
    assert max(e.val_accuracy for e in result.history) >= 0.8


def test_a_trials_run_is_created_while_it_trains_and_its_events_keep_their_order():
    """The worker creates the MLflow run in the background; epochs that end before the
    run id is known wait, then go out after trial_started, in order."""
    from concurrent.futures import Future

    from services.tuning.worker.trials import EpochResult, _announced, _RunWhileTraining

    sent = []
    creating = Future()
    run = _RunWhileTraining(creating, lambda rid: sent.append(("started", rid)),
                            lambda rid, e: sent.append(("epoch", rid, e.epoch)))
    epoch = lambda n: EpochResult(epoch=n, train_loss=1.0, val_loss=1.0, val_accuracy=float("nan"), elapsed_s=0.1)  # noqa: E731
    run.epoch(epoch(0))
    run.epoch(epoch(1))
    assert sent == []  # the run id is not known yet: nothing can name it
    creating.set_result("r1")
    run.epoch(epoch(2))
    run.epoch(epoch(3))
    assert run.announce() == "r1"
    assert sent == [("started", "r1"), ("epoch", "r1", 0), ("epoch", "r1", 1), ("epoch", "r1", 2), ("epoch", "r1", 3)]

    failed = Future()
    failed.set_exception(RuntimeError("tracking unavailable"))
    broken = _RunWhileTraining(failed, lambda rid: None, lambda rid, e: None)
    with pytest.raises(RuntimeError):
        broken.epoch(epoch(0))  # the trial fails with the reason
    assert _announced(broken) == "" and _announced(None) == ""


def test_stratified_split_keeps_each_class_share_in_every_split():
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    idx = split_indices(1000, 3, labels)
    assert sorted(np.concatenate(list(idx.values())).tolist()) == list(range(1000))
    assert [len(idx[k]) for k in ("train", "val", "test")] == [800, 100, 100]
    for k in ("val", "test"):
        assert np.bincount(labels[idx[k]], minlength=3).tolist() == [90, 9, 1]
    assert (split_indices(1000, 3, labels)["val"] == idx["val"]).all()


def test_preprocessing_is_fitted_on_training_rows_and_handles_what_it_never_saw():
    """Medians, scales and vocabularies come from the training rows alone; a missing
    number is imputed with a missing indicator, a missing or unseen category has a slot."""
    frame = pd.DataFrame({
        "size": [1.0, 2.0, np.nan, 4.0, 100.0, 200.0],
        "colour": ["red", "blue", None, "red", "green", "green"],
        "member": ["yes", "no", "yes", None, "no", "yes"],
    })
    kinds = {"size": "numeric", "colour": "categorical", "member": "boolean"}
    prep = Preprocessing.fit(frame, kinds, train=np.array([0, 1, 2, 3]), y=np.arange(6.0))
    size, colour, member = prep.columns
    assert size["median"] == 2.0 and size["indicator"] and colour["categories"] == ["blue", "red"]
    assert member["indicator"] is True and prep.y_mean == pytest.approx(1.5)
    numeric, codes = prep.transform(pd.DataFrame({
        "member": [True, None], "colour": ["red", "purple"], "size": [None, 4.0], "extra": [1, 2]}))
    assert codes[:, 0].tolist() == [FIRST_CATEGORY + 1, UNKNOWN]
    assert numeric[0, 1] == 1.0 and numeric[1, 1] == 0.0  # the missing indicator
    assert numeric[0, 0] == pytest.approx((2.0 - size["mean"]) / size["std"])
    with pytest.raises(InputError, match="row 1, column 'size': 'abc' is not a number"):
        prep.transform(pd.DataFrame({"size": ["1", "abc"], "colour": ["red", "red"], "member": [1, 0]}))
    with pytest.raises(InputError, match="missing input columns: colour"):
        prep.transform(pd.DataFrame({"size": [1.0], "member": [1]}))


def test_split_metrics_match_scikit_learn():
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 300)
    proba = rng.dirichlet(np.ones(3), 300)
    got = metrics.classification(truth, proba)
    assert got["accuracy"] == pytest.approx(sklearn.accuracy_score(truth, proba.argmax(1)))
    assert got["f1_macro"] == pytest.approx(sklearn.f1_score(truth, proba.argmax(1), average="macro"))
    assert got["log_loss"] == pytest.approx(sklearn.log_loss(truth, proba, labels=[0, 1, 2]))
    binary = rng.integers(0, 2, 300)
    score = np.round(rng.random(300), 1)  # ties
    p2 = np.column_stack([1 - score, score])
    assert metrics.classification(binary, p2)["roc_auc"] == pytest.approx(sklearn.roc_auc_score(binary, score))
    y, yhat = rng.normal(size=100), rng.normal(size=100)
    got = metrics.regression(y, yhat)
    assert got["rmse"] == pytest.approx(np.sqrt(sklearn.mean_squared_error(y, yhat)))
    assert got["mae"] == pytest.approx(sklearn.mean_absolute_error(y, yhat))
    assert got["r2"] == pytest.approx(sklearn.r2_score(y, yhat))


def test_a_network_learns_from_categories_and_missing_values():
    """The category carries the signal: a model that could not read it would fail."""
    rng = np.random.default_rng(5)
    n = 1200
    colour = rng.choice(["red", "green", "blue", "cyan"], n)
    size = rng.normal(size=n)
    y = np.select([colour == "red", colour == "green", colour == "blue"], [3.0, -2.0, 0.5], -1.0) + 0.5 * size
    size[rng.random(n) < 0.1] = np.nan
    colour = np.where(rng.random(n) < 0.05, None, colour)
    frame = pd.DataFrame({"colour": colour, "size": size})
    data = prepare(frame, {"colour": "categorical", "size": "numeric"}, y, seed=0)
    result = train(data, {**PARAMS, "max_epochs": 60, "learning_rate": 0.01}, seed=0, patience=20)
    scores = split_metrics(result.architecture, result.state_dict, data)
    assert scores["test/r2"] > 0.8, scores


# 97 rows a chunk: the ridge's X'X summed over several chunks (the last one short) without
# one-hot inputs gives scikit-learn's fit on the one-hot inputs all the same.
@pytest.mark.parametrize("chunk_rows", [baseline.CHUNK_ROWS, 97])
def test_baseline_is_scikit_learns_ridge_and_logistic_regression_on_the_same_inputs(chunk_rows, monkeypatch):
    monkeypatch.setattr(baseline, "CHUNK_ROWS", chunk_rows)
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(2)
    n = 600
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                          "c": rng.choice(["x", "y", "z"], n), "d": rng.choice(list("pqrstu"), n)})
    y = (2 * frame["a"].to_numpy() - frame["b"].to_numpy() + (frame["c"] == "x") * 1.5 - (frame["d"] == "q")
         + rng.normal(size=n) * 0.3)
    kinds = {"a": "numeric", "b": "numeric", "c": "categorical", "d": "categorical"}
    data = prepare(frame, kinds, y, seed=0)
    fitted = baseline.fit(data)
    inputs = {k: baseline.linear_inputs(data, k).numpy() for k in ("train", "test")}
    ridge = linear_model.Ridge(alpha=1.0).fit(inputs["train"], data.y["train"].numpy())
    expected = ridge.predict(inputs["test"]) * data.y_std + data.y_mean
    truth = data.y["test"].numpy() * data.y_std + data.y_mean
    assert fitted.model == "ridge regression"
    assert fitted.metrics["test/rmse"] == pytest.approx(np.sqrt(np.mean((expected - truth) ** 2)), rel=1e-4)
    labels = (y > np.median(y)).astype(np.int64)
    data = prepare(frame, kinds, labels, seed=0, classes=["lo", "hi"])
    fitted = baseline.fit(data)
    inputs = {k: baseline.linear_inputs(data, k).numpy() for k in ("train", "test")}
    logistic = linear_model.LogisticRegression(C=1.0, max_iter=1000).fit(inputs["train"], data.y["train"].numpy())
    assert fitted.model == "logistic regression"
    proba = logistic.predict_proba(inputs["test"])[np.arange(len(inputs["test"])), data.y["test"].numpy()]
    assert fitted.metrics["test/log_loss"] == pytest.approx(-np.mean(np.log(proba)), rel=1e-3)


def test_folds_cover_training_and_validation_rows_and_keep_the_test_split():
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"a": rng.normal(size=300)})
    labels = rng.integers(0, 3, 300)
    data = prepare(frame, {"a": "numeric"}, labels, seed=1, classes=["a", "b", "c"])
    folds = data.folds(5)
    vals = np.concatenate([f.rows["val"] for f in folds])
    pool = np.concatenate([data.rows["train"], data.rows["val"]])
    assert sorted(vals.tolist()) == sorted(pool.tolist())
    for f in folds:
        assert (f.rows["test"] == data.rows["test"]).all()
        assert not set(f.rows["train"]) & set(f.rows["val"])
        shares = np.bincount(labels[f.rows["val"]], minlength=3) / len(f.rows["val"])
        assert np.abs(shares - np.bincount(labels[pool], minlength=3) / len(pool)).max() < 0.05
    assert data.folds(5) is folds  # kept while the data is cached


def test_models_saved_before_the_linear_path_and_narrow_embeddings_still_load():
    """An architecture recorded without `linear_skip` and `embedding_dims` (models
    registered by earlier versions) builds the network its weights were saved from."""
    old = {"n_numeric": 3, "cardinalities": [42, 5], "n_outputs": 4, "layer_units": [8], "dropout": 0.0,
           "activation": "relu"}
    saved = TabularNet(**old).state_dict()
    assert saved["embeddings.0.weight"].shape == (42, 13) and not any(k.startswith("skip") for k in saved)
    again = TabularNet(**old)
    again.load_state_dict(saved)  # strict: same keys and shapes
    new = TabularNet(**old, linear_skip=True, embedding_dims=[embedding_dim(c) for c in old["cardinalities"]])
    assert new.embeddings[0].embedding_dim == 2 and new.skip.in_features == 3 + 2 + 2


def test_the_device_setting_is_honoured():
    """`cpu` and `auto` (the CPU where there is no CUDA) train there; `cuda` without a GPU
    is refused with the reason, never silently replaced by the CPU."""
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device here"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match=r"CUDA device\(s\)|no CUDA device here"):
        resolve_device("cuda:99")
    with pytest.raises(ValueError, match="give auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")
    assert Settings(device="cuda:1").device == "cuda:1"
    with pytest.raises(pydantic.ValidationError, match="device"):
        Settings(device="gpu")
    # The worker resolves its setting when it starts: a missing GPU stops it there.
    runner = TrialRunner(None, None, None, "w", "http://127.0.0.1:1", device="cpu")
    assert runner.device == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device here"):
            TrialRunner(None, None, None, "w", "http://127.0.0.1:1", device="cuda")


def test_data_moves_to_the_device_once(seed_data):
    """Tensors are moved once per cached dataset, not per trial or batch ("meta" stands in
    for a GPU: a device of its own that needs none)."""
    meta = torch.device("meta")
    moved = seed_data.on(meta)
    assert moved is seed_data.on(meta) and seed_data.on(torch.device("cpu")) is seed_data
    assert all(t.device == meta for split in (moved.x_num, moved.x_cat, moved.y) for t in split.values())
    result = train(seed_data, {**PARAMS, "max_epochs": 2}, seed=0, patience=5, device="cpu")
    assert all(v.device.type == "cpu" for v in result.state_dict.values())


def test_mixed_precision_trains_and_logs_a_model_that_predicts(seed_data, tmp_path):
    """bf16 autocast (the CPU has it; a GPU adds fp16): the model learns, its weights stay
    fp32, the validation loss it reports is the fp32 model's, and the logged pyfunc predicts."""
    params = {**PARAMS, "precision": "bf16-mixed", "max_epochs": 30}
    result = train(seed_data, params, seed=1, patience=100)
    fp32 = train(seed_data, {**params, "precision": "32"}, seed=1, patience=100)
    assert result.history[-1].train_loss < 0.6 * result.history[0].train_loss
    assert result.best_val_loss == pytest.approx(fp32.best_val_loss, rel=0.05)
    assert all(v.dtype == torch.float32 for v in result.state_dict.values() if v.is_floating_point())
    module = TabularModule(seed_data, params)
    module.net.load_state_dict(result.state_dict)
    assert module.evaluate(*seed_data.split("val"))[0] == pytest.approx(result.best_val_loss, rel=1e-5)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("mixed", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment)
    log_model(client, run.info.run_id, result, seed_data)
    # One file per trial; the full pyfunc is made when asked for (on registration).
    assert [a.path for a in client.list_artifacts(run.info.run_id, mlflow_tags.MODEL_ARTIFACT)] == [
        packed_model.PACKED_PATH]
    assert packed_model.package_run(uri, run.info.run_id)
    assert packed_model.package_run(uri, run.info.run_id)  # already one: nothing to do
    model = mlflow.pyfunc.load_model(f"{run.info.artifact_uri}/{mlflow_tags.MODEL_ARTIFACT}")
    assert model.metadata.get_input_schema().input_names() == [f"x{i}" for i in range(5)]
    rows = pd.read_csv(SEED / "X.csv", header=None).iloc[:5, 1:]
    rows.columns = [f"x{i}" for i in range(5)]
    predicted = model.predict(rows)["prediction"].to_numpy()
    assert predicted.shape == (5,) and np.isfinite(predicted).all()
    with pytest.raises(ValueError, match="precision 'fp8'"):
        train(seed_data, {**PARAMS, "precision": "fp8"}, seed=1, patience=5)


def test_the_pruner_sees_every_epoch_and_stops_the_trial(seed_data):
    """EpochEndPruning reports the monitored metric at each epoch to Optuna and ends the
    trial with TrialPruned when the pruner says so."""
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=1e9, n_warmup_steps=3))
    trial = study.ask()
    seen = []
    result = train(seed_data, {**PARAMS, "max_epochs": 5}, seed=0, patience=100, on_epoch=seen.append,
                   callbacks=[EpochEndPruning(trial, monitor="val_loss")])
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {e.epoch: e.val_loss for e in seen}
    assert len(result.history) == 5
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0, n_warmup_steps=2))
    trial, seen = study.ask(), []
    with pytest.raises(optuna.TrialPruned, match="epoch 2"):
        train(seed_data, {**PARAMS, "max_epochs": 8}, seed=0, patience=100, on_epoch=seen.append,
              callbacks=[EpochEndPruning(trial, monitor="val_loss")])
    assert len(seen) == 3  # the pruned epoch is reported too


def test_the_module_still_fits_under_lightnings_trainer(seed_data):
    """The loop drives the module's own steps; a Lightning Trainer (several devices) can
    fit the same module, its training_step and configure_optimizers unchanged."""
    import lightning as L

    from services.tuning.worker.training import TensorBatches

    module = TabularModule(seed_data, PARAMS)
    before = module.evaluate(*seed_data.split("val"))[0]
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=TensorBatches(seed_data.split("train"), 16, shuffle=True))
    assert module.evaluate(*seed_data.split("val"))[0] < before
