"""Benchmark: epoch throughput (training rows/s) of the worker's training on a GPU
against a plain PyTorch loop on the same GPU, with the same model, tensors (moved to the
device once), batches and seed, in fp32 and bf16 mixed precision.

Each figure is the median of alternating paired runs in one process. Where there is no
CUDA device it says so and runs the same comparison on the CPU at a small size, so the
code path is exercised everywhere; those figures are the CPU's, not a GPU's."""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
import torch

from bench.training_loop import PARAMS, measure
from services.tuning.worker.training import prepare, resolve_device

COLUMNS = 30
PRECISIONS = ("32", "bf16-mixed")


def synthetic(rows: int, seed: int = 0):
    """A regression table of `rows` x 30 numeric columns: a linear signal, a nonlinear
    one and noise, so the network has something to learn."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, COLUMNS)).astype(np.float32)
    y = x[:, :10] @ rng.normal(size=10) + np.sin(x[:, 10]) * 2 + rng.normal(scale=0.5, size=rows)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(COLUMNS)])
    return prepare(frame, {c: "numeric" for c in frame.columns}, y, seed=seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--rows", type=int, help="table rows (default 500000 on a GPU, 20000 on the CPU)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="alternating pairs per precision")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--units", type=int, default=256, help="units in each of 3 hidden layers")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    on_gpu = device.type == "cuda"
    rows = args.rows or (500_000 if on_gpu else 20_000)
    if on_gpu:
        where = f"{torch.cuda.get_device_name(device)} ({device})"
    else:
        where = "the CPU"
        print(f"No CUDA device here (torch {torch.__version__}, "
              f"{'CUDA ' + torch.version.cuda if torch.version.cuda else 'a CPU-only build'}): the figures below are "
              "the CPU's at a small size, not a GPU's. Run `python -m bench.gpu` on a GPU machine for those.\n")
    if not on_gpu:
        torch.set_num_threads(1)  # as a CPU worker runs
    data = synthetic(rows)
    n_train = len(data.split("train")[2])
    params = {**PARAMS, "batch_size": args.batch_size, "max_epochs": args.epochs, "dropout": 0.0,
              "layer_units": [args.units] * 3}
    print(f"| epoch throughput on {where}: {n_train:,} training rows x {COLUMNS} columns, 3x{args.units} MLP, "
          f"batch {args.batch_size}, {args.epochs} epochs; medians of {args.repeats} alternating pairs "
          "| plain PyTorch | kubetune worker | worker / plain |")
    print("|---|---|---|---|")
    for precision in PRECISIONS:
        if precision == "bf16-mixed" and on_gpu and not torch.cuda.is_bf16_supported():
            print(f"| {precision} | this GPU has no bf16 | | |")
            continue
        r = measure(data, {**params, "precision": precision}, args.repeats, str(device))
        plain = n_train / (r["plain_wall_ms"] / 1000)
        worker = n_train / (r["worker_wall_ms"] / 1000)
        print(f"| {precision} | {plain:,.0f} rows/s | {worker:,.0f} rows/s | **{1 / r['wall_ratio']:.2f}x** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
