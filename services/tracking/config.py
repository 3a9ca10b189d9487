"""The tracking service's settings (KUBETUNE_TRACKING_*)."""

from __future__ import annotations

from pydantic import Field

from kubetune_common.config import PORTS, PartSettings, mlflow_uri


class Settings(PartSettings, env_prefix="KUBETUNE_TRACKING_"):
    """The tracking service. Env prefix KUBETUNE_TRACKING_."""

    port: int = PORTS["tracking"]
    mlflow_uri: str = mlflow_uri()
    batch_size: int = Field(500, description="Most events written to MLflow in one batch.")
    batch_wait_s: float = Field(0.2, description="Longest an event waits for its batch to fill.")
    backend_store_uri: str = Field(
        "",
        description=(
            "The MLflow server's own backend store (sqlite:///... or postgresql://...). When set, "
            "queries read its tables directly, read-only, which is what makes ListRuns fast at "
            "10,000 runs; writes always go through mlflow_uri. Empty: MLflow's REST API only."
        ),
    )
    consumer_name: str = Field("tracking", description="Durable JetStream consumer of trial and study events.")
    consume_events: bool = Field(True, description="Write trial and study events to MLflow (off: queries only).")
