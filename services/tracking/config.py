from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.config import PORTS, PartSettings, address_of, mlflow_uri


class Settings(PartSettings):
    """The tracking service. Env prefix KUBETUNE_TRACKING_."""

    model_config = SettingsConfigDict(env_prefix="KUBETUNE_TRACKING_", extra="ignore", populate_by_name=True)

    port: int = PORTS["tracking"]
    mlflow_uri: str = mlflow_uri()
    tuning_address: str = address_of("tuning")
    batch_size: int = Field(500, description="Most events written to MLflow in one batch.")
    batch_wait_s: float = Field(0.2, description="Longest an event waits for its batch to fill.")
