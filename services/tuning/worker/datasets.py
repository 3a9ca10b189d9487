"""Dataset versions on a worker: fetched once per host by content hash, verified,
and kept prepared in memory while the worker is warm."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow.parquet as pq

from kubetune.data.v1 import data_pb2
from kubetune_common.errors import FailedPrecondition
from services.tuning.worker.tabular_model import BOOLEAN, CATEGORICAL, NUMERIC
from services.tuning.worker.training import TabularData, prepare

log = logging.getLogger(__name__)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


KIND_NAMES = {
    data_pb2.COLUMN_KIND_NUMERIC: NUMERIC,
    data_pb2.COLUMN_KIND_CATEGORICAL: CATEGORICAL,
    data_pb2.COLUMN_KIND_BOOLEAN: BOOLEAN,
    # Versions registered before column kinds: every feature was a number.
    data_pb2.COLUMN_KIND_UNSPECIFIED: NUMERIC,
}


def feature_kinds(version: data_pb2.DatasetVersion) -> dict[str, str]:
    """The version's features, in order, with how each enters the model."""
    return {c.name: KIND_NAMES[c.kind] for c in version.columns if c.role == data_pb2.COLUMN_ROLE_FEATURE}


class DatasetCache:
    def __init__(self, cache_dir: Path, s3_client_factory=None, keep: int = 4):
        self.dir = cache_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.s3_client_factory = s3_client_factory
        self.keep = keep
        self._prepared: OrderedDict[tuple[str, int], TabularData] = OrderedDict()

    def local_copy(self, version: data_pb2.DatasetVersion) -> Path:
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

    def prepared(self, version: data_pb2.DatasetVersion) -> TabularData:
        key = (version.content_sha256, int(version.split_seed or 42))
        if key in self._prepared:
            self._prepared.move_to_end(key)
            return self._prepared[key]
        kinds = feature_kinds(version)
        table = pq.read_table(self.local_copy(version), columns=[*kinds, version.target])
        frame = table.select(list(kinds)).to_pandas()
        y = table.column(version.target).to_numpy()
        classes = list(version.class_labels) if version.task_kind == data_pb2.TASK_KIND_CLASSIFICATION else None
        data = prepare(frame, kinds, y, seed=key[1], classes=classes)
        self._prepared[key] = data
        while len(self._prepared) > self.keep:
            self._prepared.popitem(last=False)
        return data
