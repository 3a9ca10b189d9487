"""Guarantee 3a: bad input never crashes a service. Hypothesis builds requests for
every gateway RPC from the descriptor (so a new RPC is fuzzed the day it is added):
hostile strings (path traversal, URIs, NUL, oversize), extreme and negative
integers, NaN and infinities, unknown enum values, empty and huge repeated fields.
Every answer must be a deliberate status with a readable message, never UNKNOWN or
INTERNAL, and no part may have died or restarted afterwards."""

from __future__ import annotations

import collections

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor as F
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.routes import routes
from kubetune.data.v1 import data_pb2
from kubetune.gateway.v1 import gateway_pb2
from kubetune.tuning.v1 import tuning_pb2 as pb
from tests.reliability.conftest import bearer
from testing.studies import param_float

pytestmark = pytest.mark.slow
ROUTES = routes()
EXAMPLES = 90  # per unary RPC; streams get fewer (each waits out a short deadline)
STREAM_EXAMPLES = 20
# Every part is up while this runs: UNAVAILABLE would tell the caller to retry bad input.
CRASHES = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE}
SEEN: collections.Counter = collections.Counter()

HOSTILE = [
    "", " ", ".", "..", "../../../../etc/passwd", "..\\..\\windows\\win.ini", "/etc/passwd", "/", "~", "~root/.ssh/id_rsa",
    "file:///etc/passwd", "file://host/share", "s3://", "s3://bucket", "s3://bucket/../../other", "s3://bucket//x",
    "s3://../key", "s3://Bad_Bucket!/k", "http://169.254.169.254/latest/meta-data/", "runs:/0123/model",
    "models:/m/1", "mlflow-artifacts:/x", "sample@../../x", "name@", "@", "a@b@c", "x/../../y", "%2e%2e%2f",
    "\x00", "a\x00b", "\n", "\r\n", "\t", "'; DROP TABLE runs; --", "${jndi:ldap://x/a}", "{{7*7}}", "<script>",
    "kubetune.>", "*", ">", "名前", "\u202e", "\ufeff", "x" * 4096, "x" * 4097, "y" * 70_000, "-1", "NaN", "1e309",
]


def scalar(f) -> st.SearchStrategy:
    t = f.type
    if t == F.TYPE_STRING:
        return st.one_of(st.sampled_from(HOSTILE), st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
    if t == F.TYPE_BYTES:
        return st.binary(max_size=256)
    if t == F.TYPE_BOOL:
        return st.booleans()
    if t in (F.TYPE_DOUBLE,):
        return st.floats(allow_nan=True, allow_infinity=True)
    if t == F.TYPE_FLOAT:
        return st.floats(width=32, allow_nan=True, allow_infinity=True)
    if t == F.TYPE_ENUM:
        return st.one_of(st.sampled_from([v.number for v in f.enum_type.values]), st.integers(-5, 10_000))
    if t in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
        return st.one_of(st.sampled_from([0, -1, 1, 2**31 - 1, -(2**31)]), st.integers(-(2**31), 2**31 - 1))
    if t in (F.TYPE_UINT32, F.TYPE_FIXED32):
        return st.one_of(st.sampled_from([0, 1, 2**32 - 1]), st.integers(0, 2**32 - 1))
    if t in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64):
        return st.one_of(st.sampled_from([0, -1, 2**63 - 1, -(2**63)]), st.integers(-(2**63), 2**63 - 1))
    return st.one_of(st.sampled_from([0, 2**64 - 1]), st.integers(0, 2**64 - 1))


def message(desc, depth: int = 0) -> st.SearchStrategy:
    """Any message of this type: each field absent or set to something hostile."""
    cls = GetMessageClass(desc)
    fields = {}
    for f in desc.fields:
        many = f.is_repeated
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key, value = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            value_s = message(value.message_type, depth + 1) if value.message_type else scalar(value)
            fields[f.name] = st.dictionaries(scalar(key), value_s, max_size=3)
        elif f.message_type is not None:
            if depth >= 4:
                continue
            one = message(f.message_type, depth + 1)
            fields[f.name] = st.lists(one, max_size=3) if many else one
        else:
            fields[f.name] = st.lists(scalar(f), max_size=4) if many else scalar(f)

    def build(values: dict):
        msg = cls()
        for name, value in values.items():
            field = desc.fields_by_name[name]
            target = getattr(msg, name) if field.is_repeated else None
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for k, v in value.items():
                    if hasattr(v, "DESCRIPTOR"):
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            elif target is not None:
                target.extend(value)
            elif field.message_type is not None:
                getattr(msg, name).CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return st.fixed_dictionaries({}, optional=fields).map(build)


def call(ch: grpc.Channel, route, request, timeout: float) -> tuple[grpc.StatusCode, str]:
    md = bearer("admin")
    path, ser = route.path, route.request.SerializeToString
    try:
        if route.client_streaming:
            maker = ch.stream_stream if route.server_streaming else ch.stream_unary
            result = maker(path, request_serializer=ser)(iter(request), metadata=md, timeout=timeout)
        else:
            maker = ch.unary_stream if route.server_streaming else ch.unary_unary
            result = maker(path, request_serializer=ser)(request, metadata=md, timeout=timeout)
        if route.server_streaming:
            for _ in result:
                pass
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def readable(details: str) -> bool:
    return bool(details.strip()) and "Traceback" not in details and "Exception calling application" not in details


@pytest.fixture(scope="module")
def pids(secured):
    """Each part's process before the fuzzing: none may die or restart."""
    return {p.name: p.proc.pid for p in secured.supervisor.parts}


@pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
def test_generated_requests_get_deliberate_answers(secured, pids, route):
    one = message(route.request.DESCRIPTOR)
    strategy = st.lists(one, max_size=4) if route.client_streaming else one
    streams = route.server_streaming or route.client_streaming
    ch = grpc.insecure_channel(secured.gateway, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])

    @settings(max_examples=STREAM_EXAMPLES if streams else EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def answers(request):
        code, details = call(ch, route, request, timeout=1.5 if route.server_streaming else 15)
        SEEN[(route.name, code.name)] += 1
        assert code not in CRASHES, f"{route.name}: {code.name}: {details}\n{request}"
        if code != grpc.StatusCode.OK:
            assert readable(details), f"{route.name}: {code.name} with an unreadable message {details!r}"

    try:
        answers()
    finally:
        ch.close()


def test_deep_and_extreme_study_specs_are_refused(secured, admin):
    sample = admin.GetDataset(data_pb2.GetDatasetRequest(ref="sample")).version
    ref = f"{sample.name}@{sample.version}"
    cases = {
        "10,000 parameters": pb.StudySpec(dataset=ref, n_trials=1, search_space=[
            param_float(f"p{i}", 0.0, 1.0) for i in range(10_000)]),
        "2^31-1 trials": pb.StudySpec(dataset=ref, n_trials=2**31 - 1),
        "negative trials": pb.StudySpec(dataset=ref, n_trials=-5),
        "infinite range": pb.StudySpec(dataset=ref, n_trials=1, search_space=[param_float("learning_rate", 0, float("inf"))]),
        "NaN range": pb.StudySpec(dataset=ref, n_trials=1, search_space=[param_float("dropout", float("nan"), 0.5)]),
        "unknown sampler": pb.StudySpec(dataset=ref, n_trials=1, sampler=9999),
        "unknown pruner": pb.StudySpec(dataset=ref, n_trials=1, pruner=-3),
        "epochs over the cap": pb.StudySpec(dataset=ref, n_trials=1, max_epochs=10**9),
        "traversal name": pb.StudySpec(dataset=ref, n_trials=1, name="../../tuning/optuna.db"),
    }
    for what, spec in cases.items():
        with pytest.raises(grpc.RpcError) as err:
            admin.CreateStudy(pb.CreateStudyRequest(spec=spec), timeout=30)
        SEEN[("CreateStudy(extreme)", err.value.code().name)] += 1
        assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), (what, err.value)
        assert readable(err.value.details()), what


def test_every_part_still_serving_and_none_restarted(secured, pids, admin):
    health = admin.GetPlatformHealth(gateway_pb2.GetPlatformHealthRequest(), timeout=10)
    assert health.all_serving, health
    now = {p.name: (p.proc.pid if p.proc else None) for p in secured.supervisor.parts}
    assert now == pids, "a part died during the fuzzing"
    total = sum(SEEN.values())
    by_code = collections.Counter()
    for (_, code), n in SEEN.items():
        by_code[code] += n
    other = {f"{r} {c}": n for (r, c), n in SEEN.items() if c not in ("OK", "INVALID_ARGUMENT", "NOT_FOUND")}
    print(f"\nbad-input: {total} requests over {len(ROUTES)} RPCs; answers {dict(by_code)}; no part restarted; "
          f"other codes by RPC: {other}")
