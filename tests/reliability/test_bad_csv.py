"""Guarantee 3b: a corpus of bad CSVs, registered from a local path and uploaded,
gets clear refusals, and leaves no partial dataset: the catalog lists the same
datasets as before and no new file appears under the data home's blobs."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import grpc
import pytest

from kubetune.data.v1 import data_pb2
from tests.reliability.conftest import DATA_MAX_BYTES

pytestmark = pytest.mark.slow
CHUNK = 1024 * 1024


def numeric_rows(n: int, width: int = 3) -> str:
    return "".join(",".join(str((i * 7 + j) % 13 + 0.5) for j in range(width)) + "\n" for i in range(n))


def corpus(root: Path) -> dict[str, Path]:
    """name -> a file kubetune must refuse."""
    files: dict[str, bytes] = {
        "binary-garbage": os.urandom(256 * 1024),
        "zeros": b"\x00" * 50_000,
        "empty": b"",
        "header-only": b"a,b,y\n",
        "one-long-line-within-limit": b",".join(b"1.5" for _ in range(DATA_MAX_BYTES // 8)) + b"\n",
        "quote-never-closed": b'a,b,y\n"1.0,2.0,3.0\n' + numeric_rows(40).encode(),
        "utf16-with-bom": codecs.BOM_UTF16_LE + ("a,b,y\n" + numeric_rows(40)).encode("utf-16-le"),
        "mixed-encodings": ("a,b,y\n" + numeric_rows(20)).encode() + "caf\u00e9,1,2\n".encode("latin-1")
                            + "na\u00efve,3,4\n".encode("utf-8") + numeric_rows(20).encode(),
        "text-in-numbers": ("a,b,y\n" + numeric_rows(20) + "abc,1,2\n" + numeric_rows(20)).encode(),
        "ragged-rows": ("a,b,y\n" + numeric_rows(20) + "1,2\n1,2,3,4,5\n" + numeric_rows(20)).encode(),
        "10000-columns-no-target": (",".join(f"c{i}" for i in range(10_000)) + "\n"
                                    + numeric_rows(3, 10_000)).encode(),
        "10000-columns-5-rows": (",".join(f"c{i}" for i in range(9_999)) + ",y\n" + numeric_rows(5, 10_000)).encode(),
        "newline-in-header": b'"a\nb",c,y\n' + numeric_rows(40).encode(),
        "nan-everywhere": ("a,b,y\n" + "nan,nan,nan\n" * 50).encode(),
        "inf-values": ("a,b,y\n" + numeric_rows(20) + "inf,-inf,1\n" + numeric_rows(20)).encode(),
        "nul-in-header": b"a\x00,b,y\n" + numeric_rows(40).encode(),
    }
    out = {}
    for name, data in files.items():
        path = root / f"{name}.csv"
        path.write_bytes(data)
        out[name] = path
    # Over the size limit: one line of digits, written in blocks (never held in memory).
    big = root / "one-line-over-limit.csv"
    with big.open("wb") as f:
        block = b"9" * CHUNK
        for _ in range(DATA_MAX_BYTES // CHUNK + 2):
            f.write(block)
    out["one-line-over-limit"] = big
    return out


def blobs(platform) -> set[str]:
    root = platform.home / "data"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "catalog" not in p.name}


def upload(admin, name: str, path: Path):
    def requests():
        yield data_pb2.UploadDatasetRequest(header=data_pb2.UploadHeader(
            name=name, filename=path.name, options=data_pb2.IngestOptions(target_column="y")))
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield data_pb2.UploadDatasetRequest(chunk=chunk)

    return admin.UploadDataset(requests(), timeout=120)


@pytest.mark.parametrize("how", ["local-path", "upload"])
def test_bad_csvs_are_refused_and_leave_nothing(secured, admin, tmp_path, how):
    files = corpus(tmp_path)
    before_list = admin.ListDatasets(data_pb2.ListDatasetsRequest()).datasets
    before_files = blobs(secured)
    refusals, accepted = {}, []
    for name, path in files.items():
        try:
            if how == "upload":
                upload(admin, f"bad-{name}", path)
            else:
                admin.RegisterDataset(data_pb2.RegisterDatasetRequest(
                    name=f"bad-{name}", uri=str(path), options=data_pb2.IngestOptions(target_column="y")), timeout=120)
        except grpc.RpcError as err:
            refusals[name] = (err.code(), err.details() or "")
        else:
            accepted.append(name)
    for name, (code, details) in refusals.items():
        print(f"{how:10} {name:28} {code.name:20} {details[:150]}")
    assert not accepted, f"accepted: {accepted}"
    for name, (code, details) in refusals.items():
        assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                        grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.NOT_FOUND), (name, code, details)
        assert details.strip() and "Traceback" not in details and "internal error" not in details, (name, details)
    assert "KUBETUNE_DATA_MAX_BYTES" in refusals["one-line-over-limit"][1]
    assert admin.ListDatasets(data_pb2.ListDatasetsRequest()).datasets == before_list
    assert blobs(secured) == before_files, "a refused dataset left files behind"
