"""Where datasets come from: source URIs, and copying their bytes to a staging folder.

Accepted URIs: `s3://bucket/prefix`, `s3://bucket/key.csv|.parquet`, an absolute local
path or `file:///...` (local only when allowed). A folder or prefix holds either `X.csv`
and `y.csv` (the X/y layout) or exactly one `.csv`/`.parquet` table.

Every copy streams in chunks to a file while hashing, so memory stays flat. S3
credentials come from boto3's standard chain (environment, config files, a Kubernetes
Secret mounted as environment, an instance role); the endpoint can point at MinIO."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from kubetune_common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.data.sniff import SourceFile
from services.data.records import Layout

CHUNK = 1 << 20
TABLE_SUFFIXES = (".csv", ".parquet")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
URI_HELP = "use s3://bucket/prefix, s3://bucket/key.csv (or .parquet), or a local absolute path"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SourceUri:
    uri: str
    scheme: str  # "s3" or "file"
    bucket: str = ""
    key: str = ""  # s3: a table's key, or a prefix ending in "/" (or "")
    path: Path | None = None

    @property
    def is_table(self) -> bool:
        name = self.key if self.scheme == "s3" else str(self.path)
        return name.lower().endswith(TABLE_SUFFIXES)


def parse_uri(uri: str, *, allow_local: bool) -> SourceUri:
    uri = uri.strip()
    if not uri:
        raise InvalidArgument("uri is required; " + URI_HELP, field="uri")
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://"):].partition("/")
        if not BUCKET.match(bucket):
            raise InvalidArgument(f"{uri!r} does not name a valid S3 bucket; " + URI_HELP, field="uri")
        segments = key.split("/")[:-1] + [key.rsplit("/", 1)[-1] or "end"]
        if any(part in ("", ".", "..") for part in segments) and key:
            raise InvalidArgument(f"{uri!r}: the key may not contain '.', '..' or empty segments", field="uri")
        if key and not key.lower().endswith(TABLE_SUFFIXES) and not key.endswith("/"):
            key += "/"
        return SourceUri(uri, "s3", bucket=bucket, key=key)
    if uri.startswith("file:") or uri.startswith("/"):
        if uri.startswith("file:"):
            parsed = urlparse(uri)
            if not uri.startswith("file:///") or parsed.netloc:
                raise InvalidArgument(f"{uri!r}: a file URI is file:///absolute/path", field="uri")
            path = unquote(parsed.path)
        else:
            path = uri
        if not allow_local:
            raise InvalidArgument(
                f"{uri!r}: local paths are not accepted by this data service; upload the file or use S3",
                field="uri",
            )
        return SourceUri(uri, "file", path=Path(os.path.normpath(path)))
    raise InvalidArgument(f"unsupported URI {uri!r}; " + URI_HELP, field="uri")


@dataclass
class Fetched:
    """The staged copies of a source and what was learned about them."""

    layout: Layout
    files: list[SourceFile]  # [X, y] or [table]
    sha256: list[str]  # of each file's bytes
    etags: dict[str, str] = field(default_factory=dict)

    @property
    def format(self) -> str:
        return "parquet" if self.files[-1].is_parquet else "csv"


@dataclass(frozen=True)
class _Object:
    name: str  # the file name the layout is told by (X.csv)
    label: str  # full URI or path, for messages
    size: int
    key: str = ""
    etag: str = ""
    version_id: str = ""


def _choose(children: list[_Object], where: str) -> tuple[Layout, list[_Object]]:
    by_name = {c.name.lower(): c for c in children}
    if "x.csv" in by_name and "y.csv" in by_name:
        return Layout.XY_FOLDER, [by_name["x.csv"], by_name["y.csv"]]
    tables = [c for c in children if c.name.lower().endswith(TABLE_SUFFIXES)]
    if len(tables) == 1:
        return Layout.SINGLE_TABLE, tables
    if not tables:
        raise NotFound(f"{where} holds neither X.csv and y.csv nor one .csv or .parquet table")
    names = ", ".join(sorted(t.name for t in tables))
    raise FailedPrecondition(f"{where} holds several tables ({names}); name one in the URI")


def _check_size(objects: list[_Object], max_bytes: int) -> None:
    total = sum(o.size for o in objects)
    if total > max_bytes:
        raise FailedPrecondition(
            f"{' + '.join(o.label for o in objects)} is {total} bytes, over the limit of "
            f"{max_bytes} bytes (KUBETUNE_DATA_MAX_BYTES)"
        )


def _stage_name(o: _Object) -> str:
    return o.name if o.name.lower().endswith(TABLE_SUFFIXES) else o.name + ".csv"


def copy_stream(read: Callable[[int], bytes], out: Path, total: int, progress: Progress | None,
                max_bytes: int, label: str) -> str:
    """Copies a byte stream to `out`, returning its sha256; refuses more than max_bytes."""
    digest = hashlib.sha256()
    done = 0
    with open(out, "wb") as f:
        while chunk := read(CHUNK):
            done += len(chunk)
            if done > max_bytes:
                raise FailedPrecondition(f"{label} is over the limit of {max_bytes} bytes (KUBETUNE_DATA_MAX_BYTES)")
            digest.update(chunk)
            f.write(chunk)
            if progress:
                progress(done, total)
    if total and done != total:
        raise Unavailable(f"{label}: download ended after {done} of {total} bytes; try again")
    return digest.hexdigest()


# ---------------------------------------------------------------- S3


def s3_client(endpoint_url: str = "", region: str = "us-east-1"):
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=region,
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=16,
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=config)


CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                    "AuthorizationHeaderMalformed", "InvalidClientTokenId"}


def s3_error(exc: Exception, what: str) -> Exception:
    """A boto3/botocore failure as the domain error a caller can act on."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return NotFound(f"{what}: the bucket does not exist")
        if code in ("NoSuchKey", "404", "NotFound") or status == 404:
            return NotFound(f"{what} does not exist")
        if code in CREDENTIAL_CODES:
            return FailedPrecondition(
                f"{what}: S3 refused the data service's credentials ({code}); check its AWS settings"
            )
        if code in ("AccessDenied", "403", "Forbidden") or status == 403:
            return PermissionDenied(f"{what}: access denied by S3 ({code or status})")
        if status and status >= 500:
            return Unavailable(f"{what}: S3 answered {status} {code}; try again")
        return FailedPrecondition(f"{what}: S3 refused the request ({code or status})")
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return FailedPrecondition(f"{what}: the data service has no S3 credentials ({exc})")
    if isinstance(exc, (bx.BotoCoreError, ConnectionError, OSError)):
        return Unavailable(f"{what}: S3 could not be reached or the transfer broke off ({exc}); try again")
    return exc


class S3Source:
    def __init__(self, client):
        self.client = client

    def _head(self, bucket: str, key: str) -> _Object:
        label = f"s3://{bucket}/{key}"
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:  # noqa: BLE001 - mapped
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey", "NotFound"):
                # HEAD has no body, so a missing bucket also reads as 404: tell them apart.
                self._check_bucket(bucket, label)
            if code == "403":
                self._explain_forbidden(bucket, key, label)
            raise s3_error(exc, label) from exc
        return _Object(key.rsplit("/", 1)[-1], label, head["ContentLength"], key,
                       head.get("ETag", "").strip('"'), head.get("VersionId") or "")

    def _check_bucket(self, bucket: str, label: str) -> None:
        try:
            self.client.head_bucket(Bucket=bucket)
        except Exception as exc:  # noqa: BLE001 - mapped
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                raise NotFound(f"{label}: the bucket {bucket!r} does not exist") from exc

    def _explain_forbidden(self, bucket: str, key: str, label: str) -> None:
        """HEAD's 403 has no body: a one-byte GET says whether the credentials are wrong."""
        try:
            self.client.get_object(Bucket=bucket, Key=key, Range="bytes=0-0")["Body"].close()
        except Exception as exc:  # noqa: BLE001 - mapped
            raise s3_error(exc, label) from exc

    def resolve(self, src: SourceUri) -> tuple[Layout, list[_Object]]:
        if src.is_table:
            return Layout.SINGLE_TABLE, [self._head(src.bucket, src.key)]
        where = f"s3://{src.bucket}/{src.key}"
        try:
            listing = self.client.list_objects_v2(Bucket=src.bucket, Prefix=src.key, Delimiter="/")
        except Exception as exc:  # noqa: BLE001 - mapped
            raise s3_error(exc, where) from exc
        children = [
            _Object(o["Key"][len(src.key):], f"s3://{src.bucket}/{o['Key']}", o["Size"], o["Key"])
            for o in listing.get("Contents", [])
        ]
        if not children:
            raise NotFound(f"{where}: nothing under this prefix")
        layout, chosen = _choose(children, where)
        return layout, [self._head(src.bucket, o.key) for o in chosen]

    def download(self, bucket: str, o: _Object, out: Path, progress: Progress | None, max_bytes: int) -> str:
        kwargs = {"Bucket": bucket, "Key": o.key}
        if o.version_id:
            kwargs["VersionId"] = o.version_id
        elif o.etag:
            kwargs["IfMatch"] = o.etag  # the bytes we hash are the bytes we described
        try:
            body = self.client.get_object(**kwargs)["Body"]
            try:
                return copy_stream(body.read, out, o.size, progress, max_bytes, o.label)
            finally:
                body.close()
        except (FailedPrecondition, Unavailable):
            raise
        except Exception as exc:  # noqa: BLE001 - mapped
            raise s3_error(exc, o.label) from exc


# ---------------------------------------------------------------- local


def _local_object(path: Path) -> _Object:
    return _Object(path.name, str(path), path.stat().st_size)


def resolve_local(src: SourceUri) -> tuple[Layout, list[_Object]]:
    path = src.path
    if not path.exists():
        raise NotFound(f"{path} does not exist")
    if path.is_file():
        if not src.is_table:
            raise InvalidArgument(f"{path}: a table must be a .csv or .parquet file", field="uri")
        return Layout.SINGLE_TABLE, [_local_object(path)]
    children = [_local_object(p) for p in sorted(path.iterdir()) if p.is_file()]
    return _choose(children, str(path))


def copy_local(o: _Object, out: Path, progress: Progress | None, max_bytes: int) -> str:
    try:
        with open(o.label, "rb") as f:
            return copy_stream(f.read, out, o.size, progress, max_bytes, o.label)
    except PermissionError as exc:
        raise PermissionDenied(f"{o.label}: the data service may not read it") from exc


# ---------------------------------------------------------------- both


class Sources:
    """Fetches a source URI into a staging folder. Blocking: run it in a thread."""

    def __init__(self, *, s3_endpoint_url: str = "", s3_region: str = "us-east-1",
                 max_bytes: int, allow_local: bool):
        self.s3_endpoint_url = s3_endpoint_url
        self.s3_region = s3_region
        self.max_bytes = max_bytes
        self.allow_local = allow_local
        self._s3: S3Source | None = None

    @property
    def s3(self) -> S3Source:
        if self._s3 is None:
            self._s3 = S3Source(s3_client(self.s3_endpoint_url, self.s3_region))
        return self._s3

    def parse(self, uri: str) -> SourceUri:
        return parse_uri(uri, allow_local=self.allow_local)

    def fetch(self, src: SourceUri, staging: Path, progress: Progress | None = None) -> Fetched:
        if src.scheme == "s3":
            layout, objects = self.s3.resolve(src)
        else:
            layout, objects = resolve_local(src)
        _check_size(objects, self.max_bytes)
        total = sum(o.size for o in objects)
        files, digests, etags = [], [], {}
        done_before = 0
        for o in objects:
            out = staging / _stage_name(o)

            def step(done: int, _size: int, base=done_before) -> None:
                if progress:
                    progress(base + done, total)

            if src.scheme == "s3":
                digests.append(self.s3.download(src.bucket, o, out, step, self.max_bytes))
                if o.etag:
                    etags[o.key] = o.etag + (f"?versionId={o.version_id}" if o.version_id else "")
            else:
                digests.append(copy_local(o, out, step, self.max_bytes))
            files.append(SourceFile(out, o.label))
            done_before += o.size
        return Fetched(layout, files, digests, etags)
