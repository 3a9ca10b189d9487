"""Stored tables, addressed by the sha256 of their bytes: a local folder, or an S3 prefix
(with a local copy kept for previews). A table appears all at once or not at all: a
rename within one filesystem, or an S3 PUT, which S3 makes visible only when complete."""

from __future__ import annotations

import abc
import os
from pathlib import Path

from kubetune_common.errors import Unavailable
from services.data.sniff import sha256_file


class BlobStore(abc.ABC):
    @abc.abstractmethod
    def put(self, path: Path, sha256: str) -> str:
        """Moves the finished file at `path` into the store; returns its location."""

    @abc.abstractmethod
    def location(self, sha256: str) -> str: ...

    @abc.abstractmethod
    def local_path(self, sha256: str) -> Path:
        """A local file with these bytes, fetched if need be (blocking)."""

    @abc.abstractmethod
    def delete(self, sha256: str) -> None: ...


class LocalBlobs(BlobStore):
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        return self.root / f"{sha256}.parquet"

    def put(self, path, sha256):
        os.replace(path, self._path(sha256))
        return self.location(sha256)

    def location(self, sha256):
        return self._path(sha256).as_uri()

    def local_path(self, sha256):
        return self._path(sha256)

    def delete(self, sha256):
        self._path(sha256).unlink(missing_ok=True)


class S3Blobs(BlobStore):
    def __init__(self, client, uri: str, cache: Path):
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.cache = LocalBlobs(cache)

    def _key(self, sha256: str) -> str:
        return f"{self.prefix}{sha256}.parquet"

    def put(self, path, sha256):
        from services.data.sources import s3_error

        try:
            self.client.upload_file(str(path), self.bucket, self._key(sha256))
        except Exception as exc:  # noqa: BLE001 - mapped
            raise s3_error(exc, self.location(sha256)) from exc
        self.cache.put(path, sha256)
        return self.location(sha256)

    def location(self, sha256):
        return f"s3://{self.bucket}/{self._key(sha256)}"

    def local_path(self, sha256):
        from services.data.sources import s3_error

        path = self.cache.local_path(sha256)
        if path.exists():
            return path
        partial = path.with_name(path.name + ".part")
        try:
            self.client.download_file(self.bucket, self._key(sha256), str(partial))
        except Exception as exc:  # noqa: BLE001 - mapped
            partial.unlink(missing_ok=True)
            raise s3_error(exc, self.location(sha256)) from exc
        if sha256_file(partial) != sha256:
            partial.unlink(missing_ok=True)
            raise Unavailable(f"{self.location(sha256)} does not match its hash; it was changed outside kubetune")
        os.replace(partial, path)
        return path

    def delete(self, sha256):
        self.client.delete_object(Bucket=self.bucket, Key=self._key(sha256))
        self.cache.delete(sha256)
