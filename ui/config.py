"""The UI's settings (KUBETUNE_UI_*)."""

from __future__ import annotations

from pydantic import Field

from kubetune_common.config import DEFAULT_MLFLOW_URI, PORTS, PartSettings, address_of


class Settings(PartSettings, env_prefix="KUBETUNE_UI_"):
    """The web UI. Env prefix KUBETUNE_UI_."""

    port: int = PORTS["ui"]
    gateway_address: str = address_of("gateway")
    session_secret: str = Field("", description="Signs the session cookies (from a Kubernetes Secret); empty "
                                "and no file: a random key per process.")
    session_secret_file: str = Field("", description="File holding the session secret (a mounted Secret).")
    session_s: int = Field(8 * 3600, gt=0, description="How long a sign-in lasts, in seconds.")
    secure_cookie: bool = Field(False, description="Send the session cookie over HTTPS only (behind TLS).")
    mlflow_ui_url: str = Field(DEFAULT_MLFLOW_URI, description="MLflow UI link shown to users.")
