"""DataService over gRPC: protobuf in, the catalog, protobuf out. Errors are mapped once,
by `servicer_errors`."""

from __future__ import annotations

import math

from kubetune.data.v1 import data_pb2, data_pb2_grpc
from kubetune_common.errors import InvalidArgument, servicer_errors
from services.data.catalog import Catalog
from services.data.ingest import label_of
from services.data.records import DatasetVersion, IngestOptions, Kind, Layout, MissingPolicy, Role, TaskKind

TASK_KINDS = {
    data_pb2.TASK_KIND_UNSPECIFIED: TaskKind.AUTO,
    data_pb2.TASK_KIND_REGRESSION: TaskKind.REGRESSION,
    data_pb2.TASK_KIND_CLASSIFICATION: TaskKind.CLASSIFICATION,
}
POLICIES = {
    data_pb2.MISSING_POLICY_UNSPECIFIED: MissingPolicy.IMPUTE,
    data_pb2.MISSING_POLICY_IMPUTE: MissingPolicy.IMPUTE,
    data_pb2.MISSING_POLICY_DROP_ROWS: MissingPolicy.DROP_ROWS,
    data_pb2.MISSING_POLICY_REFUSE: MissingPolicy.REFUSE,
}
POLICY_TO_PROTO = {policy: code for code, policy in POLICIES.items() if code != data_pb2.MISSING_POLICY_UNSPECIFIED}
KINDS = {
    Kind.NONE: data_pb2.COLUMN_KIND_UNSPECIFIED,
    Kind.NUMERIC: data_pb2.COLUMN_KIND_NUMERIC,
    Kind.CATEGORICAL: data_pb2.COLUMN_KIND_CATEGORICAL,
    Kind.BOOLEAN: data_pb2.COLUMN_KIND_BOOLEAN,
}
LAYOUTS = {Layout.XY_FOLDER: data_pb2.LAYOUT_XY_FOLDER, Layout.SINGLE_TABLE: data_pb2.LAYOUT_SINGLE_TABLE}
ROLES = {
    Role.FEATURE: data_pb2.COLUMN_ROLE_FEATURE,
    Role.TARGET: data_pb2.COLUMN_ROLE_TARGET,
    Role.EXCLUDED: data_pb2.COLUMN_ROLE_EXCLUDED,
    Role.INDEX: data_pb2.COLUMN_ROLE_INDEX,
}


def options_from_proto(options: data_pb2.IngestOptions) -> IngestOptions:
    if options.task_kind not in TASK_KINDS:
        raise InvalidArgument(f"unknown task_kind {options.task_kind}", field="options.task_kind")
    if options.missing_policy not in POLICIES:
        raise InvalidArgument(f"unknown missing_policy {options.missing_policy}", field="options.missing_policy")
    return IngestOptions(
        target_column=options.target_column,
        exclude_columns=tuple(options.exclude_columns),
        missing_policy=POLICIES[options.missing_policy],
        task_kind=TASK_KINDS[options.task_kind],
        split_seed=options.split_seed,
        categorical_columns=tuple(options.categorical_columns),
        numeric_columns=tuple(options.numeric_columns),
    )


def column_to_proto(c) -> data_pb2.Column:
    return data_pb2.Column(name=c.name, dtype=c.dtype, role=ROLES[c.role], kind=KINDS[c.kind], note=c.note,
                           missing=c.missing, distinct=c.distinct)


def version_to_proto(v: DatasetVersion) -> data_pb2.DatasetVersion:
    message = data_pb2.DatasetVersion(
        name=v.name,
        version=v.version,
        content_sha256=v.content_sha256,
        source_uri=v.source_uri,
        source_etags=v.source_etags,
        layout=LAYOUTS[v.layout],
        columns=[column_to_proto(c) for c in v.columns],
        target=v.target,
        row_count=v.row_count,
        target_stats=data_pb2.TargetStats(
            min=v.target_stats.min, max=v.target_stats.max, mean=v.target_stats.mean,
            std=v.target_stats.std, distinct=v.target_stats.distinct,
        ),
        task_kind={TaskKind.REGRESSION: data_pb2.TASK_KIND_REGRESSION,
                   TaskKind.CLASSIFICATION: data_pb2.TASK_KIND_CLASSIFICATION}[v.task_kind],
        class_labels=v.class_labels,
        split_seed=v.split_seed,
        location=v.location,
        size_bytes=v.size_bytes,
        missing_policy=POLICY_TO_PROTO[v.missing_policy],
        rows_dropped=v.rows_dropped,
        rows_missing_target=v.rows_missing_target,
    )
    message.created_at.FromDatetime(v.created_at)
    return message


def _row(cells: list) -> data_pb2.Row:
    return data_pb2.Row(
        values=[float(v) if isinstance(v, (int, float)) else math.nan for v in cells],
        cells=["" if v is None else label_of(v) if isinstance(v, float) else str(v) for v in cells],
    )


@servicer_errors
class DataServicer(data_pb2_grpc.DataServiceServicer):
    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    async def RegisterDataset(self, request, context):
        version, created = await self.catalog.register(
            request.name, request.uri, options_from_proto(request.options)
        )
        return data_pb2.RegisterDatasetResponse(version=version_to_proto(version), created=created)

    async def UploadDataset(self, request_iterator, context):
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("an upload starts with a header message", field="header")
        header = first.header

        async def chunks():
            async for message in request_iterator:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidArgument("only chunks may follow the header", field="chunk")
                yield message.chunk

        version, created = await self.catalog.upload(
            header.name, header.filename, options_from_proto(header.options), chunks()
        )
        return data_pb2.UploadDatasetResponse(version=version_to_proto(version), created=created)

    async def ListDatasets(self, request, context):
        datasets = await self.catalog.list(request.name_prefix)
        return data_pb2.ListDatasetsResponse(
            datasets=[
                data_pb2.Dataset(name=name, versions=[version_to_proto(v) for v in versions])
                for name, versions in datasets
            ]
        )

    async def GetDataset(self, request, context):
        return data_pb2.GetDatasetResponse(version=version_to_proto(await self.catalog.get(request.ref)))

    async def PreviewDataset(self, request, context):
        preview = await self.catalog.preview(request.ref, request.rows, request.bins)
        return data_pb2.PreviewDatasetResponse(
            version=version_to_proto(preview.version),
            columns=preview.columns,
            rows=[_row(row) for row in preview.rows],
            stats=[
                data_pb2.ColumnStats(
                    name=s.name, min=s.min, max=s.max, mean=s.mean, std=s.std, missing=s.missing,
                    histogram_counts=h.counts, histogram_edges=h.edges, categories=h.labels,
                )
                for s, h in zip(preview.stats, preview.histograms)
            ],
        )

    async def DeleteDataset(self, request, context):
        await self.catalog.delete(request.ref)
        return data_pb2.DeleteDatasetResponse()


