"""The gateway's API, derived from its descriptor: each method forwards to the
backend service that has a method of the same name, guarded by the role its
`required_role` option names. A method with no backend and no local handler, or
with no role, stops the gateway at start: nothing slips through unguarded."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import descriptor
from google.protobuf.message_factory import GetMessageClass

from kubetune.common.v1 import options_pb2
from kubetune.data.v1 import data_pb2
from kubetune.gateway.v1 import gateway_pb2
from kubetune.registry.v1 import registry_pb2
from kubetune.tracking.v1 import tracking_pb2
from kubetune.tuning.v1 import tuning_pb2

GATEWAY = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"]
BACKENDS: dict[str, descriptor.ServiceDescriptor] = {
    "data": data_pb2.DESCRIPTOR.services_by_name["DataService"],
    "tuning": tuning_pb2.DESCRIPTOR.services_by_name["TuningService"],
    "tracking": tracking_pb2.DESCRIPTOR.services_by_name["TrackingService"],
    "registry": registry_pb2.DESCRIPTOR.services_by_name["RegistryService"],
}
LOCAL = {"WatchEvents", "GetPlatformHealth", "WhoAmI"}


@dataclass(frozen=True)
class Route:
    name: str
    role: int
    backend: str  # "" for the gateway's own methods
    backend_path: str
    request: type
    response: type
    client_streaming: bool
    server_streaming: bool
    long_running: bool = False

    @property
    def path(self) -> str:
        return f"/{GATEWAY.full_name}/{self.name}"


def required_role(method: descriptor.MethodDescriptor) -> int:
    return method.GetOptions().Extensions[options_pb2.required_role]


def routes() -> list[Route]:
    out = []
    for method in GATEWAY.methods:
        role = required_role(method)
        if role == options_pb2.ROLE_UNSPECIFIED:
            raise RuntimeError(f"gateway method {method.name} has no required_role option")
        owners = [(name, svc) for name, svc in BACKENDS.items() if method.name in svc.methods_by_name]
        if method.name in LOCAL:
            backend, path = "", ""
        elif len(owners) == 1:
            backend, svc = owners[0]
            target = svc.methods_by_name[method.name]
            if target.input_type is not method.input_type or target.output_type is not method.output_type:
                raise RuntimeError(f"gateway method {method.name} does not match {svc.full_name}'s types")
            path = f"/{svc.full_name}/{method.name}"
        else:
            raise RuntimeError(f"gateway method {method.name} has {len(owners)} backends; it needs exactly one")
        out.append(Route(
            name=method.name,
            role=role,
            backend=backend,
            backend_path=path,
            request=GetMessageClass(method.input_type),
            response=GetMessageClass(method.output_type),
            client_streaming=method.client_streaming,
            server_streaming=method.server_streaming,
            long_running=method.GetOptions().Extensions[options_pb2.long_running],
        ))
    return out
