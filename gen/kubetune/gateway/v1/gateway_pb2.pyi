from kubetune.common.v1 import options_pb2 as _options_pb2
from kubetune.data.v1 import data_pb2 as _data_pb2
from kubetune.events.v1 import events_pb2 as _events_pb2
from kubetune.registry.v1 import registry_pb2 as _registry_pb2
from kubetune.tracking.v1 import tracking_pb2 as _tracking_pb2
from kubetune.tuning.v1 import tuning_pb2 as _tuning_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchEventsRequest(_message.Message):
    __slots__ = ("study_ids", "datasets", "models", "kinds")
    STUDY_IDS_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    study_ids: _containers.RepeatedScalarFieldContainer[str]
    datasets: _containers.RepeatedScalarFieldContainer[str]
    models: _containers.RepeatedScalarFieldContainer[str]
    kinds: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, study_ids: _Optional[_Iterable[str]] = ..., datasets: _Optional[_Iterable[str]] = ..., models: _Optional[_Iterable[str]] = ..., kinds: _Optional[_Iterable[str]] = ...) -> None: ...

class GetPlatformHealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PartHealth(_message.Message):
    __slots__ = ("name", "status", "address", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    address: str
    detail: str
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ..., address: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class GetPlatformHealthResponse(_message.Message):
    __slots__ = ("parts", "all_serving")
    PARTS_FIELD_NUMBER: _ClassVar[int]
    ALL_SERVING_FIELD_NUMBER: _ClassVar[int]
    parts: _containers.RepeatedCompositeFieldContainer[PartHealth]
    all_serving: bool
    def __init__(self, parts: _Optional[_Iterable[_Union[PartHealth, _Mapping]]] = ..., all_serving: _Optional[bool] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("role", "auth_enabled")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    AUTH_ENABLED_FIELD_NUMBER: _ClassVar[int]
    role: _options_pb2.Role
    auth_enabled: bool
    def __init__(self, role: _Optional[_Union[_options_pb2.Role, str]] = ..., auth_enabled: _Optional[bool] = ...) -> None: ...
