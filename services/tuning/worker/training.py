"""Training one trial with Lightning, configured lean for small tabular data.

No grpc, no nats: progress goes to an `on_epoch` callback and stopping is asked
through a `should_stop` callable, so the trainer can be tested and benchmarked alone."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import lightning as L
import numpy as np
import pandas as pd
import torch
from optuna_integration import PyTorchLightningPruningCallback
from torch import nn

from services.tuning.worker import tabular_model
from services.tuning.worker.tabular_model import Preprocessing, TabularNet

log = logging.getLogger(__name__)
for noisy in ("lightning.pytorch", "lightning.fabric", "lightning"):
    logging.getLogger(noisy).setLevel(logging.ERROR)

SPLIT = (0.8, 0.1, 0.1)


@dataclass
class TabularData:
    """Model inputs in memory, already split: numeric inputs (imputed, standardised,
    with missing indicators) and category codes, built by the model's own
    preprocessing fitted on the training split."""

    prep: Preprocessing
    x_num: dict[str, torch.Tensor]
    x_cat: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor]
    # Row numbers of each split in the stored table, and what the preprocessing was
    # fitted from: k-fold objectives re-split the training and validation rows.
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    raw_y: np.ndarray | None = None
    frame: pd.DataFrame | None = None
    kinds: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    _folds: dict[int, list["TabularData"]] = field(default_factory=dict, repr=False)

    @property
    def features(self) -> list[str]:
        return self.prep.names

    @property
    def classes(self) -> list[str]:
        return self.prep.classes

    @property
    def classification(self) -> bool:
        return bool(self.prep.classes)

    @property
    def y_mean(self) -> float:
        return self.prep.y_mean

    @property
    def y_std(self) -> float:
        return self.prep.y_std

    def spec(self) -> dict:
        return self.prep.spec()

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.x_num[name], self.x_cat[name], self.y[name]

    def folds(self, k: int) -> list["TabularData"]:
        """k train/validation splits of this split's training and validation rows, each
        with its own preprocessing fitted on its own training rows; the test rows stay
        the test split. Stratified for classification; kept while the data is cached."""
        if k not in self._folds:
            pool = np.concatenate([self.rows["train"], self.rows["val"]])
            fold_of = _fold_of(self.raw_y[pool] if self.classification else None, len(pool), k, self.seed + k)
            self._folds[k] = [
                _build(self.frame, self.kinds, self.raw_y, self.classes or None, self.seed,
                       {"train": pool[fold_of != i], "val": pool[fold_of == i], "test": self.rows["test"]})
                for i in range(k)
            ]
        return self._folds[k]


def _fold_of(labels: np.ndarray | None, n: int, k: int, seed: int) -> np.ndarray:
    """Each row's fold: dealt round-robin in a shuffled order, class by class when
    stratified (a running offset keeps the folds' sizes within one row of each other)."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(n, dtype=np.int64)
    if labels is None:
        fold_of[rng.permutation(n)] = np.arange(n) % k
        return fold_of
    offset = 0
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        fold_of[rng.permutation(rows)] = (np.arange(rows.size) + offset) % k
        offset += rows.size
    return fold_of


def split_indices(n: int, seed: int, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The fixed-seed 80/10/10 split, stratified by `labels` (class indices) when given;
    every split keeps at least one row. The worker, the baseline and bench/quality.py
    all split with this function."""
    n_val = max(1, int(round(n * SPLIT[1])))
    n_test = max(1, int(round(n * SPLIT[2])))
    n_train = n - n_val - n_test
    order = _interleaved(n, seed, labels)
    if labels is None:
        return {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
    return {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}


def _interleaved(n: int, seed: int, labels: np.ndarray | None) -> np.ndarray:
    """A shuffled order of n rows in which, with `labels`, every stretch of rows holds the
    classes in the table's proportions: each class's rows are shuffled and spread evenly
    over [0, 1), then all are sorted by that key."""
    rng = np.random.default_rng(seed)
    if labels is None:
        return rng.permutation(n)
    labels = np.asarray(labels)
    keys = np.empty(n, dtype=np.float64)
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        keys[rng.permutation(rows)] = (np.arange(rows.size) + rng.random()) / rows.size
    return np.argsort(keys, kind="stable")


def prepare(frame: pd.DataFrame, kinds: dict[str, str], y: np.ndarray, seed: int,
            classes: list[str] | None = None) -> TabularData:
    """Splits, fits the preprocessing on the training rows, and builds every split's tensors."""
    y = np.asarray(y)
    return _build(frame, kinds, y, classes, seed, split_indices(len(frame), seed, y if classes else None))


def _build(frame: pd.DataFrame, kinds: dict[str, str], y: np.ndarray, classes: list[str] | None, seed: int,
           idx: dict[str, np.ndarray]) -> TabularData:
    prep = Preprocessing.fit(frame, kinds, idx["train"], y, classes)
    numeric, codes = prep.transform(frame)
    if classes:
        ys = y.astype(np.int64)
    else:
        ys = ((y.astype(np.float64) - prep.y_mean) / prep.y_std).astype(np.float32)
    return TabularData(
        prep=prep,
        x_num={k: torch.from_numpy(numeric[v]) for k, v in idx.items()},
        x_cat={k: torch.from_numpy(codes[v]) for k, v in idx.items()},
        y={k: torch.from_numpy(ys[v]) for k, v in idx.items()},
        rows=idx, raw_y=y, frame=frame, kinds=kinds, seed=seed,
    )


class TensorBatches:
    """Batches sliced from in-memory tensors: no DataLoader, no collate, no worker processes."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, shuffle: bool, seed: int = 0):
        self.tensors = tensors
        self.n = len(tensors[0])
        self.batch_size = max(1, min(batch_size, self.n))
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else None
        for start in range(0, self.n, self.batch_size):
            if order is None:
                yield tuple(t[start : start + self.batch_size] for t in self.tensors)
            else:
                take = order[start : start + self.batch_size]
                yield tuple(t[take] for t in self.tensors)


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    elapsed_s: float


class TabularModule(L.LightningModule):
    """Manual optimisation and validation at the end of each training epoch: on ~100
    rows Lightning's closure and evaluation loop cost more than the model itself."""

    def __init__(self, data: TabularData, params: dict):
        super().__init__()
        self.automatic_optimization = False
        n_out = len(data.classes) if data.classification else 1
        self.architecture = {
            "n_numeric": data.prep.n_numeric,
            "cardinalities": data.prep.cardinalities,
            "n_outputs": n_out,
            "layer_units": [int(u) for u in params["layer_units"]],
            "dropout": float(params["dropout"]),
            "activation": str(params["activation"]),
            "linear_skip": True,  # see TabularNet
            "embedding_dims": [tabular_model.embedding_dim(c) for c in data.prep.cardinalities],
        }
        self.net = TabularNet(**self.architecture)
        self.params = params
        self.classification = data.classification
        self.loss_fn = nn.CrossEntropyLoss() if self.classification else nn.MSELoss()
        self._train_sum = torch.zeros(())
        self._train_n = 0

    def forward(self, x_num, x_cat):
        out = self.net(x_num, x_cat)
        # [B, 1] -> [B]: comparing [B, 1] with [B] broadcasts to [B, B] and is not an MSE.
        return out if self.classification else out.squeeze(-1)

    def on_train_start(self):
        # Single CPU device in fp32: the raw optimizer and loss.backward() are what
        # Lightning's wrappers would call, minus their per-step bookkeeping.
        self._opt = self.optimizers(use_pl_optimizer=False)

    def training_step(self, batch, _):
        x_num, x_cat, y = batch
        self._opt.zero_grad()
        loss = self.loss_fn(self(x_num, x_cat), y)
        loss.backward()
        self._opt.step()
        self._train_sum += loss.detach() * len(y)
        self._train_n += len(y)

    def evaluate(self, x_num: torch.Tensor, x_cat: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """(loss, accuracy) on held-out rows; accuracy is NaN for regression."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            out = self(x_num, x_cat)
            loss = float(self.loss_fn(out, y))
            accuracy = float((out.argmax(dim=1) == y).float().mean()) if self.classification else float("nan")
        self.train(was_training)
        return loss, accuracy

    def take_train_loss(self) -> float:
        loss = float(self._train_sum) / max(1, self._train_n)
        self._train_sum, self._train_n = torch.zeros(()), 0
        return loss

    def configure_optimizers(self):
        name = self.params["optimizer"]
        lr = float(self.params["learning_rate"])
        wd = float(self.params["weight_decay"])
        if name == "sgd":
            return torch.optim.SGD(self.parameters(), lr=lr, weight_decay=wd, momentum=float(self.params["momentum"]))
        if name == "adamw":
            return torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=wd)
        return torch.optim.Adam(self.parameters(), lr=lr, weight_decay=wd)


class EpochEndPruning(PyTorchLightningPruningCallback):
    """Optuna's Lightning pruning callback, run at the end of each training epoch,
    where kubetune computes the validation metrics (there is no validation loop)."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.on_validation_end(trainer, pl_module)


class _EpochReporter(L.Callback):
    """Reports each epoch, keeps the best weights, stops early or when asked to."""

    def __init__(self, val: tuple[torch.Tensor, torch.Tensor, torch.Tensor], on_epoch, should_stop, patience: int):
        self.val = val
        self.on_epoch = on_epoch
        self.should_stop = should_stop
        self.patience = patience
        self.best_val = math.inf
        self.best_epoch = -1
        self.best_state = None
        self.history: list[EpochResult] = []
        self.start = time.perf_counter()
        self.stopped_by_request = False

    # Runs before the pruning callback (it is first in the list), so a pruned epoch is reported too.
    def on_train_epoch_end(self, trainer, module):
        val, accuracy = module.evaluate(*self.val)
        # Where Lightning callbacks (Optuna's pruning one) read metrics; self.log() would
        # cost more than the epoch on small data.
        trainer.callback_metrics["val_loss"] = torch.tensor(val)
        if module.classification:
            trainer.callback_metrics["val_accuracy"] = torch.tensor(accuracy)
        result = EpochResult(
            epoch=trainer.current_epoch,
            train_loss=module.take_train_loss(),
            val_loss=val,
            val_accuracy=accuracy,
            elapsed_s=time.perf_counter() - self.start,
        )
        self.history.append(result)
        if val < self.best_val:
            self.best_val, self.best_epoch = val, result.epoch
            self.best_state = copy.deepcopy(module.net.state_dict())
        if self.on_epoch:
            self.on_epoch(result)
        if not math.isfinite(val):
            raise FloatingPointError(f"validation loss is {val} at epoch {result.epoch}: training diverged")
        if result.epoch - self.best_epoch >= self.patience:
            trainer.should_stop = True
        if self.should_stop and self.should_stop():
            self.stopped_by_request = True
            trainer.should_stop = True


@dataclass
class TrainResult:
    best_val_loss: float
    best_epoch: int
    history: list[EpochResult]
    val_accuracy: float
    architecture: dict
    state_dict: dict
    n_params: int
    duration_s: float
    stopped_by_request: bool
    # With k-fold cross-validation: every fold's best validation loss and its accuracy
    # (this result is fold 1's; the objective is their mean).
    cv_val_losses: list[float] = field(default_factory=list)
    cv_val_accuracies: list[float] = field(default_factory=list)

    @property
    def objective_val_loss(self) -> float:
        return float(np.mean(self.cv_val_losses)) if self.cv_val_losses else self.best_val_loss

    @property
    def objective_val_accuracy(self) -> float:
        return float(np.mean(self.cv_val_accuracies)) if self.cv_val_accuracies else self.val_accuracy


def train(
    data: TabularData,
    params: dict,
    *,
    seed: int,
    patience: int,
    callbacks: list[L.Callback] = (),  # e.g. EpochEndPruning(trial, monitor="val_loss")
    on_epoch: Callable[[EpochResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Trains; the weights kept (and the objective) are the best validation epoch's."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    module = TabularModule(data, params)
    reporter = _EpochReporter(data.split("val"), on_epoch, should_stop, patience)
    trainer = L.Trainer(
        max_epochs=int(params["max_epochs"]),
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[reporter, *callbacks],
    )
    batch_size = int(params["batch_size"])
    trainer.fit(module, train_dataloaders=TensorBatches(data.split("train"), batch_size, shuffle=True, seed=seed))
    if reporter.best_state is None:
        raise RuntimeError("training finished no epoch")
    module.net.load_state_dict(reporter.best_state)
    best = reporter.history[reporter.best_epoch]
    return TrainResult(
        best_val_loss=reporter.best_val,
        best_epoch=reporter.best_epoch,
        history=reporter.history,
        val_accuracy=best.val_accuracy,
        architecture=module.architecture,
        state_dict=reporter.best_state,
        n_params=sum(p.numel() for p in module.net.parameters()),
        duration_s=time.perf_counter() - start,
        stopped_by_request=reporter.stopped_by_request,
    )
