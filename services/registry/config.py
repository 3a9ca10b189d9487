"""The registry service's settings (KUBETUNE_REGISTRY_*)."""

from __future__ import annotations

from pydantic import Field

from kubetune_common.config import PORTS, PartSettings, mlflow_uri


class Settings(PartSettings, env_prefix="KUBETUNE_REGISTRY_"):
    """The registry service. Env prefix KUBETUNE_REGISTRY_."""

    port: int = PORTS["registry"]
    mlflow_uri: str = mlflow_uri()
    model_cache_size: int = Field(8, description="Models kept loaded for Predict (LRU).")
    max_predict_rows: int = Field(100_000, description="Most rows one Predict call may send.")
    resolve_ttl_s: float = Field(
        5.0, description="Seconds Predict reuses an alias's version before asking MLflow again "
        "(changes made through this service apply at once).")
    publish_events: bool = Field(True, description="Publish model_registered and alias_set to NATS.")
