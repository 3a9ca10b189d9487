import asyncio
import json
import logging

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kubetune.events.v1 import events_pb2 as ev
from kubetune.tuning.v1 import tuning_pb2, tuning_pb2_grpc
from kubetune_common import subjects
from services.common import events
from kubetune_common.errors import (
    MAX_MESSAGE_WIRE_BYTES, FailedPrecondition, InvalidArgument, NotFound, servicer_errors, status_for, wire_size,
)
from kubetune_common.logs import JsonFormatter
from services.common.server import PortInUse, make_server
from services.tuning.worker.config import Settings as WorkerSettings


def test_settings_read_part_prefix_and_shared_names(monkeypatch):
    monkeypatch.setenv("KUBETUNE_WORKER_PORT", "51234")
    monkeypatch.setenv("KUBETUNE_NATS_URL", "nats://nats:4222")
    monkeypatch.setenv("KUBETUNE_TUNING_STORAGE_URL", "postgresql://db/optuna")
    monkeypatch.setenv("KUBETUNE_DATA_ADDRESS", "data:50061")
    s = WorkerSettings()
    assert (s.port, s.nats_url, s.storage_url, s.data_address) == (51234, "nats://nats:4222", "postgresql://db/optuna", "data:50061")


def test_settings_reject_a_bad_type(monkeypatch):
    monkeypatch.setenv("KUBETUNE_WORKER_PORT", "not-a-port")
    with pytest.raises(ValueError, match="port"):
        WorkerSettings()


def test_error_mapping():
    assert status_for(InvalidArgument("x"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert status_for(NotFound("x"))[0] == grpc.StatusCode.NOT_FOUND
    assert status_for(FailedPrecondition("x")) == (grpc.StatusCode.FAILED_PRECONDITION, "x")
    code, message = status_for(KeyError("secret detail"))
    assert code == grpc.StatusCode.INTERNAL and "secret detail" not in message


def test_every_event_payload_has_one_subject():
    payloads = {f.name for f in ev.Event.DESCRIPTOR.oneofs_by_name["payload"].fields}
    assert payloads == set(subjects.SUBJECT_BY_PAYLOAD)
    assert len(set(subjects.SUBJECT_BY_PAYLOAD.values())) == len(payloads)
    for subject in subjects.SUBJECT_BY_PAYLOAD.values():
        parts = subject.split(".")
        assert len(parts) == 4 and parts[0] == "kubetune" and subject == subject.lower()
        assert parts[1] in subjects.EVENT_PARTS  # so the events stream and watchers carry it
    assert not subjects.ticket_subject("s1").startswith(tuple(p[:-4] for p in subjects.EVENT_PATTERNS))


def test_event_round_trip():
    event = events.make_event(trial_started=ev.TrialStarted(study_id="s1", trial=3, params={"lr": "0.01"}))
    assert events.subject_of(event) == "kubetune.tuning.trial.started"
    back = events.decode("kubetune.tuning.trial.started", events.encode(event))
    assert back.trial_started.params["lr"] == "0.01" and back.id == event.id and back.subject.endswith("started")


def test_json_log_lines_carry_extra_fields():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.study_id = "s1"
    line = json.loads(JsonFormatter("data").format(record))
    assert line["msg"] == "hello you" and line["part"] == "data" and line["study_id"] == "s1"


@servicer_errors
class _Failing(tuning_pb2_grpc.TuningServiceServicer):
    async def GetStudy(self, request, context):
        raise InvalidArgument("study_id: bad", field="study_id")

    async def ListStudies(self, request, context):
        raise RuntimeError("boom")

    async def WatchStudy(self, request, context):
        yield tuning_pb2.WatchStudyResponse()
        raise NotFound("gone")


async def test_server_maps_errors_serves_health_and_refuses_a_taken_port():
    def register(server):
        tuning_pb2_grpc.add_TuningServiceServicer_to_server(_Failing(), server)
        return ["kubetune.tuning.v1.TuningService"]

    server = await make_server("127.0.0.1:0", register)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            stub = tuning_pb2_grpc.TuningServiceStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetStudy(tuning_pb2.GetStudyRequest())
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "study_id" in err.value.details()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ListStudies(tuning_pb2.ListStudiesRequest())
            assert err.value.code() == grpc.StatusCode.INTERNAL and "boom" not in err.value.details()
            stream = stub.WatchStudy(tuning_pb2.WatchStudyRequest())
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in stream:
                    pass
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            health = health_pb2_grpc.HealthStub(ch)
            status = await health.Check(health_pb2.HealthCheckRequest(service="kubetune.tuning.v1.TuningService"))
            assert status.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(PortInUse):
                await make_server(f"127.0.0.1:{server.port}", lambda s: [])
            await server.set_serving(False)
            status = await health.Check(health_pb2.HealthCheckRequest())
            assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await server.stop(0)


async def test_event_bus_declares_streams_idempotently_and_delivers(nats_url):
    bus = await events.EventBus.open(nats_url, "test")
    again = await events.EventBus.open(nats_url, "test-again")
    got = asyncio.Queue()
    try:
        await bus.subscribe("kubetune.tuning.trial.*", got.put)
        sent = await again.publish(trial_failed=ev.TrialFailed(study_id="s", trial=1, reason="x"))
        received = await asyncio.wait_for(got.get(), 20)  # generous: CI machines can be busy
        assert received.id == sent.id and received.subject == subjects.TRIAL_FAILED
        info = await bus.js.stream_info(subjects.EVENTS_STREAM)
        assert info.state.messages >= 1
    finally:
        await bus.close()
        await again.close()


async def test_stream_reader_never_cancels_a_read_in_flight():
    """A watcher that goes away (its task cancelled mid-read) must not cancel the
    grpc.aio read itself: that leaks native memory (grpc/grpc#43360). The read goes on
    until aclose() cancels the call, and then it ends."""
    from kubetune_common.channels import StreamReader, channel

    async def watch(request, context):
        await context.write(b"snapshot")
        await asyncio.Event().wait()  # no more events

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "probe.Watch", {"Watch": grpc.unary_stream_rpc_method_handler(watch)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ch = channel(f"127.0.0.1:{port}")
    try:
        reader = StreamReader(ch.unary_stream("/probe.Watch/Watch")(b""))
        got = []

        async def consume():
            async for message in reader:
                got.append(message)

        task = asyncio.create_task(consume())
        while not got:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # parked on the second read
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        read = reader._read
        assert got == [b"snapshot"]
        assert read is not None and not read.done(), "the read in flight went down with its caller"
        await reader.aclose()
        assert read.done(), "aclose() left the read hanging"  # ended by the call's cancellation
        assert await reader.call.code() == grpc.StatusCode.CANCELLED
        await reader.aclose()  # idempotent
    finally:
        await ch.close()
        await server.stop(None)


def test_use_wal_puts_a_sqlite_file_in_wal_mode_and_leaves_other_urls(tmp_path):
    import sqlite3

    from kubetune_common.sqlite import use_wal

    db = tmp_path / "sub" / "x.db"
    use_wal(f"sqlite:///{db}")
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # kept in the file
    use_wal("postgresql://u@127.0.0.1/test")  # not touched: nothing to open
    use_wal("sqlite:///:memory:")
    assert [p.name for p in tmp_path.iterdir()] == ["sub"]


@servicer_errors
class _Quoting(tuning_pb2_grpc.TuningServiceServicer):
    """Refuses, quoting the (long, non-ASCII) input, as domain messages do."""

    async def GetStudy(self, request, context):
        raise InvalidArgument(f"study_id: no study {request.study_id!r}", field="study_id")


@pytest.mark.parametrize("char", ["数", "😀"])
async def test_a_long_non_ascii_refusal_arrives_with_its_code_and_reason(char):
    """gRPC percent-encodes the message in a trailer a peer caps at 16 KiB: 2,000 CJK
    characters (18 KB encoded) or emoji (24 KB) used to arrive as RESOURCE_EXHAUSTED."""
    server = await make_server("127.0.0.1:0", lambda s: (
        tuning_pb2_grpc.add_TuningServiceServicer_to_server(_Quoting(), s), ["kubetune.tuning.v1.TuningService"])[1])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await tuning_pb2_grpc.TuningServiceStub(ch).GetStudy(tuning_pb2.GetStudyRequest(study_id=char * 3000))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        details = err.value.details()
        assert details.startswith("study_id: no study '" + char * 100) and "more characters)" in details
        assert wire_size(details) <= MAX_MESSAGE_WIRE_BYTES
    finally:
        await server.stop(0)


async def test_a_failed_start_closes_what_it_opened_in_reverse():
    from services.common.server import Service, cleanup_on_failure

    closed = []

    def closer(name):
        async def close():
            closed.append(name)
            if name == "bus":
                raise RuntimeError("a close that fails does not stop the others")
        return close

    with pytest.raises(PortInUse):
        async with cleanup_on_failure() as opened:
            for name in ("store", "bus", "clients"):
                opened.add(closer(name))
            taken = await make_server("127.0.0.1:0", lambda s: [])
            try:
                await make_server(f"127.0.0.1:{taken.port}", lambda s: [])
            finally:
                await taken.stop(0)
    assert closed == ["clients", "bus", "store"]

    closed.clear()
    async with cleanup_on_failure() as opened:
        opened.add(closer("store"))
        app = Service(opened.serve(await make_server("127.0.0.1:0", lambda s: [])))
    assert closed == []  # started: the closes wait for the server to stop
    await app.stop(0)
    assert closed == ["store"]
