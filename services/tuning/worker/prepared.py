"""Prepared datasets on disk: a dataset version's model inputs (split, preprocessed with
values fitted on the training split alone) written once per host into the data cache as
.npy files, and memory-mapped by every worker. The workers on one machine then share one
copy of the inputs in the page cache instead of each reading the table and building its
own; a warm cache maps in milliseconds whatever the table's size."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from services.tuning.worker.tabular_model import Preprocessing
from services.tuning.worker.training import TabularData

# In the folder's name: a change to what is written (or to how inputs are built) makes a
# new folder rather than reading an old one as if it were new.
FORMAT = 1
SPLITS = ("train", "val", "test")
ARRAYS = ("num", "cat", "y", "rows")


def folder_name(content_sha256: str, seed: int) -> str:
    return f"{content_sha256}-seed{seed}.prepared-v{FORMAT}"


def save(data: TabularData, folder: Path) -> None:
    """Writes `data` into `folder` whole or not at all: a temporary folder beside it, renamed."""
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=folder.name, suffix=".part"))
    try:
        arrays = {"num": data.x_num, "cat": data.x_cat, "y": data.y}
        for split in SPLITS:
            for kind, tensors in arrays.items():
                np.save(tmp / f"{split}.{kind}.npy", tensors[split].numpy())
            np.save(tmp / f"{split}.rows.npy", data.rows[split])
        meta = {"prep": data.prep.spec(), "kinds": data.kinds, "seed": data.seed}
        (tmp / "meta.json").write_text(json.dumps(meta))
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load(folder: Path, source: Callable[[], tuple[pd.DataFrame, np.ndarray]] | None = None) -> TabularData:
    """The prepared inputs in `folder`, memory-mapped copy-on-write: pages are shared with
    every other process mapping the same files until one writes (training never does; if
    anything did, it would get a private page, never change the file)."""
    meta = json.loads((folder / "meta.json").read_text())
    mapped: dict[str, dict[str, torch.Tensor | np.ndarray]] = {kind: {} for kind in ARRAYS}
    for split in SPLITS:
        for kind in ARRAYS:
            array = np.load(folder / f"{split}.{kind}.npy", mmap_mode="c")
            mapped[kind][split] = array if kind == "rows" else torch.from_numpy(array)
    return TabularData(prep=Preprocessing(meta["prep"]), x_num=mapped["num"], x_cat=mapped["cat"], y=mapped["y"],
                       rows=mapped["rows"], kinds=meta["kinds"], seed=meta["seed"], source=source)
