"""Wires the gateway: one long-lived channel per backend, the proxy, its own methods."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from prometheus_client import start_http_server

from gateway import routes as api
from gateway.auth import Authenticator
from gateway.config import Settings
from gateway.proxy import Proxy
from kubetune.common.v1 import options_pb2
from kubetune.gateway.v1 import gateway_pb2
from kubetune_common import subjects
from kubetune_common.channels import channel, health_status
from services.common.clients import Backend
from services.common.events import EventBus
from services.common.server import Service, cleanup_on_failure, make_server
from services.common.watch import EventHub

log = logging.getLogger(__name__)


def event_filter(request: gateway_pb2.WatchEventsRequest):
    """Each non-empty list of the request must match; an empty one matches everything."""
    studies, datasets, models = set(request.study_ids), set(request.datasets), set(request.models)
    kinds = [k.replace(">", "*") for k in request.kinds]

    def accepts(event) -> bool:
        kind = event.WhichOneof("payload")
        payload = getattr(event, kind)
        if studies and getattr(payload, "study_id", None) not in studies:
            return False
        if datasets:
            name = getattr(payload, "name", None) if kind.startswith(("dataset", "download")) else None
            ref = getattr(payload, "dataset_version", None)
            if name not in datasets and ref not in datasets and (ref or "").split("@")[0] not in datasets:
                return False
        if models and (not kind.startswith(("model", "alias")) or payload.name not in models):
            return False
        if kinds and not any(fnmatch.fnmatchcase(subjects.SUBJECT_BY_PAYLOAD[kind], k) for k in kinds):
            return False
        return True

    return accepts


class LocalMethods:
    def __init__(self, hub: EventHub, channels: dict[str, grpc.aio.Channel], backends: dict[str, Backend], bus: EventBus,
                 auth: Authenticator):
        self.hub, self.channels, self.backends, self.bus, self.auth = hub, channels, backends, bus, auth

    async def WhoAmI(self, request, context):
        # The proxy has already checked the token; this only reports what it found.
        if not self.auth.enabled:
            return gateway_pb2.WhoAmIResponse(role=options_pb2.ROLE_ADMIN, auth_enabled=False)
        return gateway_pb2.WhoAmIResponse(role=self.auth.role_of(context.invocation_metadata()), auth_enabled=True)

    async def WatchEvents(self, request, context):
        watch = await self.hub.open(event_filter(request))
        async for event in watch.events():
            yield event

    async def GetPlatformHealth(self, request, context):
        names = list(self.channels)
        statuses = await asyncio.gather(*(health_status(self.channels[n], timeout=1.0) for n in names))
        parts = [gateway_pb2.PartHealth(name="gateway", status="SERVING", address="")]
        parts += [gateway_pb2.PartHealth(name=n, status=s, address=self.backends[n].address) for n, s in zip(names, statuses)]
        nats_ok = self.bus.nc.is_connected
        parts.append(gateway_pb2.PartHealth(name="nats", status="SERVING" if nats_ok else "UNAVAILABLE",
                                            address=self.bus.nc.connected_url.netloc if nats_ok and self.bus.nc.connected_url else ""))
        return gateway_pb2.GetPlatformHealthResponse(parts=parts, all_serving=all(p.status == "SERVING" for p in parts))


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not (settings.tls_cert or settings.tls_key):
        return None
    if not (settings.tls_cert and settings.tls_key):
        raise ValueError("TLS needs both KUBETUNE_GATEWAY_TLS_CERT and KUBETUNE_GATEWAY_TLS_KEY")
    return grpc.ssl_server_credentials([(Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes())])


@dataclass
class GatewayApp(Service):
    backends: dict[str, Backend]


async def start(settings: Settings) -> GatewayApp:
    backends = {
        name: Backend(name, address, settings.deadline_s)
        for name, address in (("data", settings.data_address), ("tuning", settings.tuning_address),
                              ("tracking", settings.tracking_address), ("registry", settings.registry_address))
    }
    auth = Authenticator.from_settings(settings.tokens, settings.tokens_file)
    if not auth.enabled:
        log.warning("authentication is OFF: no tokens configured (fine on loopback, never on a network)")
    else:
        log.info("authentication on: %d tokens", len(auth.tokens))
    async with cleanup_on_failure() as opened:
        # Raw channels: the proxy forwards bytes, with the client layer's error policy.
        channels = {name: channel(b.address) for name, b in backends.items()}
        for ch in channels.values():
            opened.add(ch.close)
        bus = await EventBus.open(settings.nats_url, "gateway")
        opened.add(bus.close)
        hub = EventHub(bus, *subjects.EVENT_PATTERNS)
        local = LocalMethods(hub, channels, backends, bus, auth)
        proxy = Proxy(channels, backends, auth, {name: getattr(local, name) for name in api.LOCAL},
                      long_deadline_s=settings.long_deadline_s)
        handlers = {route.name: proxy.handler(route) for route in api.routes()}

        def register(server):
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(api.GATEWAY.full_name, handlers),))
            return [api.GATEWAY.full_name]

        options = [
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        server = await make_server(settings.address, register, credentials=server_credentials(settings),
                                   options=options, access_log=False)
        if settings.metrics_port:
            start_http_server(settings.metrics_port, addr=settings.host)
            log.info("metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
        return GatewayApp(opened.serve(server), backends)
