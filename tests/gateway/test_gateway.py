"""The gateway as its own process would run it, in-process here, in front of the
real platform's backends: auth, TLS, validation at the door, a dead backend."""

from __future__ import annotations

import asyncio
import datetime as dt
import urllib.request

import grpc
import pytest

from gateway.app import start
from gateway.config import Settings
from gateway.routes import routes
from kubetune.common.v1 import options_pb2
from kubetune.data.v1 import data_pb2
from kubetune.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from kubetune.tuning.v1 import tuning_pb2 as pb
from testing.servers import free_port

pytestmark = pytest.mark.slow
TOKENS = {"viewer": "view-token-123", "editor": "edit-token-456", "admin": "admin-token-789"}


def settings_for(platform, **overrides) -> Settings:
    addresses = {f"{p}_address": f"127.0.0.1:{platform.ports[p]}" for p in ("data", "tuning", "tracking", "registry")}
    base = dict(port=0, metrics_port=0, nats_url=f"nats://127.0.0.1:{platform.ports['nats']}", deadline_s=5, **addresses)
    return Settings(**{**base, **overrides})


async def stub_for(server, credentials=None, target="127.0.0.1"):
    ch = (grpc.aio.secure_channel(f"{target}:{server.port}", credentials,
                                  options=[("grpc.ssl_target_name_override", "localhost")])
          if credentials else grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"))
    return ch, gateway_pb2_grpc.GatewayStub(ch)


def bearer(role: str | None):
    return (("authorization", f"Bearer {TOKENS[role]}"),) if role else ()


async def code_of(call) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_auth_matrix(platform):
    server = await start(settings_for(platform, tokens=",".join(f"{t}:{r}" for r, t in TOKENS.items())))
    ch, gw = await stub_for(server)
    try:
        read = lambda md: gw.ListDatasets(data_pb2.ListDatasetsRequest(), metadata=md)  # noqa: E731
        write = lambda md: gw.RegisterDataset(  # noqa: E731
            data_pb2.RegisterDatasetRequest(name="sample", uri=str(platform.home.parent)), metadata=md)
        delete = lambda md: gw.DeleteDataset(data_pb2.DeleteDatasetRequest(ref="nope@000000000000"), metadata=md)  # noqa: E731
        ok_or_refused_by_backend = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                                    grpc.StatusCode.FAILED_PRECONDITION}
        for md in [(), (("authorization", "Bearer wrong"),), (("authorization", "view-token-123"),)]:
            for call in (read, write, delete):
                assert await code_of(call(md)) == grpc.StatusCode.UNAUTHENTICATED
        assert await code_of(read(bearer("viewer"))) == grpc.StatusCode.OK
        assert await code_of(write(bearer("viewer"))) == grpc.StatusCode.PERMISSION_DENIED
        assert await code_of(delete(bearer("viewer"))) == grpc.StatusCode.PERMISSION_DENIED
        assert await code_of(read(bearer("editor"))) == grpc.StatusCode.OK
        assert await code_of(write(bearer("editor"))) in ok_or_refused_by_backend
        assert await code_of(delete(bearer("editor"))) == grpc.StatusCode.PERMISSION_DENIED
        for call in (read, write, delete):
            assert await code_of(call(bearer("admin"))) in ok_or_refused_by_backend
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await write(bearer("viewer"))
        assert "editor" in err.value.details() and "viewer" in err.value.details()
    finally:
        await ch.close()
        await server.stop(0)


async def assert_every_method_guarded(address: str, bearer) -> int:
    """Enumerated from the descriptor, so a new RPC cannot slip through unguarded: with no
    token every method is UNAUTHENTICATED; with a viewer's, every write PERMISSION_DENIED.
    `bearer(role)` gives a role's metadata. Returns the number of calls made."""
    ch = grpc.aio.insecure_channel(address)
    calls = 0
    try:
        for route in routes():
            path = f"/kubetune.gateway.v1.Gateway/{route.name}"
            empty = route.request()
            for md, expected in [((), grpc.StatusCode.UNAUTHENTICATED),
                                 (bearer("viewer"), grpc.StatusCode.PERMISSION_DENIED if route.role > 1 else None)]:
                if route.client_streaming:
                    call = (ch.stream_stream if route.server_streaming else ch.stream_unary)(
                        path, request_serializer=route.request.SerializeToString)(iter([empty]), metadata=md, timeout=5)
                else:
                    call = (ch.unary_stream if route.server_streaming else ch.unary_unary)(
                        path, request_serializer=route.request.SerializeToString)(empty, metadata=md, timeout=5)
                calls += 1
                try:
                    if route.server_streaming:
                        async for _ in call:
                            break
                        call.cancel()
                        got = grpc.StatusCode.OK
                    else:
                        await call
                        got = grpc.StatusCode.OK
                except grpc.aio.AioRpcError as exc:
                    got = exc.code()
                if expected is not None:
                    assert got == expected, (route.name, md and "viewer", got)
                else:
                    assert got not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED), route.name
    finally:
        await ch.close()
    return calls


async def test_every_method_is_guarded(platform):
    server = await start(settings_for(platform, tokens=",".join(f"{t}:{r}" for r, t in TOKENS.items())))
    try:
        await assert_every_method_guarded(f"127.0.0.1:{server.port}", bearer)
    finally:
        await server.stop(0)


def self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "tls.crt").write_bytes(cert_pem)
    (tmp_path / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return cert_pem


async def test_tls_listener(platform, tmp_path):
    cert = self_signed(tmp_path)
    server = await start(settings_for(platform, tls_cert=str(tmp_path / "tls.crt"), tls_key=str(tmp_path / "tls.key")))
    try:
        ch, gw = await stub_for(server, grpc.ssl_channel_credentials(root_certificates=cert))
        assert (await gw.GetDataset(data_pb2.GetDatasetRequest(ref="sample"))).version.name == "sample"
        await ch.close()
        plain, gw = await stub_for(server)
        assert await code_of(gw.GetDataset(data_pb2.GetDatasetRequest(ref="sample"), timeout=3)) == grpc.StatusCode.UNAVAILABLE
        await plain.close()
    finally:
        await server.stop(0)


async def test_a_dead_backend_is_named_and_the_rest_still_answers(platform):
    server = await start(settings_for(platform, data_address=f"127.0.0.1:{free_port()}"))
    ch, gw = await stub_for(server)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.GetDataset(data_pb2.GetDatasetRequest(ref="sample"))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "data service" in err.value.details()
        assert asyncio.get_running_loop().time() - started < 6
        assert "request" in err.value.details()  # the request id, for the logs
        await gw.ListStudies(pb.ListStudiesRequest())
        health = await gw.GetPlatformHealth(gateway_pb2.GetPlatformHealthRequest())
        status = {p.name: p.status for p in health.parts}
        assert status["data"] == "UNAVAILABLE" and status["tuning"] == "SERVING" and not health.all_serving
    finally:
        await ch.close()
        await server.stop(0)


async def test_validation_at_the_door_and_metrics(platform):
    port = free_port()
    server = await start(settings_for(platform, metrics_port=port))
    ch, gw = await stub_for(server)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.GetDataset(data_pb2.GetDatasetRequest(ref="x" * 5000))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "ref" in err.value.details()
        spec = pb.StudySpec(dataset="sample", n_trials=1, timeout_seconds=float("nan"))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.CreateStudy(pb.CreateStudyRequest(spec=spec))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "spec.timeout_seconds" in err.value.details()
        await gw.ListDatasets(data_pb2.ListDatasetsRequest())
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'kubetune_gateway_requests_total{code="OK",method="ListDatasets"}' in body
        assert 'code="INVALID_ARGUMENT",method="GetDataset"' in body
        assert "kubetune_gateway_request_seconds_bucket" in body
    finally:
        await ch.close()
        await server.stop(0)


async def test_long_registrations_get_their_own_deadline(platform, tmp_path):
    """RegisterDataset downloads and validates a whole dataset: it is not cut off at the
    unary deadline (here 0.2 s; 30 s by default), but at the long one, which says its name."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(200_000, 6)), columns=[f"f{i}" for i in range(5)] + ["y"])
    path = tmp_path / "slow.csv"
    table.to_csv(path, index=False)
    request = data_pb2.RegisterDatasetRequest(name="slow-" + str(abs(hash(tmp_path)) % 10_000), uri=str(path),
                                              options=data_pb2.IngestOptions(target_column="y"))
    server = await start(settings_for(platform, deadline_s=0.2, long_deadline_s=0.2))
    ch, gw = await stub_for(server)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.RegisterDataset(request)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "KUBETUNE_GATEWAY_LONG_DEADLINE_S" in err.value.details()
    finally:
        await ch.close()
        await server.stop(0)

    server = await start(settings_for(platform, deadline_s=0.2, long_deadline_s=120))
    ch, gw = await stub_for(server)
    try:
        started = asyncio.get_running_loop().time()
        answer = await gw.RegisterDataset(request, timeout=120)
        assert answer.version.row_count == 200_000
        assert asyncio.get_running_loop().time() - started > 0.2, "fast enough to prove nothing"
        # Short calls keep the unary deadline.
        assert server.port and (await gw.ListDatasets(data_pb2.ListDatasetsRequest())).datasets
    finally:
        await ch.close()
        await server.stop(0)


@pytest.mark.parametrize("char", ["数", "😀"])
async def test_a_long_non_ascii_refusal_keeps_its_reason_through_the_gateway(platform, char):
    """A refusal quoting 3,000 CJK characters or emoji used to exceed the 16 KiB trailer
    once percent-encoded: the caller saw RESOURCE_EXHAUSTED "Stream removed"."""
    server = await start(settings_for(platform))
    ch, gw = await stub_for(server)
    try:
        spec = pb.StudySpec(dataset=char * 3000, n_trials=1, max_epochs=1)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.CreateStudy(pb.CreateStudyRequest(spec=spec))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        assert err.value.details().startswith("dataset") and "[request " in err.value.details()
    finally:
        await ch.close()
        await server.stop(0)

async def test_who_am_i_and_a_tokens_file_changed_without_a_restart(platform, tmp_path):
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("file-viewer-1 viewer\n")
    server = await start(settings_for(platform, tokens_file=str(tokens_file)))
    off = await start(settings_for(platform))
    ch, gw = await stub_for(server)
    off_ch, off_gw = await stub_for(off)

    async def who(token):
        return await gw.WhoAmI(gateway_pb2.WhoAmIRequest(), metadata=(("authorization", f"Bearer {token}"),))

    async def role_soon(token, role, timeout=5.0):
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                if (await who(token)).role == role:
                    return
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
            assert asyncio.get_running_loop().time() < deadline, f"{token} not {role} within {timeout}s"
            await asyncio.sleep(0.2)

    try:
        first = await who("file-viewer-1")
        assert (first.role, first.auth_enabled) == (options_pb2.ROLE_VIEWER, True)
        assert await code_of(gw.WhoAmI(gateway_pb2.WhoAmIRequest())) == grpc.StatusCode.UNAUTHENTICATED
        # Swapped in as Kubernetes swaps a Secret volume's file.
        new = tmp_path / "tokens.new"
        new.write_text("file-viewer-1 editor\nfile-admin-2 admin\n")
        new.replace(tokens_file)
        await role_soon("file-admin-2", options_pb2.ROLE_ADMIN)
        assert (await who("file-viewer-1")).role == options_pb2.ROLE_EDITOR
        # A file that does not parse keeps the tokens in force.
        tokens_file.write_text("a line with no role at all\n")
        await asyncio.sleep(1.5)
        assert (await who("file-admin-2")).role == options_pb2.ROLE_ADMIN
        tokens_file.write_text("file-viewer-1 viewer\n")
        await role_soon("file-viewer-1", options_pb2.ROLE_VIEWER)
        assert await code_of(who("file-admin-2")) == grpc.StatusCode.UNAUTHENTICATED
        # Auth off: everyone is admin, and the gateway says auth is off.
        open_door = await off_gw.WhoAmI(gateway_pb2.WhoAmIRequest())
        assert (open_door.role, open_door.auth_enabled) == (options_pb2.ROLE_ADMIN, False)
    finally:
        await ch.close()
        await off_ch.close()
        await server.stop(0)
        await off.stop(0)
