"""Dataset versions on a worker: fetched once per host by content hash, verified,
prepared once per host (prepared.py) and memory-mapped while the worker is warm."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kubetune_common.errors import FailedPrecondition
from kubetune_common.malloc import malloc_trim
from services.tuning.worker import prepared
from services.tuning.worker.records import DatasetVersion
from services.tuning.worker.training import TabularData, prepare

log = logging.getLogger(__name__)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DatasetCache:
    def __init__(self, cache_dir: Path, s3_client_factory=None, keep: int = 4):
        self.dir = cache_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.s3_client_factory = s3_client_factory
        self.keep = keep
        self._prepared: OrderedDict[tuple[str, int], TabularData] = OrderedDict()

    def local_copy(self, version: DatasetVersion) -> Path:
        """The version's table on this host, downloaded and verified once."""
        cached = self.dir / f"{version.content_sha256}.parquet"
        if cached.exists():
            return cached
        url = urlparse(version.location)
        with tempfile.NamedTemporaryFile(dir=self.dir, suffix=".part", delete=False) as tmp:
            part = Path(tmp.name)
        try:
            if url.scheme == "file":
                shutil.copyfile(unquote(url.path), part)
            elif url.scheme == "s3":
                client = self.s3_client_factory()
                client.download_file(url.netloc, url.path.lstrip("/"), str(part))
            else:
                raise FailedPrecondition(f"dataset {version.name}@{version.version}: unsupported location {version.location}")
            actual = sha256_of(part)
            if actual != version.content_sha256:
                raise FailedPrecondition(
                    f"dataset {version.name}@{version.version}: content hash mismatch "
                    f"(expected {version.content_sha256[:12]}, got {actual[:12]})"
                )
            os.replace(part, cached)
        finally:
            part.unlink(missing_ok=True)
        return cached

    def prepared(self, version: DatasetVersion) -> TabularData:
        """The version's model inputs, memory-mapped from the prepared files in the cache
        (built by the first worker on this host to need them; the others wait, then map)."""
        key = (version.content_sha256, int(version.split_seed or 42))
        if key in self._prepared:
            self._prepared.move_to_end(key)
            return self._prepared[key]
        folder = self.dir / prepared.folder_name(*key)
        if not folder.exists():
            with _locked(self.dir / f"{folder.name}.lock"):
                if not folder.exists():  # another worker may have built it while this one waited
                    start = time.perf_counter()
                    frame, y = self.table(version)
                    prepared.save(self._prepare(version, frame, y, key[1]), folder)
                    del frame, y  # mapped below: no private copy stays in this process
                    _give_back_freed_memory()
                    log.info("dataset %s@%s prepared for every worker of this host in %.1fs",
                             version.name, version.version, time.perf_counter() - start)
        data = prepared.load(folder, source=lambda: self.table(version))
        self._prepared[key] = data
        while len(self._prepared) > self.keep:
            self._prepared.popitem(last=False)
        return data

    def table(self, version: DatasetVersion) -> tuple[pd.DataFrame, np.ndarray]:
        """The version's features (a DataFrame) and target, read from the cached table."""
        kinds = version.features
        table = pq.read_table(self.local_copy(version), columns=[*kinds, version.target])
        return table.select(list(kinds)).to_pandas(), table.column(version.target).to_numpy()

    @staticmethod
    def _prepare(version: DatasetVersion, frame: pd.DataFrame, y: np.ndarray, seed: int) -> TabularData:
        classes = list(version.class_labels) if version.task_kind == "classification" else None
        return prepare(frame, version.features, y, seed=seed, classes=classes)


def _give_back_freed_memory() -> None:
    """Returns what reading and preparing the table freed to the system. Arrow's memory
    pool (mimalloc) and glibc keep freed memory for reuse: after a million-row table,
    ~300 MiB that this worker would otherwise hold for as long as it runs."""
    pa.default_memory_pool().release_unused()
    trim = malloc_trim()
    if trim is not None:  # not glibc: nothing to trim
        trim(0)


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock between the processes of this host (released if one dies)."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
