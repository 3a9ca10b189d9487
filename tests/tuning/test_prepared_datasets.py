"""Prepared datasets mapped from the data cache: two worker processes map one prepared
copy (the page cache's, counted once between them), and what they train on is what the
in-memory path builds, to the bit: same inputs, same training, same metrics, same folds."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from kubetune.data.v1 import data_pb2
from services.tuning.worker import prepared
from services.tuning.worker.datasets import DatasetCache
from services.tuning.worker.messages import version_from_pb
from services.tuning.worker.records import DatasetVersion
from services.tuning.worker.tabular_model import Preprocessing
from services.tuning.worker.training import prepare, train
from services.tuning.worker.trials import split_metrics
from testing import tables

REPO = Path(__file__).resolve().parents[2]
MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
ROWS = 50_000
PARAMS = dict(learning_rate=1e-2, dropout=0.1, weight_decay=0.0, momentum=0.9, layer_units=[32, 16], batch_size=1024,
              activation="relu", optimizer="adam", max_epochs=1)


@pytest.fixture(scope="module")
def message(tmp_path_factory) -> data_pb2.DatasetVersion:
    """A mixed table (numbers with missing values, categories, a boolean) stored as the
    data service stores it: one parquet file of features and target, named by its hash."""
    table = tables.regression_table(rows=ROWS, seed=3)
    s = table.structure
    frame = table.frame[[*s.numeric, *s.categorical, *s.boolean, table.target]].copy()
    for name in s.boolean:
        frame[name] = frame[name].astype(np.float64)
    path = tmp_path_factory.mktemp("stored") / "table.parquet"
    frame.to_parquet(path, index=False)
    kinds = [(n, data_pb2.COLUMN_KIND_NUMERIC) for n in s.numeric]
    kinds += [(n, data_pb2.COLUMN_KIND_CATEGORICAL) for n in s.categorical]
    kinds += [(n, data_pb2.COLUMN_KIND_BOOLEAN) for n in s.boolean]
    return data_pb2.DatasetVersion(
        name="mixed", version="v1", content_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        location=path.as_uri(), target=table.target, row_count=ROWS, split_seed=7,
        task_kind=data_pb2.TASK_KIND_REGRESSION,
        columns=[data_pb2.Column(name=n, role=data_pb2.COLUMN_ROLE_FEATURE, kind=k) for n, k in kinds]
        + [data_pb2.Column(name=table.target, role=data_pb2.COLUMN_ROLE_TARGET)],
    )


@pytest.fixture(scope="module")
def version(message) -> DatasetVersion:
    """As a worker reads it from the data service."""
    return version_from_pb(message)


WORKER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from kubetune.data.v1 import data_pb2
    from services.tuning.worker.datasets import DatasetCache
    from services.tuning.worker.messages import version_from_pb
    version = version_from_pb(data_pb2.DatasetVersion.FromString(Path(sys.argv[2]).read_bytes()))
    data = DatasetCache(Path(sys.argv[1])).prepared(version)
    # Read every input, as an epoch and the validation do.
    total = sum(float(t.double().sum()) for split in (data.x_num, data.x_cat, data.y) for t in split.values())
    print(total, flush=True)
    sys.stdin.read()  # mapped until the test has looked
""")


def _mapped_files(pid: int, folder: Path) -> dict[str, tuple[str, int]]:
    """The files of `folder` that process `pid` maps: name -> (device:inode, Pss in kB)."""
    out: dict[str, tuple[str, int]] = {}
    current = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if MAPPING.match(line):  # a mapping's first line; anonymous ones have no path
            path = fields[5] if len(fields) > 5 else ""
            current = Path(path).name if path.startswith(str(folder)) else None
            if current:
                out[current] = (f"{fields[3]}:{fields[4]}", out.get(current, ("", 0))[1])
        elif current and fields[0] == "Pss:":
            out[current] = (out[current][0], out[current][1] + int(fields[1]))
    return out


def test_two_workers_map_one_prepared_copy(message, version, tmp_path):
    cache = tmp_path / "cache"
    record = tmp_path / "version.pb"
    record.write_bytes(message.SerializeToString())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "gen"), os.environ.get("PYTHONPATH", "")])}
    # Started together: they race for the lock, one prepares, the other waits and maps.
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(cache), str(record)], cwd=REPO, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        totals = [float(w.stdout.readline()) for w in workers]
        assert all(w.poll() is None for w in workers), "a worker died"
        assert totals[0] == totals[1]
        folders = [p for p in cache.iterdir() if p.is_dir()]
        assert [p.name for p in folders] == [prepared.folder_name(version.content_sha256, 7)]  # one, no leftover .part
        folder = folders[0]
        maps = [_mapped_files(w.pid, folder) for w in workers]
        inputs = {f"{split}.{kind}.npy" for split in prepared.SPLITS for kind in ("num", "cat", "y")}
        assert inputs <= set(maps[0]) and inputs <= set(maps[1])
        for name in inputs:
            assert maps[0][name][0] == maps[1][name][0], f"{name}: not the same file"
        # Proportional set size: pages shared by both count half in each, so the two sums
        # together are one copy of the inputs, not two.
        size_kb = sum((folder / name).stat().st_size for name in inputs) / 1024
        both_kb = sum(m[name][1] for m in maps for name in inputs)
        assert both_kb <= 1.1 * size_kb, f"{both_kb:.0f} kB mapped for {size_kb:.0f} kB of inputs"
        assert both_kb >= 0.9 * size_kb  # every page was read, so each is there to count
    finally:
        for w in workers:
            w.stdin.close()
            w.wait(timeout=30)


def test_mapped_inputs_train_and_score_as_in_memory(version, tmp_path):
    cache = DatasetCache(tmp_path / "cache")
    mapped = cache.prepared(version)
    assert all(isinstance(mapped.rows[s], np.memmap) for s in prepared.SPLITS)  # mapped, not read
    frame, y = cache.table(version)
    memory = prepare(frame, version.features, y, seed=7)
    # Fitted on the training split alone, as in memory: the same medians, vocabularies, scales.
    assert mapped.prep.spec() == memory.prep.spec()
    assert mapped.prep.spec() == Preprocessing.fit(frame, version.features, memory.rows["train"], y).spec()
    for split in prepared.SPLITS:
        assert (mapped.rows[split] == memory.rows[split]).all()
        for a, b in zip(mapped.split(split), memory.split(split)):
            assert a.dtype == b.dtype and torch.equal(a, b)
    results = [train(d, PARAMS, seed=5, patience=10) for d in (mapped, memory)]
    assert [e.val_loss for e in results[0].history] == [e.val_loss for e in results[1].history]
    scores = [split_metrics(r.architecture, r.state_dict, d) for r, d in zip(results, (mapped, memory))]
    assert scores[0] == scores[1] and np.isfinite(scores[0]["test/rmse"])
    # k-fold objectives read the table again (the map keeps none) and build the same folds.
    for a, b in zip(mapped.folds(2), memory.folds(2)):
        assert a.prep.spec() == b.prep.spec() and all(torch.equal(x, y) for x, y in zip(a.split("val"), b.split("val")))
    # A second cache (another worker) maps the files the first wrote, and prepares nothing.
    again = DatasetCache(tmp_path / "cache")
    again.table = None  # reading the table again would fail here
    assert torch.equal(again.prepared(version).x_num["val"], mapped.x_num["val"])
