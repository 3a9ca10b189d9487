"""Epoch milliseconds (what MLflow and the stores keep) to and from protobuf Timestamps,
for every servicer."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from kubetune_common.errors import InvalidArgument

# A Timestamp's valid range (0001-01-01 to 9999-12-31): beyond it, milliseconds
# overflow the stores' 64-bit integers.
MIN_SECONDS, MAX_SECONDS = -62_135_596_800, 253_402_300_799


def timestamp(ms: int | None) -> Timestamp | None:
    """None (the field left unset) for 0 or None: the stores' "never"."""
    if not ms:
        return None
    ts = Timestamp()
    ts.FromMilliseconds(int(ms))
    return ts


def ms_of(ts: Timestamp, present: bool, field: str) -> int | None:
    """A request's time as epoch milliseconds; None when the field is unset."""
    if not present:
        return None
    if not (MIN_SECONDS <= ts.seconds <= MAX_SECONDS and 0 <= ts.nanos < 1_000_000_000):
        raise InvalidArgument(f"{field}: not a valid time (years 1 to 9999)", field=field)
    return ts.seconds * 1000 + ts.nanos // 1_000_000
