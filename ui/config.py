from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.config import DEFAULT_MLFLOW_URI, PORTS, PartSettings, address_of


class Settings(PartSettings):
    """The web UI. Env prefix KUBETUNE_UI_."""

    model_config = SettingsConfigDict(env_prefix="KUBETUNE_UI_", extra="ignore", populate_by_name=True)

    port: int = PORTS["ui"]
    gateway_address: str = address_of("gateway")
    gateway_token: str = Field("", description="Bearer token the UI sends to the gateway.")
    mlflow_ui_url: str = Field(DEFAULT_MLFLOW_URI, description="MLflow UI link shown to users.")
