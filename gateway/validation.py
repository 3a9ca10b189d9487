"""Checks at the door, the same for every request: sizes and numbers that no
backend should ever see. The backends validate meaning; this keeps out garbage."""

from __future__ import annotations

import math

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from kubetune.registry.v1 import registry_pb2
from kubetune_common.errors import InvalidArgument

MAX_STRING = 4096
MAX_REPEATED = 100_000
MAX_DEPTH = 16
FLOAT_FIELDS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)


def check(message: Message, path: str = "", depth: int = 0) -> None:
    if isinstance(message, registry_pb2.PredictRequest):
        check_prediction_rows(message)
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"{path or 'request'}: nested too deeply", field=path)
    for field, value in message.ListFields():
        name = f"{path}.{field.name}" if path else field.name
        if field.is_repeated if hasattr(field, "is_repeated") else field.label == FieldDescriptor.LABEL_REPEATED:
            if len(value) > MAX_REPEATED:
                raise InvalidArgument(f"{name}: at most {MAX_REPEATED} entries (got {len(value)})", field=name)
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for k, v in value.items():
                    _check_scalar(field.message_type.fields_by_name["key"], k, f"{name}[{k!r}]"[:200])
                    if isinstance(v, Message):
                        check(v, f"{name}[{k!r}]", depth + 1)
                    else:
                        _check_scalar(field.message_type.fields_by_name["value"], v, f"{name}[{k!r}]"[:200])
                continue
            for i, item in enumerate(value):
                if isinstance(item, Message):
                    check(item, f"{name}[{i}]", depth + 1)
                else:
                    _check_scalar(field, item, f"{name}[{i}]")
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            check(value, name, depth + 1)
        else:
            _check_scalar(field, value, name)


def _check_scalar(field: FieldDescriptor, value, name: str) -> None:
    if field.type == FieldDescriptor.TYPE_STRING:
        if len(value) > MAX_STRING:
            raise InvalidArgument(f"{name}: at most {MAX_STRING} characters (got {len(value)})", field=name)
        if "\x00" in value:
            raise InvalidArgument(f"{name}: contains a NUL character", field=name)
    elif field.type in FLOAT_FIELDS and not math.isfinite(value) and not name.startswith("rows"):
        raise InvalidArgument(f"{name}: must be a finite number (got {value})", field=name)


def check_prediction_rows(request: registry_pb2.PredictRequest) -> None:
    """A prediction row may hold NaN (a missing value: the model imputes it), never inf.
    Text values and the columns' kinds are the registry's to check: it knows the model."""
    columns = request.columns
    for i, row in enumerate(request.rows):
        for j, value in enumerate(row.values):
            if math.isinf(value):
                column = repr(columns[j]) if j < len(columns) else str(j)
                raise InvalidArgument(f"row {i}, column {column}: {value} is not a finite number "
                                      "(leave a missing value NaN or empty)", field=f"rows[{i}].values[{j}]")
