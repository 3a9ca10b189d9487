"""Typed settings. Each part subclasses PartSettings with its own env prefix, given as
a class keyword (`class Settings(PartSettings, env_prefix="KUBETUNE_DATA_")`): the
rest of the settings boilerplate is written here once. What every part shares is read
from KUBETUNE_* without a part prefix, so one ConfigMap entry serves all parts."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Local defaults stay clear of a standard NATS (4222) or MLflow (5000) beside us.
DEFAULT_NATS_URL = "nats://127.0.0.1:4322"
DEFAULT_MLFLOW_URI = "http://127.0.0.1:5050"

PORTS = {
    "gateway": 50051,
    "data": 50061,
    "tuning": 50062,
    "tracking": 50063,
    "registry": 50064,
    "worker": 50070,
    "ui": 8080,
    "nats": 4322,
    "mlflow": 5050,
    "metrics": 9464,
}


def shared(name: str, default, description: str):
    """A setting every part reads from `KUBETUNE_<NAME>`, whatever its own prefix."""
    env = "KUBETUNE_" + name.upper()
    return Field(default, validation_alias=AliasChoices(env), description=description)


class PartSettings(BaseSettings):
    """What every kubetune process reads. Subclasses name their `env_prefix` as a class keyword."""

    model_config = SettingsConfigDict(env_prefix="KUBETUNE_", extra="ignore", populate_by_name=True)

    home: Path = shared("home", Path(".kubetune"), "Data home: catalogs, caches, local stores.")
    nats_url: str = shared("nats_url", DEFAULT_NATS_URL, "NATS server with JetStream.")
    log_level: str = shared("log_level", "INFO", "Python log level.")
    host: str = Field("127.0.0.1", description="Interface the gRPC server binds.")
    port: int = Field(0, description="gRPC port of this part.")
    grace_s: float = Field(5.0, description="Seconds in-flight calls get on shutdown.")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def address_of(part: str):
    """Where another part listens, read from `KUBETUNE_<PART>_ADDRESS` by every caller."""
    return shared(f"{part}_address", f"127.0.0.1:{PORTS[part]}", f"gRPC address of the {part} service.")


def mlflow_uri():
    return shared("mlflow_uri", DEFAULT_MLFLOW_URI, "MLflow tracking server URI.")
