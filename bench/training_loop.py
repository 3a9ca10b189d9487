"""Benchmark: per-epoch cost of the worker's training (`train`: its own loop over the
TabularModule's steps, best weights kept, patience, stop checks) against a plain PyTorch
loop on the same model, data, batches and seed, at batch sizes 8, 32 and 256.

Each figure is the median of alternating paired runs in one process (plain then worker,
then worker then plain, ...), so load on a shared machine hits both alike. Both sides
are timed from building the model to the last epoch's validation loss, as wall time and
as this process's CPU time (steadier where other processes compete for the cores).
Target: <= 1.2x."""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import pandas as pd
import torch

from cli.local_platform import SAMPLE as SEED
from services.tuning.worker.training import AUTOCAST, TabularModule, TensorBatches, prepare, train

PARAMS = dict(learning_rate=1e-3, dropout=0.1, weight_decay=0.0, momentum=0.9, n_layers=3, units=64,
              layer_units=[64, 64, 64], batch_size=16, activation="relu", optimizer="adam", max_epochs=50)
BATCH_SIZES = (8, 32, 256)
TARGET = 1.2


def load():
    x = pd.read_csv(SEED / "X.csv", header=None).iloc[:, 1:]
    x.columns = [f"x{i}" for i in range(5)]
    y = pd.read_csv(SEED / "y.csv", header=None).iloc[: len(x), 0].to_numpy()
    return prepare(x, {c: "numeric" for c in x.columns}, y, seed=42)


def plain_loop(data, params, seed: int, device: str = "cpu") -> None:
    """What a script would write: the same model, optimizer and batches (tensors already
    on `device`), autocast when the params ask for mixed precision, a validation loss per
    epoch, nothing else. bench/gpu.py runs it on a GPU."""
    torch.manual_seed(seed)
    data = data.on(torch.device(device))
    module = TabularModule(data, params).to(device)
    opt = module.configure_optimizers()
    batches = TensorBatches(data.split("train"), params["batch_size"], shuffle=True, seed=seed)
    val_num, val_cat, val_y = data.split("val")
    dtype = AUTOCAST[params.get("precision", "32")]
    device_type = torch.device(device).type
    scaler = torch.amp.GradScaler(device_type) if dtype is torch.float16 else None
    for _ in range(params["max_epochs"]):
        module.train()
        for x_num, x_cat, y in batches:
            opt.zero_grad()
            if dtype is None:  # fp32: no autocast context at all, as a script would write it
                loss = module.loss_fn(module(x_num, x_cat), y)
            else:
                with torch.autocast(device_type, dtype=dtype):
                    loss = module.loss_fn(module(x_num, x_cat), y)
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
        module.eval()
        with torch.no_grad():
            module.loss_fn(module(val_num, val_cat), val_y).item()


def worker_loop(data, params, seed: int, device: str = "cpu") -> None:
    result = train(data, params, seed=seed, patience=10_000, device=device)  # no early stop: every epoch runs
    assert len(result.history) == params["max_epochs"]


def timed(fn, *args) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(data, params: dict, repeats: int, device: str = "cpu") -> dict:
    """Per-epoch medians (ms) of `repeats` alternating pairs, and the median of the
    pairs' ratios."""
    epochs = params["max_epochs"]
    worker_loop(data, {**params, "max_epochs": 2}, 0, device)  # warm up kernels and allocator
    plain_loop(data, {**params, "max_epochs": 2}, 0, device)
    runs = {"plain": [], "worker": []}
    for s in range(repeats):
        order = (("plain", plain_loop), ("worker", worker_loop))
        for name, fn in order if s % 2 == 0 else order[::-1]:
            runs[name].append(timed(fn, data, params, s, device))
    out = {}
    for i, clock in enumerate(("wall", "cpu")):
        plain = [r[i] for r in runs["plain"]]
        worker = [r[i] for r in runs["worker"]]
        out[f"plain_{clock}_ms"] = statistics.median(plain) / epochs * 1000
        out[f"worker_{clock}_ms"] = statistics.median(worker) / epochs * 1000
        out[f"{clock}_ratio"] = statistics.median(w / p for w, p in zip(worker, plain))
    return out


def run(repeats: int = 9, epochs: int = 50, batch_sizes=BATCH_SIZES) -> dict[int, dict]:
    torch.set_num_threads(1)  # as a worker runs (KUBETUNE_WORKER_TORCH_THREADS=1)
    data = load()
    return {bs: measure(data, {**PARAMS, "batch_size": bs, "max_epochs": epochs}, repeats) for bs in batch_sizes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="alternating pairs per batch size")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)))
    args = parser.parse_args(argv)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    results = run(args.repeats, args.epochs, sizes)
    rows = len(load().split("train")[2])
    print(f"| training loop per epoch (seed data, {rows} training rows, 3x64 MLP, 1 thread; medians of "
          f"{args.repeats} alternating pairs) | plain PyTorch | kubetune worker | ratio (target <= {TARGET}x) |")
    print("|---|---|---|---|")
    for bs, r in results.items():
        print(f"| batch {bs}, wall | {r['plain_wall_ms']:.2f} ms | {r['worker_wall_ms']:.2f} ms | "
              f"**{r['wall_ratio']:.2f}x** |")
        print(f"| batch {bs}, CPU time | {r['plain_cpu_ms']:.2f} ms | {r['worker_cpu_ms']:.2f} ms | "
              f"**{r['cpu_ratio']:.2f}x** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
