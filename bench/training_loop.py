"""Benchmark: per-epoch time of the worker's lean Lightning configuration against a
plain PyTorch loop on the same model, data and batches. Target: <= 1.5x."""

from __future__ import annotations

import statistics
import time

import numpy as np
import pandas as pd
import torch

from services.tuning.worker.training import TabularModule, TensorBatches, prepare, train
from cli.local_platform import SAMPLE as SEED

PARAMS = dict(learning_rate=1e-3, dropout=0.1, weight_decay=0.0, momentum=0.9, n_layers=3, units=64,
              layer_units=[64, 64, 64], batch_size=16, activation="relu", optimizer="adam", max_epochs=50)


def load():
    x = pd.read_csv(SEED / "X.csv", header=None).iloc[:, 1:]
    x.columns = [f"x{i}" for i in range(5)]
    y = pd.read_csv(SEED / "y.csv", header=None).iloc[: len(x), 0].to_numpy()
    return prepare(x, {c: "numeric" for c in x.columns}, y, seed=42)


def plain_loop(data, params, seed: int) -> float:
    torch.manual_seed(seed)
    module = TabularModule(data, params)
    opt = module.configure_optimizers()
    batches = TensorBatches(data.split("train"), params["batch_size"], shuffle=True, seed=seed)
    val_num, val_cat, val_y = data.split("val")
    start = time.perf_counter()
    for _ in range(params["max_epochs"]):
        module.train()
        for x_num, x_cat, y in batches:
            opt.zero_grad()
            loss = module.loss_fn(module(x_num, x_cat), y)
            loss.backward()
            opt.step()
        module.eval()
        with torch.no_grad():
            module.loss_fn(module(val_num, val_cat), val_y).item()
    return (time.perf_counter() - start) / params["max_epochs"]


def lightning_loop(data, params, seed: int) -> float:
    result = train(data, params, seed=seed, patience=10_000)
    return result.duration_s / len(result.history)


def run(repeats: int = 9) -> dict:
    torch.set_num_threads(1)
    data = load()
    lightning_loop(data, {**PARAMS, "max_epochs": 2}, 0)  # warm up imports and kernels
    plain, light = [], []
    for s in range(repeats):  # interleaved, so load on the machine hits both alike
        plain.append(plain_loop(data, PARAMS, s))
        light.append(lightning_loop(data, PARAMS, s))
    plain, light = statistics.median(plain), statistics.median(light)
    return {"plain_epoch_ms": plain * 1000, "lightning_epoch_ms": light * 1000, "ratio": light / plain}


if __name__ == "__main__":
    r = run()
    print("| training loop (seed data, 3x64 MLP, batch 16) | per epoch |")
    print("|---|---|")
    print(f"| plain PyTorch loop | {r['plain_epoch_ms']:.2f} ms |")
    print(f"| kubetune worker's Lightning | {r['lightning_epoch_ms']:.2f} ms |")
    print(f"| ratio (target <= 1.5x) | **{r['ratio']:.2f}x** |")
