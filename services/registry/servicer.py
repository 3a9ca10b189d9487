"""RegistryService over gRPC: protobuf in, the Registry and Predictor domain, protobuf out."""

from __future__ import annotations

from kubetune.registry.v1 import registry_pb2 as pb
from kubetune.registry.v1 import registry_pb2_grpc
from kubetune_common.errors import servicer_errors
from services.common.timestamps import timestamp
from services.registry.predictor import Predictor
from services.registry.registry import Registry, Version
from services.registry.store import ModelRecord


def version_message(v: Version) -> pb.ModelVersion:
    r = v.record
    return pb.ModelVersion(
        name=r.name, version=r.version, run_id=r.run_id, study_id=v.study_id, trial=v.trial,
        dataset_version=v.dataset_version, metrics=v.metrics, aliases=r.aliases, tags=v.tags,
        description=r.description, created_by=r.created_by, created_at=timestamp(r.created_ms), source=r.source,
        task_kind=v.task_kind, feature_names=v.feature_names,
        inputs=[pb.InputColumn(name=c.name, kind=c.kind) for c in v.inputs],
    )


def model_message(m: ModelRecord, versions: list[Version] = ()) -> pb.RegisteredModel:
    return pb.RegisteredModel(
        name=m.name, description=m.description, tags=m.tags, aliases=m.aliases,
        versions=[version_message(v) for v in versions],
        created_at=timestamp(m.created_ms), updated_at=timestamp(m.updated_ms),
    )


def _rows(request: pb.PredictRequest) -> list:
    return [list(r.text_values) if r.text_values and not r.values else list(r.values) for r in request.rows]


def _check_rows(request: pb.PredictRequest) -> None:
    from kubetune_common.errors import InvalidArgument

    for i, r in enumerate(request.rows):
        if r.values and r.text_values:
            raise InvalidArgument(f"row {i} has both values and text_values; send one of them")


@servicer_errors
class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self, registry: Registry, predictor: Predictor):
        self.registry = registry
        self.predictor = predictor

    async def RegisterModel(self, request, context):
        v = await self.registry.register(request.run_id, request.name, request.description,
                                         dict(request.tags), request.alias)
        return pb.RegisterModelResponse(version=version_message(v))

    async def ListModels(self, request, context):
        models = await self.registry.list_models(request.name_contains)
        return pb.ListModelsResponse(models=[model_message(m, versions) for m, versions in models])

    async def GetModel(self, request, context):
        model, versions = await self.registry.get_model(request.name)
        return pb.GetModelResponse(model=model_message(model, versions))

    async def SetAlias(self, request, context):
        v = await self.registry.set_alias(request.name, request.alias, request.version)
        return pb.SetAliasResponse(version=version_message(v))

    async def DeleteAlias(self, request, context):
        await self.registry.delete_alias(request.name, request.alias)
        return pb.DeleteAliasResponse()

    async def SetModelTags(self, request, context):
        await self.registry.set_tags(request.name, request.version, dict(request.tags))
        return pb.SetModelTagsResponse()

    async def DeleteModelVersion(self, request, context):
        await self.registry.delete_version(request.name, request.version)
        return pb.DeleteModelVersionResponse()

    async def GetLineage(self, request, context):
        which = request.WhichOneof("from") or ""
        versions = await self.registry.lineage(**({which: getattr(request, which)} if which else {}))
        return pb.GetLineageResponse(versions=[version_message(v) for v in versions])

    async def _predict(self, request) -> pb.PredictResponse:
        _check_rows(request)
        name, version, predictions, ignored = await self.predictor.predict(request.model, _rows(request),
                                                                           list(request.columns))
        return pb.PredictResponse(model=name, version=version, ignored_columns=ignored, predictions=[
            pb.Prediction(value=p.value, label=p.label, probabilities=p.probabilities) for p in predictions
        ])

    async def Predict(self, request, context):
        return await self._predict(request)

    async def PredictStream(self, request_iterator, context):
        async for request in request_iterator:
            yield await self._predict(request)
