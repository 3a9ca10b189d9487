"""RegistryStore over MLflow's model registry, through our own small REST client:
`mlflow` itself is imported only by the Predict path, when a model is first loaded."""

from __future__ import annotations

from kubetune_common.errors import NotFound
from services.common import mlflow_tags, packed_model
from services.common.mlflow_rest import MlflowError, MlflowRest, ModelVersion, RegisteredModel, mlflow_calls
from services.registry.store import ModelRecord, ModelSource, RegistryStore, RunInfo, VersionRecord

MLMODEL = packed_model.MLMODEL


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def _version(mv: ModelVersion) -> VersionRecord:
    return VersionRecord(
        name=mv.name, version=mv.version, run_id=mv.run_id, source=mv.source, description=mv.description,
        tags=dict(mv.tags), aliases=list(mv.aliases), created_by=mv.user_id, created_ms=mv.creation_timestamp,
    )


def _with_versions(model: ModelRecord, versions: list[VersionRecord]) -> ModelRecord:
    model.versions = versions
    # MLflow's version search leaves aliases out; the model knows them.
    for version in versions:
        version.aliases = sorted(set(version.aliases) | {a for a, v in model.aliases.items() if v == version.version})
    return model


@mlflow_calls(server="MLflow registry")
class MlflowRegistryStore(RegistryStore):
    def __init__(self, uri: str):
        self.uri = uri
        self.client = MlflowRest(uri)

    def close(self) -> None:
        self.client.close()

    def get_run(self, run_id: str) -> RunInfo:
        run = self.client.get_run(run_id)
        if run.lifecycle_stage != "active":
            raise NotFound(f"run {run_id} is deleted")
        return RunInfo(run_id, run.experiment_id, run.status, dict(run.tags), dict(run.metrics))

    def model_source(self, run: RunInfo, model_uri_hint: str = "") -> ModelSource | None:
        if model_uri_hint.startswith("models:/m-"):
            model_id = model_uri_hint.removeprefix("models:/")
            return ModelSource(model_uri_hint, model_id)
        # The worker's way (and MLflow 2's): the model's files as run artifacts.
        artifacts = self.client.list_artifacts(run.run_id, mlflow_tags.MODEL_ARTIFACT)
        names = {a.path.rsplit("/", 1)[-1] for a in artifacts}
        # A trial's one packed file becomes the full pyfunc beside it, first time only
        # (packed_model.py); mlflow and torch load here, as for Predict.
        if MLMODEL in names or (packed_model.PACKED_FILE in names and packed_model.package_run(self.uri, run.run_id)):
            artifact_uri = self.client.get_run(run.run_id).artifact_uri.rstrip("/")
            return ModelSource(f"{artifact_uri}/{mlflow_tags.MODEL_ARTIFACT}")
        # MLflow 3's way: a logged model whose source is the run.
        models = self.client.search_logged_models(
            [run.experiment_id],
            filter_string=f"source_run_id = '{run.run_id}' AND name = '{mlflow_tags.MODEL_ARTIFACT}'",
        )
        if models:
            newest = max(models, key=lambda m: m.creation_timestamp)
            return ModelSource(f"models:/{newest.model_id}", newest.model_id)
        return None

    def ensure_model(self, name: str, description: str = "", tags: dict[str, str] | None = None) -> None:
        try:
            self.client.create_registered_model(name, description=description or None, tags=tags)
        except MlflowError as exc:
            if not exc.already_exists:
                raise

    def create_version(self, name, source: ModelSource, run_id, tags, description) -> VersionRecord:
        mv = self.client.create_model_version(
            name, source.source, run_id=run_id, tags=tags, description=description or None,
            model_id=source.model_id,
        )
        return _version(mv)

    def versions(self, name=None, run_id=None, tag=None) -> list[VersionRecord]:
        clauses = []
        if name:
            clauses.append(f"name = {_quote(name)}")
        if run_id:
            clauses.append(f"run_id = {_quote(run_id)}")
        if tag:
            clauses.append(f"tags.`{tag[0]}` = {_quote(tag[1])}")
        return self._search_versions(" AND ".join(clauses) or None)

    def _search_versions(self, filter_string: str | None) -> list[VersionRecord]:
        out, token = [], None
        while True:
            page = self.client.search_model_versions(filter_string, max_results=10_000, page_token=token)
            out += [_version(mv) for mv in page]
            token = page.token
            if not token:
                break
        return sorted(out, key=lambda v: (v.name, -int(v.version)))

    def get_version(self, name: str, version: str) -> VersionRecord:
        return _version(self.client.get_model_version(name, version))

    def version_by_alias(self, name: str, alias: str) -> VersionRecord:
        try:
            return _version(self.client.get_model_version_by_alias(name, alias))
        except MlflowError as exc:
            # MLflow answers INVALID_PARAMETER_VALUE for an unknown alias.
            if "not found" in exc.message.lower():
                raise NotFound(exc.message) from exc
            raise

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, version)

    def delete_alias(self, name: str, alias: str) -> None:
        self.client.delete_registered_model_alias(name, alias)

    def set_tags(self, name: str, version: str | None, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            if version:
                self.client.set_model_version_tag(name, version, key, value)
            else:
                self.client.set_registered_model_tag(name, key, value)

    def delete_version(self, name: str, version: str) -> None:
        self.client.delete_model_version(name, version)

    def list_models(self, name_contains: str = "") -> list[ModelRecord]:
        filter_string = f"name ILIKE {_quote('%' + name_contains + '%')}" if name_contains else None
        out, token = [], None
        while True:
            page = self.client.search_registered_models(filter_string, max_results=1000, page_token=token)
            out += [self._model(m) for m in page]
            token = page.token
            if not token:
                break
        # One version search for every model listed, not one per model.
        by_name: dict[str, list[VersionRecord]] = {}
        for version in self._search_versions(filter_string):
            by_name.setdefault(version.name, []).append(version)
        for model in out:
            _with_versions(model, by_name.get(model.name, []))
        return sorted(out, key=lambda m: m.name)

    def get_model(self, name: str) -> ModelRecord:
        return _with_versions(self._model(self.client.get_registered_model(name)), self.versions(name=name))

    @staticmethod
    def _model(m: RegisteredModel) -> ModelRecord:
        return ModelRecord(
            name=m.name, description=m.description, tags=dict(m.tags), aliases=dict(m.aliases),
            created_ms=m.creation_timestamp, updated_ms=m.last_updated_timestamp,
        )
