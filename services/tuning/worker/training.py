"""Training one trial: a LightningModule's steps driven by a loop of our own, on the
worker's device, in the trial's precision.

Why not Lightning's Trainer: on small tabular data its fit loop (hooks, progress
tracking, per-batch bookkeeping, a Trainer per trial) cost 1.5-1.8x a plain PyTorch
loop per epoch, and a plain loop is all one device needs. The module keeps Lightning's
structure (`training_step` returns the loss, `configure_optimizers`), so a Trainer can
still fit it where Lightning's strategies (several devices) are worth their cost.

No grpc, no nats: progress goes to an `on_epoch` callback and stopping is asked
through a `should_stop` callable, so the trainer can be tested and benchmarked alone."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import lightning as L
import numpy as np
import optuna
import pandas as pd
import torch
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
    # Reads (frame, raw_y) again when they were not kept: data mapped from a prepared
    # file keeps no table in memory, and only k-fold objectives need it.
    source: Callable[[], tuple[pd.DataFrame, np.ndarray]] | None = field(default=None, repr=False)
    _folds: dict[int, list["TabularData"]] = field(default_factory=dict, repr=False)
    _on_device: dict[str, "TabularData"] = field(default_factory=dict, repr=False)

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

    def on(self, device: torch.device) -> "TabularData":
        """This data with its tensors on `device`, moved once and kept while the data is
        cached: trials on a GPU slice batches where the tensors already are."""
        if device.type == "cpu":
            return self
        key = str(device)
        if key not in self._on_device:
            move = lambda split: {k: v.to(device) for k, v in split.items()}  # noqa: E731
            self._on_device[key] = TabularData(prep=self.prep, x_num=move(self.x_num), x_cat=move(self.x_cat),
                                               y=move(self.y), rows=self.rows, seed=self.seed)
        return self._on_device[key]

    def folds(self, k: int) -> list["TabularData"]:
        """k train/validation splits of this split's training and validation rows, each
        with its own preprocessing fitted on its own training rows; the test rows stay
        the test split. Stratified for classification; kept while the data is cached."""
        if k not in self._folds:
            frame, raw_y = (self.frame, self.raw_y) if self.frame is not None else self.source()
            pool = np.concatenate([self.rows["train"], self.rows["val"]])
            fold_of = _fold_of(raw_y[pool] if self.classification else None, len(pool), k, self.seed + k)
            self._folds[k] = [
                _build(frame, self.kinds, raw_y, self.classes or None, self.seed,
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


# Rows a held-out forward pass takes at a time: a million-row table's splits in one pass
# would hold ~1 GB of activations at once (and the heap would keep much of it).
EVAL_ROWS = 65_536


def eval_chunks(n: int) -> list[slice]:
    return [slice(start, start + EVAL_ROWS) for start in range(0, n, EVAL_ROWS)]


# A trial's `precision` (space.PRECISIONS): the autocast dtype, None for plain fp32.
AUTOCAST = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def resolve_device(setting: str) -> torch.device:
    """The worker's device setting: `auto` (CUDA when present, else the CPU), `cpu`,
    `cuda` or `cuda:N`; a CUDA device that is not there is refused, not replaced."""
    text = (setting or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {setting!r}: give auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {setting!r}: no CUDA device here (this torch {torch.__version__} is built "
                             f"{'for CUDA ' + torch.version.cuda if torch.version.cuda else 'for the CPU only'}); "
                             "use auto or cpu, or the GPU image (README, Kubernetes)")
        if (device.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"device {setting!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


class TensorBatches:
    """Batches sliced from tensors already on the training device: no DataLoader, no
    collate, no worker processes, no copy per batch."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, shuffle: bool, seed: int = 0):
        self.tensors = tensors
        self.n = len(tensors[0])
        self.batch_size = max(1, min(batch_size, self.n))
        self.shuffle = shuffle
        # The order is drawn where the tensors are, so indexing never crosses devices.
        self.generator = torch.Generator(device=tensors[0].device).manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator, device=self.generator.device) if self.shuffle else None
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
    """The network and its loss in Lightning's structure: `training_step` returns the
    loss and `configure_optimizers` the optimizer (automatic optimisation), as a Trainer
    expects; `train` below drives the same steps with a loop of its own."""

    def __init__(self, data: TabularData, params: dict):
        super().__init__()
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

    def forward(self, x_num, x_cat):
        out = self.net(x_num, x_cat)
        # [B, 1] -> [B]: comparing [B, 1] with [B] broadcasts to [B, B] and is not an MSE.
        return out if self.classification else out.squeeze(-1)

    def training_step(self, batch, batch_idx=0):
        x_num, x_cat, y = batch
        return self.loss_fn(self(x_num, x_cat), y)

    def evaluate(self, x_num: torch.Tensor, x_cat: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """(loss, accuracy) on held-out rows, in fp32 whatever the training precision (the
        logged model predicts in fp32); accuracy is NaN for regression."""
        was_training = self.training
        self.eval()
        n, loss_sum, correct = len(y), 0.0, 0
        with torch.no_grad():
            for rows in eval_chunks(n):
                out = self(x_num[rows], x_cat[rows])
                loss_sum += float(self.loss_fn(out, y[rows])) * len(out)  # the loss is a mean
                if self.classification:
                    correct += int((out.argmax(dim=1) == y[rows]).sum())
        self.train(was_training)
        return loss_sum / n, correct / n if self.classification else float("nan")

    def configure_optimizers(self):
        name = self.params["optimizer"]
        lr = float(self.params["learning_rate"])
        wd = float(self.params["weight_decay"])
        if name == "sgd":
            return torch.optim.SGD(self.parameters(), lr=lr, weight_decay=wd, momentum=float(self.params["momentum"]))
        if name == "adamw":
            return torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=wd)
        return torch.optim.Adam(self.parameters(), lr=lr, weight_decay=wd)


class EpochEndPruning:
    """Optuna's pruning at the end of each epoch, on the metric the study optimises: what
    optuna_integration's PyTorchLightningPruningCallback does on one device (report the
    value, raise TrialPruned when the pruner says so), through Optuna's public Trial API
    rather than a Trainer's callback_metrics."""

    def __init__(self, trial: optuna.Trial, monitor: str = "val_loss"):
        if monitor not in ("val_loss", "val_accuracy", "train_loss"):
            raise ValueError(f"monitor {monitor!r}: the pruner watches val_loss, val_accuracy or train_loss")
        self.trial = trial
        self.monitor = monitor

    def __call__(self, result: EpochResult) -> None:
        value = getattr(result, self.monitor)
        if math.isnan(value):
            return  # e.g. val_accuracy of a regression: nothing to compare
        self.trial.report(value, step=result.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"Trial was pruned at epoch {result.epoch}.")


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


def _train_epoch(module: TabularModule, optimizer: torch.optim.Optimizer, batches: TensorBatches,
                 autocast_dtype: torch.dtype | None, scaler: torch.amp.GradScaler | None) -> float:
    """One pass over the training batches; the mean training loss, read once per epoch
    (a float() per step would wait for the device at every step)."""
    if not module.training:  # evaluate() leaves it training; nn.Module.train() walks every layer
        module.train()
    device_type = batches.tensors[0].device.type
    losses = []
    for i, batch in enumerate(batches):
        optimizer.zero_grad(set_to_none=True)
        if autocast_dtype is None:
            loss = module.training_step(batch, i)
            loss.backward()
            optimizer.step()
        else:
            with torch.autocast(device_type, dtype=autocast_dtype):
                loss = module.training_step(batch, i)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:  # fp16: scaled, so small gradients do not underflow
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
        losses.append(loss.detach())
    # Every batch is full but the last: weight each by its rows.
    values = torch.stack(losses).tolist()
    last = batches.n - batches.batch_size * (len(values) - 1)
    return (sum(values[:-1]) * batches.batch_size + values[-1] * last) / batches.n


def train(
    data: TabularData,
    params: dict,
    *,
    seed: int,
    patience: int,
    callbacks: Sequence[Callable[[EpochResult], None]] = (),  # e.g. EpochEndPruning(trial, monitor="val_loss")
    on_epoch: Callable[[EpochResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: torch.device | str = "cpu",
) -> TrainResult:
    """Trains on `device` in the trial's `precision`; reports each epoch, stops early
    (`patience` epochs without a better validation loss) or when asked to; the weights
    kept (on the CPU) and the objective are the best validation epoch's. `callbacks` run
    after `on_epoch` each epoch and may end the trial (EpochEndPruning raises TrialPruned)."""
    start = time.perf_counter()
    device = torch.device(device)
    precision = str(params.get("precision", "32"))
    if precision not in AUTOCAST:
        raise ValueError(f"precision {precision!r}: give one of {', '.join(AUTOCAST)}")
    autocast_dtype = AUTOCAST[precision]
    torch.manual_seed(seed)
    data = data.on(device)
    module = TabularModule(data, params).to(device)
    optimizer = module.configure_optimizers()
    scaler = torch.amp.GradScaler(device.type) if autocast_dtype is torch.float16 else None
    batches = TensorBatches(data.split("train"), int(params["batch_size"]), shuffle=True, seed=seed)
    val_split = data.split("val")
    history: list[EpochResult] = []
    best_val, best_epoch, best_state = math.inf, -1, None
    stopped_by_request = False
    for epoch in range(int(params["max_epochs"])):
        train_loss = _train_epoch(module, optimizer, batches, autocast_dtype, scaler)
        val, accuracy = module.evaluate(*val_split)
        result = EpochResult(epoch=epoch, train_loss=train_loss, val_loss=val, val_accuracy=accuracy,
                             elapsed_s=time.perf_counter() - start)
        history.append(result)
        if val < best_val:
            best_val, best_epoch = val, epoch
            best_state = {k: v.detach().clone() for k, v in module.net.state_dict().items()}
        if on_epoch:
            on_epoch(result)
        if not math.isfinite(val):
            raise FloatingPointError(f"validation loss is {val} at epoch {epoch}: training diverged")
        for callback in callbacks:
            callback(result)
        if epoch - best_epoch >= patience:
            break
        if should_stop and should_stop():
            stopped_by_request = True
            break
    if best_state is None:
        raise RuntimeError("training finished no epoch")
    return TrainResult(
        best_val_loss=best_val,
        best_epoch=best_epoch,
        history=history,
        val_accuracy=history[best_epoch].val_accuracy,
        architecture=module.architecture,
        state_dict={k: v.cpu() for k, v in best_state.items()},
        n_params=sum(p.numel() for p in module.net.parameters()),
        duration_s=time.perf_counter() - start,
        stopped_by_request=stopped_by_request,
    )
