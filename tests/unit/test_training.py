"""The worker's Lightning training on the seed data."""

import numpy as np
import pandas as pd
import pytest
import torch

from services.tuning.worker.training import TabularModule, prepare, split_indices, train
from tests.conftest import SEED

PARAMS = dict(learning_rate=1e-2, dropout=0.0, weight_decay=0.0, momentum=0.9, n_layers=2, units=16,
              layer_units=[16, 16], batch_size=16, activation="relu", optimizer="adam", max_epochs=8)


@pytest.fixture(scope="module")
def seed_data():
    x = pd.read_csv(SEED / "X.csv", header=None).iloc[:, 1:].to_numpy()
    y = pd.read_csv(SEED / "y.csv", header=None).iloc[:, 0].to_numpy()
    return prepare([f"x{i}" for i in range(5)], x, y, seed=42)


def test_split_is_80_10_10_fixed_and_disjoint():
    a, b = split_indices(99, 7), split_indices(99, 7)
    assert [len(a[k]) for k in ("train", "val", "test")] == [79, 10, 10]
    assert all((a[k] == b[k]).all() for k in a)
    assert len(set(np.concatenate(list(a.values())))) == 99


def test_loss_is_a_real_mse_not_a_broadcast(seed_data):
    module = TabularModule(seed_data, PARAMS)
    x, y = seed_data.x["train"][:8], seed_data.y["train"][:8]
    out = module(x)
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
        val = module.loss_fn(module(seed_data.x["val"]), seed_data.y["val"]).item()
    assert val == pytest.approx(result.best_val_loss, rel=1e-5)


def test_early_stopping_and_stop_requests(seed_data):
    params = {**PARAMS, "max_epochs": 200, "learning_rate": 0.05}
    stopped = train(seed_data, params, seed=1, patience=2)
    assert len(stopped.history) < 200 and len(stopped.history) - 1 - stopped.best_epoch <= 2
    asked = train(seed_data, params, seed=1, patience=500, should_stop=lambda: True)
    assert len(asked.history) == 1 and asked.stopped_by_request


def test_classification_logs_accuracy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    data = prepare(["a", "b", "c"], x, y, seed=1, classes=["no", "yes"])
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
