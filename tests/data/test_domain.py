"""The data service's domain without servers: names, URIs, sniffing, ingestion, versions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kubetune_common.errors import FailedPrecondition, InvalidArgument
from services.data.catalog import parse_ref, validate_filename, validate_name, version_id
from services.data.ingest import Moments, ingest
from services.data.records import IngestOptions, Kind, Layout, MissingPolicy, Role, TaskKind
from services.data.sniff import SourceFile, detect_header, looks_like_index
from services.data.sources import Fetched, parse_uri


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def src(path: Path) -> SourceFile:
    return SourceFile(path, path.name)


def run(tmp_path: Path, files: list[Path], min_rows: int = 5, **options):
    out = tmp_path / "out.parquet"
    return ingest([src(f) for f in files], IngestOptions(**options), out, min_rows=min_rows), out


def csv(path: Path, frame: pd.DataFrame, **kwargs) -> Path:
    frame.to_csv(path, **kwargs)
    return path


@pytest.mark.parametrize("name", ["seed", "a", "my-data_1.v2", "0abc", "x" * 63])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "../../etc", "..", "a/b", "Seed", "-x", ".hidden", "a..b", "x" * 64, "a b", "a\\b"])
def test_invalid_names(name):
    with pytest.raises(InvalidArgument, match="dataset name"):
        validate_name(name)


def test_refs():
    assert parse_ref("seed") == ("seed", None)
    assert parse_ref("seed@0123456789ab") == ("seed", "0123456789ab")
    for bad in ["seed@", "seed@xyz", "../x@0123456789ab"]:
        with pytest.raises(InvalidArgument):
            parse_ref(bad)
    with pytest.raises(InvalidArgument, match="name a version"):
        parse_ref("seed", need_version=True)


def test_upload_filenames():
    assert validate_filename("data.csv")
    for bad in ["", "../x.csv", "a/b.csv", "x.txt", ".csv"]:
        with pytest.raises(InvalidArgument):
            validate_filename(bad)


def test_uris():
    u = parse_uri("s3://my-bucket/seed", allow_local=False)
    assert (u.scheme, u.bucket, u.key, u.is_table) == ("s3", "my-bucket", "seed/", False)
    u = parse_uri("s3://my-bucket/a/b.parquet", allow_local=False)
    assert (u.key, u.is_table) == ("a/b.parquet", True)
    assert parse_uri("s3://my-bucket", allow_local=False).key == ""
    assert parse_uri("file:///tmp/x.csv", allow_local=True).path == Path("/tmp/x.csv")
    assert parse_uri("/tmp/seed", allow_local=True).path == Path("/tmp/seed")
    for bad in ["s3:/x", "http://example.com/x.csv", "s3://B/x", "s3://bucket/../etc", "relative/x.csv",
                "file://host/x.csv", "ftp://x/y", "", "s3://bucket//x"]:
        with pytest.raises(InvalidArgument):
            parse_uri(bad, allow_local=True)
    with pytest.raises(InvalidArgument, match="local paths are not accepted"):
        parse_uri("/tmp/seed", allow_local=False)


def test_header_detection():
    assert not detect_header([["0", "1.5", "2"], ["1", "2.5", "3"]])
    assert detect_header([["a", "b", "target"], ["1", "2", "3"]])
    assert detect_header([["", "0", "1"], ["0", "0.5", "1.5"]])  # pandas, unnamed columns
    assert detect_header([["species"], ["cat"], ["dog"]])
    assert not detect_header([["cat"], ["dog"], ["cat"]])
    assert not detect_header([["1.0", "cat"], ["2.0", "dog"]])


def test_index_detection():
    assert looks_like_index(["0", "1", "2", "3"])
    assert looks_like_index(["1", "2", "3"])
    assert not looks_like_index(["0", "2", "3"])
    assert not looks_like_index(["0.5", "1.5"])
    assert not looks_like_index(["a", "b"])


def test_moments_merge_batches():
    rng = np.random.default_rng(1)
    values = rng.normal(5, 3, 10_001)
    m = Moments()
    for part in np.array_split(values, 7):
        m.add(part)
    assert m.n == values.size
    assert m.mean == pytest.approx(values.mean())
    assert m.std == pytest.approx(values.std(ddof=1))
    assert (m.min, m.max) == (values.min(), values.max())


def test_seed_ingests_unchanged(tmp_path, seed_dir):
    table, out = run(tmp_path, [seed_dir / "X.csv", seed_dir / "y.csv"])
    assert [(c.name, c.role) for c in table.columns] == [("index", Role.INDEX)] + [
        (f"x{i}", Role.FEATURE) for i in range(5)
    ] + [("target", Role.TARGET)]
    assert table.row_count == 100 and table.task_kind is TaskKind.REGRESSION
    stored = pq.read_table(out)
    assert stored.column_names == ["x0", "x1", "x2", "x3", "x4", "target"]
    assert all(t == pa.float64() for t in stored.schema.types)
    x = pd.read_csv(seed_dir / "X.csv", header=None)
    y = pd.read_csv(seed_dir / "y.csv", header=None)
    np.testing.assert_array_equal(stored.column("x3").to_numpy(), x[4].to_numpy())
    np.testing.assert_array_equal(stored.column("target").to_numpy(), y[0].to_numpy())
    assert table.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    again = ingest([src(seed_dir / "X.csv"), src(seed_dir / "y.csv")], IngestOptions(),
                   tmp_path / "again.parquet", min_rows=5)
    assert again.sha256 == table.sha256  # deterministic: the same bytes, the same table


def test_index_detected_by_content_not_position(tmp_path):
    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.normal(size=(40, 3)))
    write(tmp_path / "y.csv", "\n".join(str(v) for v in rng.normal(size=40)) + "\n")
    # No index column: the first column is a feature.
    csv(tmp_path / "X.csv", X, header=False, index=False)
    table, _ = run(tmp_path, [tmp_path / "X.csv", tmp_path / "y.csv"])
    assert table.features == ["x0", "x1", "x2"]
    # An index from 1, with pandas' default header (",0,1,2").
    X.index = X.index + 1
    csv(tmp_path / "X.csv", X)
    table, _ = run(tmp_path, [tmp_path / "X.csv", tmp_path / "y.csv"])
    assert [c.role for c in table.columns][:1] == [Role.INDEX] and table.features == ["0", "1", "2"]


def test_index_that_breaks_later_is_a_feature(tmp_path):
    n = 30
    first = list(range(n))
    first[25] = 3  # counts rows in the sniffed sample, then repeats a value: not an index
    X = pd.DataFrame({"a": first, "b": np.arange(n) * 0.5})
    csv(tmp_path / "X.csv", X, header=False, index=False)
    write(tmp_path / "y.csv", "\n".join(str(i % 7 * 1.5) for i in range(n)) + "\n")
    table, _ = run(tmp_path, [tmp_path / "X.csv", tmp_path / "y.csv"])
    assert table.features == ["x0", "x1"]


def test_single_table_text_target_is_classification(tmp_path):
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60), "note": ["x"] * 60,
                          "species": rng.choice(["setosa", "virginica", "versicolor"], 60)})
    table, out = run(tmp_path, [csv(tmp_path / "t.csv", frame, index=False)],
                     target_column="species", exclude_columns=("note",))
    assert table.task_kind is TaskKind.CLASSIFICATION
    assert table.class_labels == ["setosa", "versicolor", "virginica"]
    assert [c.role for c in table.columns] == [Role.FEATURE, Role.FEATURE, Role.EXCLUDED, Role.TARGET]
    stored = pq.read_table(out)
    assert stored.column_names == ["a", "b", "species"]
    assert stored.schema.field("species").type == pa.int64()
    codes = stored.column("species").to_numpy()
    np.testing.assert_array_equal(np.array(table.class_labels)[codes], frame["species"].to_numpy())
    assert table.target_stats.distinct == 3


def test_integer_target_task_kind(tmp_path):
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"a": rng.normal(size=200), "label": rng.integers(0, 3, 200)})
    path = csv(tmp_path / "t.csv", frame, index=False)
    table, _ = run(tmp_path, [path], target_column="label")
    assert table.task_kind is TaskKind.CLASSIFICATION and table.class_labels == ["0", "1", "2"]
    table, out = run(tmp_path, [path], target_column="label", task_kind=TaskKind.REGRESSION)
    assert table.task_kind is TaskKind.REGRESSION
    assert pq.read_table(out).schema.field("label").type == pa.float64()


def test_parquet_source(tmp_path):
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"a": rng.normal(size=50), "b": rng.integers(0, 9, 50), "y": rng.normal(size=50)},
                         index=pd.Index(rng.permutation(50)))
    frame.index.name = "row"
    frame.to_parquet(tmp_path / "t.parquet")
    table, out = run(tmp_path, [tmp_path / "t.parquet"], target_column="y")
    assert table.features == ["a", "b"] and table.task_kind is TaskKind.REGRESSION
    assert {c.name: c.role for c in table.columns}["row"] is Role.INDEX
    assert pq.read_table(out).column_names == ["a", "b", "y"]


def test_text_feature_names_file_column_and_row(tmp_path):
    rows = ["a,b,y"] + [f"{i},{i * 2},{i % 3}.5" for i in range(20)]
    rows[13] = "12,oops,1.5"
    path = write(tmp_path / "t.csv", "\n".join(rows) + "\n")
    with pytest.raises(FailedPrecondition, match=r"t.csv: column 'b' holds numbers, but row 13 \(line 14\) holds 'oops'"):
        run(tmp_path, [path], target_column="y")


def test_missing_values_and_policies(tmp_path):
    rows = ["a,b,y"] + [f"{i},{i * 2},{i}.5" for i in range(20)]
    rows[5] = "4,,4.5"
    rows[9] = "8,nan,8.5"
    rows[12] = "11,22,"  # no target: dropped and counted under every policy but refuse
    path = write(tmp_path / "t.csv", "\n".join(rows) + "\n")
    with pytest.raises(FailedPrecondition, match=r"t.csv: column 'b' row 5 \(line 6\) is missing; set options.missing_policy"):
        run(tmp_path, [path], target_column="y", missing_policy=MissingPolicy.REFUSE)
    assert not list(tmp_path.glob("*.pass1"))
    table, out = run(tmp_path, [path], target_column="y", missing_policy=MissingPolicy.DROP_ROWS)
    assert (table.row_count, table.rows_dropped, table.rows_missing_target) == (17, 3, 1)
    # The default keeps missing features for the model to impute from its training split.
    table, out = run(tmp_path, [path], target_column="y")
    assert (table.row_count, table.rows_dropped, table.rows_missing_target) == (19, 1, 1)
    b = pq.read_table(out).column("b").to_numpy(zero_copy_only=False)
    assert np.isnan(b[4]) and np.isnan(b[8]) and np.isnan(b).sum() == 2
    column = {c.name: c for c in table.columns}["b"]
    assert column.missing == 2 and column.kind is Kind.NUMERIC


def test_column_kinds_are_inferred_and_explained(tmp_path):
    """Text is a category; an id, a date and an all-missing column are excluded with the
    reason; words or 0/1 are booleans; integers stay numbers unless declared."""
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame({
        "colour": rng.choice(["red", "green", "blue"], n),
        "customer": [f"cust-{i:05d}" for i in range(n)],
        "day": [f"2024-01-{1 + i % 28:02d}" for i in range(n)],
        "member": rng.choice(["yes", "no"], n),
        "flag": rng.integers(0, 2, n),
        "store": rng.integers(1, 6, n),
        "size": rng.normal(size=n),
        "nothing": [None] * n,
        "y": rng.normal(size=n),
    })
    frame.loc[3, "colour"] = None
    frame.loc[7, "size"] = np.nan
    path = csv(tmp_path / "t.csv", frame, index=False)
    table, out = run(tmp_path, [path], target_column="y")
    cols = {c.name: c for c in table.columns}
    assert (cols["colour"].kind, cols["colour"].dtype, cols["colour"].distinct, cols["colour"].missing) == \
        (Kind.CATEGORICAL, "string", 3, 1)
    assert cols["customer"].role is Role.EXCLUDED and "200 distinct values in 200 rows" in cols["customer"].note
    assert cols["day"].role is Role.EXCLUDED and "ISO dates" in cols["day"].note
    assert cols["nothing"].role is Role.EXCLUDED and "every value is missing" in cols["nothing"].note
    assert cols["member"].kind is Kind.BOOLEAN and cols["flag"].kind is Kind.BOOLEAN
    assert cols["store"].kind is Kind.NUMERIC and cols["size"].kind is Kind.NUMERIC
    assert table.features == ["colour", "member", "flag", "store", "size"]
    stored = pq.read_table(out)
    assert stored.column("colour").type == pa.string() and stored.column("colour")[3].as_py() is None
    assert set(stored.column("member").to_pylist()) == {0.0, 1.0}
    assert stored.column("member").to_pylist() == [1.0 if v == "yes" else 0.0 for v in frame["member"]]
    # Overrides: an integer column as categories, a boolean as a number, an id excluded by hand.
    table, out = run(tmp_path, [path], target_column="y", categorical_columns=("store",),
                     numeric_columns=("flag",), exclude_columns=("colour",))
    cols = {c.name: c for c in table.columns}
    assert cols["store"].kind is Kind.CATEGORICAL and cols["store"].distinct == 5
    assert pq.read_table(out).column("store").to_pylist()[:3] == [str(v) for v in frame["store"][:3]]
    assert cols["flag"].kind is Kind.NUMERIC
    assert cols["colour"].role is Role.EXCLUDED and cols["colour"].note == "excluded by request"


def test_text_found_past_the_sniffed_sample_becomes_a_category(tmp_path):
    n = 30_000  # the sniffer reads 256 KiB: the words start well past it
    values = ["1", "2", "3"] * (n // 3)
    values[-10:] = ["north", "south"] * 5
    frame = pd.DataFrame({"region": values, "x": np.arange(n) % 7, "y": np.arange(n) % 5 + 0.5})
    frame["region"] = frame["region"].where(np.arange(n) < n - 10, "north")
    frame.loc[: n - 11, "region"] = "east"
    frame.loc[n - 5 :, "region"] = "west"
    frame.loc[0, "region"] = "1"
    path = csv(tmp_path / "t.csv", frame, index=False)
    table, out = run(tmp_path, [path], target_column="y", categorical_columns=("region",))
    assert {c.name: c.kind for c in table.columns}["region"] is Kind.CATEGORICAL


def test_declared_numeric_text_is_refused(tmp_path):
    rows = ["a,b,y"] + [f"{i},w{i % 3},{i}.5" for i in range(20)]
    path = write(tmp_path / "t.csv", "\n".join(rows) + "\n")
    with pytest.raises(FailedPrecondition, match=r"column 'b' is not numeric: row 1 \(line 2\) holds 'w0'"):
        run(tmp_path, [path], target_column="y", numeric_columns=("b",))
    with pytest.raises(InvalidArgument, match="categorical column 'nope' is not in t.csv"):
        run(tmp_path, [path], target_column="y", categorical_columns=("nope",))


def test_pandas_index_with_gaps_is_an_index(tmp_path):
    """`df.dropna().to_csv()` writes an unnamed first column of unique integers with gaps."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60), "y": rng.normal(size=60)})
    frame.loc[[3, 10, 11, 40], "a"] = np.nan
    path = csv(tmp_path / "t.csv", frame.dropna().sample(frac=1.0, random_state=2))
    table, _ = run(tmp_path, [path], target_column="y")
    cols = {c.name: c for c in table.columns}
    assert table.features == ["a", "b"] and table.row_count == 56
    index = [c for c in table.columns if c.role is Role.INDEX]
    assert len(index) == 1 and "unnamed first column of unique integers" in index[0].note


def test_xy_rows_misaligned_by_index_are_refused(tmp_path):
    """y's index shuffled far past the sniffed sample: refused, naming the first row."""
    n = 40_000
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = pd.DataFrame({"target": rng.normal(size=n)})
    order = np.arange(n)
    order[30_000:] = rng.permutation(order[30_000:])
    X.to_csv(tmp_path / "X.csv", header=False)
    y.iloc[order].to_csv(tmp_path / "y.csv", header=False)
    with pytest.raises(FailedPrecondition, match=r"X.csv and y.csv disagree at data row 3000\d: X.csv's index is 3000\d, y.csv's is \d+"):
        run(tmp_path, [tmp_path / "X.csv", tmp_path / "y.csv"])
    y.to_csv(tmp_path / "y.csv", header=False)  # aligned: accepted
    table, _ = run(tmp_path, [tmp_path / "X.csv", tmp_path / "y.csv"])
    assert table.row_count == n and table.features == ["x0", "x1"]


def test_parquet_integers_beyond_2_53_are_refused(tmp_path):
    frame = pd.DataFrame({"big": np.array([1, 2, 2**53 + 1] * 10, dtype=np.int64), "y": np.arange(30) * 1.5})
    path = tmp_path / "t.parquet"
    frame.to_parquet(path, index=False)
    with pytest.raises(FailedPrecondition, match=r"column 'big' holds 9007199254740993, beyond 2\^53"):
        run(tmp_path, [path], target_column="y")
    table, _ = run(tmp_path, [path], target_column="y", categorical_columns=("big",))
    assert {c.name: c.kind for c in table.columns}["big"] is Kind.CATEGORICAL


def test_invalid_utf8_past_the_sniffed_sample_names_the_byte(tmp_path):
    head = "a,b,y\n" + "".join(f"{i},w{i % 4},{i % 3}.5\n" for i in range(30_000))
    body = head.encode() + b"5,caf\xe9,1.5\n"
    path = tmp_path / "t.csv"
    path.write_bytes(body)
    with pytest.raises(FailedPrecondition, match=rf"t.csv is not UTF-8 text \(byte {len(head.encode()) + 5}\)"):
        run(tmp_path, [path], target_column="y")


def test_infinity_is_missing(tmp_path):
    rows = ["a,y"] + [f"{i},{i}.5" for i in range(20)]
    rows[3] = "inf,2.5"
    with pytest.raises(FailedPrecondition, match=r"column 'a' row 3 \(line 4\) is inf"):
        run(tmp_path, [write(tmp_path / "t.csv", "\n".join(rows) + "\n")], target_column="y")


def test_row_count_mismatch(tmp_path, seed_dir):
    y = (seed_dir / "y.csv").read_text().splitlines()
    short = write(tmp_path / "y.csv", "\n".join(y[:-3]) + "\n")
    with pytest.raises(FailedPrecondition, match=r"row counts differ: X.csv has 100 rows, y.csv has 97"):
        run(tmp_path, [seed_dir / "X.csv", short])
    long = write(tmp_path / "y.csv", "\n".join(y + y[:5]) + "\n")
    with pytest.raises(FailedPrecondition, match=r"X.csv has 100 rows, y.csv has 105"):
        run(tmp_path, [seed_dir / "X.csv", long])


def test_bad_tables(tmp_path):
    cases = [
        ("", {}, "is empty"),
        ("a,y\n", {}, "header but no data rows"),
        ("a,y\n" + "".join(f"{i},3\n" for i in range(20)), {}, "one distinct value"),
        ("a,y\n" + "".join(f"{i},{i}\n" for i in range(3)), {}, "needs at least 5"),
    ]
    for text, options, message in cases:
        with pytest.raises(FailedPrecondition, match=message):
            run(tmp_path, [write(tmp_path / "t.csv", text)], target_column="y", **options)
    path = write(tmp_path / "t.csv", "a,y\n" + "".join(f"{i},{i}\n" for i in range(20)))
    with pytest.raises(InvalidArgument, match="target column 'z' is not in t.csv"):
        run(tmp_path, [path], target_column="z")
    with pytest.raises(InvalidArgument, match="excluded column 'q'"):
        run(tmp_path, [path], target_column="y", exclude_columns=("q",))
    with pytest.raises(InvalidArgument, match="needs options.target_column"):
        run(tmp_path, [path])


def test_version_ids(tmp_path):
    fetched = Fetched(Layout.XY_FOLDER, [src(tmp_path / "X.csv"), src(tmp_path / "y.csv")], ["a" * 64, "b" * 64])
    base = IngestOptions().normalized(Layout.XY_FOLDER)
    vid = version_id(fetched, base)
    assert len(vid) == 12 and vid == version_id(fetched, IngestOptions(split_seed=42).normalized(Layout.XY_FOLDER))
    assert vid == version_id(fetched, IngestOptions(target_column="ignored").normalized(Layout.XY_FOLDER))
    assert vid != version_id(fetched, IngestOptions(split_seed=7).normalized(Layout.XY_FOLDER))
    assert vid != version_id(fetched, IngestOptions(missing_policy=MissingPolicy.DROP_ROWS).normalized(Layout.XY_FOLDER))
    changed = Fetched(Layout.XY_FOLDER, fetched.files, ["a" * 64, "c" * 64])
    assert vid != version_id(changed, base)
