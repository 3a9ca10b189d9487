"""The registry store: one abstract base and its MLflow implementation (MLflow's
model registry over REST). Methods block; the domain calls them in threads."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

from kubetune_common.errors import KubetuneError


@dataclass
class RunInfo:
    run_id: str
    experiment_id: str
    status: str
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class VersionRecord:
    name: str
    version: str
    run_id: str = ""
    source: str = ""
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    created_by: str = ""
    created_ms: int = 0


@dataclass
class ModelRecord:
    name: str
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    versions: list[VersionRecord] = field(default_factory=list)  # newest first
    created_ms: int = 0
    updated_ms: int = 0


@dataclass(frozen=True)
class ModelSource:
    """Where a run's model lives, as a model version's source."""

    source: str
    model_id: str | None = None  # an MLflow 3 logged model


class RegistryStore(abc.ABC):
    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunInfo:
        """NotFound for an unknown or deleted run."""

    @abc.abstractmethod
    def model_source(self, run: RunInfo, model_uri_hint: str = "") -> ModelSource | None:
        """The run's logged model (`runs:/<id>/model` as artifacts, or an MLflow 3
        logged model), or None when the run has none. A trial's packed model file
        (packed_model.py) is made the full pyfunc first."""

    @abc.abstractmethod
    def ensure_model(self, name: str, description: str = "", tags: dict[str, str] | None = None) -> None:
        """Creates the registered model (with `tags`, in the same call) when it does not exist yet."""

    @abc.abstractmethod
    def create_version(self, name: str, source: ModelSource, run_id: str, tags: dict[str, str],
                       description: str) -> VersionRecord: ...

    @abc.abstractmethod
    def versions(self, name: str | None = None, run_id: str | None = None,
                 tag: tuple[str, str] | None = None) -> list[VersionRecord]:
        """Versions matching every given criterion, newest first."""

    @abc.abstractmethod
    def get_version(self, name: str, version: str) -> VersionRecord: ...

    @abc.abstractmethod
    def version_by_alias(self, name: str, alias: str) -> VersionRecord: ...

    @abc.abstractmethod
    def set_alias(self, name: str, alias: str, version: str) -> None: ...

    @abc.abstractmethod
    def delete_alias(self, name: str, alias: str) -> None: ...

    @abc.abstractmethod
    def set_tags(self, name: str, version: str | None, tags: dict[str, str]) -> None: ...

    @abc.abstractmethod
    def delete_version(self, name: str, version: str) -> None: ...

    @abc.abstractmethod
    def list_models(self, name_contains: str = "") -> list[ModelRecord]:
        """Registered models with every version (newest first), by name."""

    @abc.abstractmethod
    def get_model(self, name: str) -> ModelRecord:
        """A registered model with every version, newest first."""


__all__ = ["KubetuneError", "ModelRecord", "ModelSource", "RegistryStore", "RunInfo", "VersionRecord"]
