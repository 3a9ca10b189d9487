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
    reconnect_s: float = Field(20.0, gt=0, description=(
        "How long a page whose connection dropped is kept for its browser to come back, in "
        "seconds; past it the browser reloads the page, and a closed page's memory is freed only "
        "then. The connection's heartbeat follows it (NiceGUI: a ping every 0.8x, to be answered "
        "within 0.4x, at least 4 s and 2 s): at NiceGUI's 3 s, a browser or UI busy for 2 s on a "
        "loaded machine lost its page (tests/reliability/test_soak.py)."))
