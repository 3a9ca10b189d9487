"""Streaming a file to the gateway's UploadDataset: a header, then chunks; progress
reported as bytes go out. No NiceGUI here."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

from kubetune.data.v1 import data_pb2

CHUNK = 1024 * 1024
UPLOAD_TIMEOUT_S = 600


def name_from_filename(filename: str) -> str:
    """A dataset name the data service accepts, from a file name: 'My Data.csv' -> 'my-data'."""
    stem = filename.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()
    name = re.sub(r"[^a-z0-9_.-]+", "-", stem).strip("-_.")
    return name or "dataset"


async def upload_requests(header: data_pb2.UploadHeader, chunks: AsyncIterator[bytes], total: int,
                          progress: Callable[[int, int], None]) -> AsyncIterator[data_pb2.UploadDatasetRequest]:
    yield data_pb2.UploadDatasetRequest(header=header)
    sent = 0
    async for chunk in chunks:
        for start in range(0, len(chunk), CHUNK):
            piece = chunk[start:start + CHUNK]
            yield data_pb2.UploadDatasetRequest(chunk=piece)
            sent += len(piece)
            progress(sent, total)


async def upload(gateway, header: data_pb2.UploadHeader, chunks: AsyncIterator[bytes], total: int,
                 progress: Callable[[int, int], None] = lambda *_: None) -> data_pb2.UploadDatasetResponse:
    return await gateway.call("UploadDataset", upload_requests(header, chunks, total, progress),
                              timeout=UPLOAD_TIMEOUT_S)
