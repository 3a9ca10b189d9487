"""The gateway's settings (KUBETUNE_GATEWAY_*)."""

from __future__ import annotations

from pydantic import Field

from kubetune_common.config import PORTS, PartSettings, address_of


class Settings(PartSettings, env_prefix="KUBETUNE_GATEWAY_"):
    """The gateway. Env prefix KUBETUNE_GATEWAY_."""

    port: int = PORTS["gateway"]
    data_address: str = address_of("data")
    tuning_address: str = address_of("tuning")
    tracking_address: str = address_of("tracking")
    registry_address: str = address_of("registry")
    deadline_s: float = Field(30.0, description="Deadline of every unary backend call.")
    long_deadline_s: float = Field(3600.0, description="Deadline of the long-running calls (the `long_running` "
                                   "option: RegisterDataset, UploadDataset), which download and validate whole datasets.")
    tokens: str = Field("", description="`token:role,token:role`; empty (and no tokens_file): auth off.")
    tokens_file: str = Field("", description="File of `token role` lines (a mounted Kubernetes Secret).")
    tls_cert: str = Field("", description="PEM certificate; with tls_key, the listener uses TLS.")
    tls_key: str = Field("", description="PEM private key.")
    metrics_port: int = Field(PORTS["metrics"], description="Prometheus metrics over HTTP; 0: off.")
    max_message_bytes: int = Field(64 * 1024 * 1024, description="Largest request or response message.")
