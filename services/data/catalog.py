"""The dataset catalog: register, look up, preview and delete immutable dataset versions.

Knows nothing of gRPC or NATS: the servicer calls it, and it tells a `Notifier` what
happened: a change's event is stored with the change, in its transaction (the store's
outbox), and the notifier's relay sends it. Blocking work (downloads, parsing, hashing, the store) runs in threads.

Versions. A version id is the first 12 hex digits of a sha256 over the source bytes'
digests, the layout and format, and the ingest options that change the stored table
(target, excluded columns, missing policy, task kind as requested, split seed), so the
same bytes read the same way always give the same id, and registering them again
returns the existing version with `created=False`. Names are separate from content:
the same bytes registered under another name become a version of that name, with the
same version id; the stored table is shared, since it is addressed by its own hash.

Atomicity. Sources are staged in a private temporary folder; the table is written
there, then moved into the blob store by rename (or S3 PUT), and only then is the
version inserted in one transaction. A failure at any step leaves the catalog as it was.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import hashlib
import json
import logging
import math
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kubetune_common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.outbox import OutboxEvent
from services.data.blobs import BlobStore
from services.data.ingest import ingest
from services.data.records import DatasetVersion, IngestOptions, Kind, Layout, Reference, Stats
from services.data.sniff import SourceFile
from services.data.sources import TABLE_SUFFIXES, Fetched, Sources
from services.data.store import CatalogStore, Referenced

log = logging.getLogger(__name__)

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
VERSION = re.compile(r"^[0-9a-f]{12}$")
PROGRESS_INTERVAL_S = 0.25
PREVIEW_ROWS, PREVIEW_MAX_ROWS = 20, 1000
PREVIEW_BINS, PREVIEW_MAX_BINS = 20, 200
UPLOAD_SOURCE = "upload:"


class Notifier(Protocol):
    """What the catalog tells the world. `registered` and `deleted` build the event the
    store writes with the change; `stored` is told after the commit, to send it at once.
    Progress is live only: nothing is stored, and a lost one is superseded by the next."""

    def registered(self, version: DatasetVersion) -> OutboxEvent | None: ...

    def deleted(self, name: str, version: str) -> OutboxEvent | None: ...

    def stored(self) -> None: ...

    async def progressed(self, name: str, uri: str, done: int, total: int) -> None: ...


class SilentNotifier:
    def registered(self, version):
        return None

    def deleted(self, name, version):
        return None

    def stored(self):
        pass

    async def progressed(self, name, uri, done, total):
        pass


def validate_name(name: str) -> str:
    if not NAME.match(name or "") or ".." in name:
        raise InvalidArgument(
            f"dataset name {name!r} is not valid: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no '..')",
            field="name",
        )
    return name


def parse_ref(ref: str, *, need_version: bool = False) -> tuple[str, str | None]:
    """`name` or `name@version`."""
    name, at, version = (ref or "").partition("@")
    validate_name(name)
    if at and not VERSION.match(version):
        raise InvalidArgument(f"{ref!r}: a version is 12 lowercase hex digits", field="ref")
    if need_version and not at:
        raise InvalidArgument(f"{ref!r}: name a version, as name@version", field="ref")
    return name, (version or None)


def validate_options(options: IngestOptions) -> IngestOptions:
    lists = {"exclude_columns": options.exclude_columns, "categorical_columns": options.categorical_columns,
             "numeric_columns": options.numeric_columns}
    for field, columns in lists.items():
        if any(not column.strip() for column in columns):
            raise InvalidArgument(f"options.{field} holds an empty name", field=f"options.{field}")
    cleaned = {field: tuple(c.strip() for c in columns) for field, columns in lists.items()}
    for a, b in (("exclude_columns", "categorical_columns"), ("exclude_columns", "numeric_columns"),
                 ("categorical_columns", "numeric_columns")):
        both = sorted(set(cleaned[a]) & set(cleaned[b]))
        if both:
            raise InvalidArgument(f"column {both[0]!r} is named in both options.{a} and options.{b}", field=f"options.{b}")
    return IngestOptions(
        target_column=options.target_column.strip(),
        missing_policy=options.missing_policy,
        task_kind=options.task_kind,
        split_seed=options.split_seed,
        **cleaned,
    )


def version_id(fetched: Fetched, options: IngestOptions) -> str:
    key = {
        "sources": fetched.sha256,
        "layout": str(fetched.layout),
        "format": fetched.format,
        "target": options.target_column,
        "exclude": list(options.exclude_columns),
        "missing": str(options.missing_policy),
        "task_kind": str(options.task_kind),
        "split_seed": options.split_seed,
    }
    # Added with column kinds: present only when set, so earlier versions keep their ids.
    if options.categorical_columns:
        key["categorical"] = list(options.categorical_columns)
    if options.numeric_columns:
        key["numeric"] = list(options.numeric_columns)
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def validate_filename(filename: str) -> str:
    if (not filename or "/" in filename or "\\" in filename or filename.startswith(".")
            or not filename.lower().endswith(TABLE_SUFFIXES)):
        raise InvalidArgument(
            f"upload file name {filename!r} must be a plain .csv or .parquet file name", field="header.filename"
        )
    return filename


@dataclass(frozen=True)
class Histogram:
    counts: list[int]
    edges: list[float]
    labels: list[str] = field(default_factory=list)  # a categorical column's categories


@dataclass(frozen=True)
class Preview:
    version: DatasetVersion
    columns: list[str]
    rows: list[list[float]]
    stats: list[Stats]
    histograms: list[Histogram]


class _KeyedLocks:
    """One asyncio lock per key, forgotten when nobody holds or waits for it."""

    def __init__(self):
        self._locks: dict[tuple, tuple[asyncio.Lock, int]] = {}

    class _Hold:
        def __init__(self, owner, key):
            self.owner, self.key = owner, key

        async def __aenter__(self):
            lock, users = self.owner._locks.get(self.key, (asyncio.Lock(), 0))
            self.owner._locks[self.key] = (lock, users + 1)
            await lock.acquire()

        async def __aexit__(self, *exc):
            lock, users = self.owner._locks[self.key]
            lock.release()
            if users == 1:
                del self.owner._locks[self.key]
            else:
                self.owner._locks[self.key] = (lock, users - 1)

    def __call__(self, *key):
        return self._Hold(self, key)


class Catalog:
    def __init__(
        self,
        store: CatalogStore,
        blobs: BlobStore,
        sources: Sources,
        *,
        work_dir: Path,
        min_rows: int,
        max_bytes: int,
        notifier: Notifier | None = None,
    ):
        self.store = store
        self.blobs = blobs
        self.sources = sources
        self.work_dir = Path(work_dir)
        self.min_rows = min_rows
        self.max_bytes = max_bytes
        self.notifier = notifier or SilentNotifier()
        self._versions = _KeyedLocks()
        self._blobs = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.work_dir.glob("stage-*"):  # left by a crash
            shutil.rmtree(stale, ignore_errors=True)

    # ------------------------------------------------------------ register

    async def register(self, name: str, uri: str, options: IngestOptions) -> tuple[DatasetVersion, bool]:
        validate_name(name)
        options = validate_options(options)
        src = self.sources.parse(uri)
        staging = await asyncio.to_thread(self._staging)
        try:
            fetched = await asyncio.to_thread(self.sources.fetch, src, staging, self._progress(name, src.uri))
            return await self._commit(name, src.uri, fetched, options, staging)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)

    async def upload(
        self, name: str, filename: str, options: IngestOptions, chunks: AsyncIterator[bytes]
    ) -> tuple[DatasetVersion, bool]:
        validate_name(name)
        validate_filename(filename)
        options = validate_options(options)
        staging = await asyncio.to_thread(self._staging)
        try:
            path = staging / ("upload" + Path(filename).suffix.lower())
            digest = await self._receive(chunks, path, filename)
            fetched = Fetched(Layout.SINGLE_TABLE, [SourceFile(path, filename)], [digest])
            return await self._commit(name, UPLOAD_SOURCE + filename, fetched, options, staging)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)

    def _staging(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="stage-", dir=self.work_dir))

    async def _receive(self, chunks: AsyncIterator[bytes], path: Path, label: str) -> str:
        """Writes streamed chunks to `path` (in a thread, chunk by chunk) while hashing them."""
        digest = hashlib.sha256()
        size = 0
        f = await asyncio.to_thread(open, path, "wb")
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > self.max_bytes:
                    raise FailedPrecondition(
                        f"{label} is over the limit of {self.max_bytes} bytes (KUBETUNE_DATA_MAX_BYTES)"
                    )
                await asyncio.to_thread(_absorb, f, digest, chunk)
        finally:
            await asyncio.to_thread(f.close)
        return digest.hexdigest()

    async def _commit(self, name, source_uri, fetched: Fetched, options, staging: Path):
        options = options.normalized(fetched.layout)
        vid = version_id(fetched, options)
        async with self._versions(name, vid):
            existing = await asyncio.to_thread(self.store.get_version, name, vid)
            if existing is not None:
                return existing, False
            table = await asyncio.to_thread(
                ingest, fetched.files, options, staging / "table.parquet", min_rows=self.min_rows
            )
            async with self._blobs:
                location = await asyncio.to_thread(self.blobs.put, Path(table.path), table.sha256)
                version = DatasetVersion(
                    name=name,
                    version=vid,
                    content_sha256=table.sha256,
                    source_uri=source_uri,
                    source_sha256=hashlib.sha256("".join(fetched.sha256).encode()).hexdigest()
                    if len(fetched.sha256) > 1 else fetched.sha256[0],
                    source_etags=fetched.etags,
                    layout=fetched.layout,
                    columns=table.columns,
                    target=table.target,
                    row_count=table.row_count,
                    target_stats=table.target_stats,
                    task_kind=table.task_kind,
                    class_labels=table.class_labels,
                    split_seed=options.split_seed,
                    created_at=dt.datetime.now(dt.UTC),
                    location=location,
                    size_bytes=table.size_bytes,
                    missing_policy=options.missing_policy,
                    rows_dropped=table.rows_dropped,
                    stats=table.stats,
                    rows_missing_target=table.rows_missing_target,
                )
                try:
                    stored, created = await asyncio.to_thread(
                        self.store.add_version, version, self.notifier.registered(version))
                except BaseException:
                    if not await asyncio.to_thread(self.store.content_in_use, table.sha256):
                        await asyncio.to_thread(self.blobs.delete, table.sha256)
                    raise
        if created:
            log.info("registered %s", stored.ref, extra={"dataset": stored.ref, "rows": stored.row_count})
            self.notifier.stored()
        return stored, created

    def _progress(self, name: str, uri: str):
        """A thread-side callback that publishes progress at most every PROGRESS_INTERVAL_S."""
        loop = asyncio.get_running_loop()
        last = [0.0]

        def report(done: int, total: int) -> None:
            now = time.monotonic()
            if last[0] and done != total and now - last[0] < PROGRESS_INTERVAL_S:
                return
            last[0] = now
            loop.call_soon_threadsafe(self._spawn, name, uri, done, total)

        return report

    def _spawn(self, name, uri, done, total) -> None:
        task = asyncio.ensure_future(self._notify(self.notifier.progressed(name, uri, done, total)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self, coro) -> None:
        # A progress report is live only: one that cannot be published is skipped.
        try:
            await coro
        except Exception:  # noqa: BLE001
            log.exception("publishing an event failed")

    # ------------------------------------------------------------ queries

    async def get(self, ref: str) -> DatasetVersion:
        name, version = parse_ref(ref)
        if version is None:
            found = await asyncio.to_thread(self.store.latest_version, name)
            if found is None:
                raise NotFound(f"no dataset named {name!r}")
            return found
        found = await asyncio.to_thread(self.store.get_version, name, version)
        if found is None:
            raise NotFound(f"dataset {name!r} has no version {version!r}")
        return found

    async def list(self, name_prefix: str = "") -> list[tuple[str, list[DatasetVersion]]]:
        if name_prefix and not re.match(r"^[a-z0-9._-]*$", name_prefix):
            raise InvalidArgument(f"name_prefix {name_prefix!r} cannot match any dataset name", field="name_prefix")
        versions = await asyncio.to_thread(self.store.list_versions, name_prefix)
        grouped: dict[str, list[DatasetVersion]] = {}
        for v in versions:
            grouped.setdefault(v.name, []).append(v)
        return list(grouped.items())

    async def preview(self, ref: str, rows: int = 0, bins: int = 0) -> Preview:
        if not 0 <= rows <= PREVIEW_MAX_ROWS:
            raise InvalidArgument(f"rows must be between 1 and {PREVIEW_MAX_ROWS}", field="rows")
        if not 0 <= bins <= PREVIEW_MAX_BINS:
            raise InvalidArgument(f"bins must be between 1 and {PREVIEW_MAX_BINS}", field="bins")
        version = await self.get(ref)
        path = await asyncio.to_thread(self.blobs.local_path, version.content_sha256)
        return await asyncio.to_thread(_preview, version, path, rows or PREVIEW_ROWS, bins or PREVIEW_BINS)

    # ------------------------------------------------------------ delete, references

    async def delete(self, ref: str) -> None:
        name, version = parse_ref(ref, need_version=True)
        async with self._versions(name, version):
            async with self._blobs:
                found = await asyncio.to_thread(self.store.get_version, name, version)
                if found is None:
                    raise NotFound(f"dataset {name!r} has no version {version!r}")
                try:
                    deleted = await asyncio.to_thread(
                        self.store.delete_version, name, version, self.notifier.deleted(name, version))
                except Referenced as exc:
                    raise FailedPrecondition(
                        f"{name}@{version} is referenced by {', '.join(map(str, exc.references))}; "
                        "it cannot be deleted while they exist"
                    ) from exc
                if not await asyncio.to_thread(self.store.content_in_use, found.content_sha256):
                    await asyncio.to_thread(self.blobs.delete, found.content_sha256)
        log.info("deleted %s", ref, extra={"dataset": ref})
        if deleted:
            self.notifier.stored()

    async def add_reference(self, dataset_version: str, reference: Reference) -> bool:
        """Records that a study or model uses `name@version`; False when the ref is malformed."""
        try:
            name, version = parse_ref(dataset_version, need_version=True)
        except InvalidArgument:
            log.warning("ignoring a reference to %r by %s: not name@version", dataset_version, reference)
            return False
        await asyncio.to_thread(self.store.add_reference, name, version, reference)
        return True


def _absorb(f, digest, chunk: bytes) -> None:
    digest.update(chunk)
    f.write(chunk)


def _preview(version: DatasetVersion, path: Path, rows: int, bins: int) -> Preview:
    """The first rows as stored (a category as its text, a missing value as None) and a
    histogram per numeric column; a categorical column's counts are by category, the
    most frequent first, in `Histogram.labels`."""
    columns = [*version.features, version.target]
    text = {c.name for c in version.columns if c.kind is Kind.CATEGORICAL}
    pf = pq.ParquetFile(path)
    head = next(pf.iter_batches(batch_size=rows, columns=columns), None)
    table_rows: list[list] = []
    if head is not None:
        cells = [head.column(c).to_pylist() for c in columns]
        table_rows = [[_cell(v) for v in row] for row in zip(*cells)]
    stats = {s.name: s for s in version.stats}
    ranges = {}
    for c in columns:
        if c in text:
            continue
        lo, hi = stats[c].min, stats[c].max
        if not (math.isfinite(lo) and math.isfinite(hi)):
            lo = hi = 0.0
        ranges[c] = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)
    counts = {c: np.zeros(bins, dtype=np.int64) for c in ranges}
    categories: dict[str, collections.Counter] = {c: collections.Counter() for c in text}
    for batch in pf.iter_batches(batch_size=256_000, columns=columns):
        for c in columns:
            if c in text:
                value_counts = pc.value_counts(batch.column(c).drop_null())
                categories[c].update(dict(zip(value_counts.field("values").to_pylist(),
                                              value_counts.field("counts").to_pylist())))
                continue
            values = batch.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
            counts[c] += np.histogram(values[~np.isnan(values)], bins=bins, range=ranges[c])[0]
    histograms = []
    for c in columns:
        if c in text:
            top = categories[c].most_common(bins)
            histograms.append(Histogram([n for _, n in top], [], [label for label, _ in top]))
        else:
            histograms.append(Histogram(counts[c].tolist(), np.linspace(*ranges[c], bins + 1).tolist()))
    return Preview(version, columns, table_rows, [stats[c] for c in columns], histograms)


def _cell(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value
