"""TrackingService over gRPC: protobuf in, the Tracking domain, protobuf out."""

from __future__ import annotations

from kubetune.tracking.v1 import tracking_pb2 as pb
from kubetune.tracking.v1 import tracking_pb2_grpc
from kubetune_common.errors import servicer_errors
from services.common import mlflow_tags
from services.common.timestamps import ms_of, timestamp
from services.tracking.records import DatasetRecord, RunFilter, RunRecord
from services.tracking.tracking import Tracking

_KIND = {pb.FIELD_KIND_METRIC: "metric", pb.FIELD_KIND_PARAM: "param", pb.FIELD_KIND_TAG: "tag",
         pb.FIELD_KIND_ATTRIBUTE: "attribute", pb.FIELD_KIND_UNSPECIFIED: ""}
_OP = {pb.FILTER_OP_UNSPECIFIED: "=", pb.FILTER_OP_EQ: "=", pb.FILTER_OP_NE: "!=", pb.FILTER_OP_LT: "<",
       pb.FILTER_OP_LE: "<=", pb.FILTER_OP_GT: ">", pb.FILTER_OP_GE: ">="}
_STATUS = {"RUNNING": pb.RUN_STATUS_RUNNING, "SCHEDULED": pb.RUN_STATUS_RUNNING, "FINISHED": pb.RUN_STATUS_FINISHED,
           "FAILED": pb.RUN_STATUS_FAILED, "KILLED": pb.RUN_STATUS_KILLED}


def dataset_message(d: DatasetRecord | None) -> pb.DatasetInput | None:
    if d is None:
        return None
    return pb.DatasetInput(name=d.name, version=d.version, content_sha256=d.content_sha256,
                           source_uri=d.source_uri, schema_json=d.schema_json, row_count=d.row_count)


def run_message(r: RunRecord) -> pb.Run:
    trial = r.tags.get(mlflow_tags.TAG_TRIAL, "")
    return pb.Run(
        run_id=r.run_id, experiment_id=r.experiment_id, name=r.name,
        status=_STATUS.get(r.status, pb.RUN_STATUS_UNSPECIFIED),
        started_at=timestamp(r.start_ms), ended_at=timestamp(r.end_ms),
        params=r.params, metrics=r.metrics, tags=r.tags,
        parent_run_id=r.tags.get(mlflow_tags.MLFLOW_PARENT, ""), study_id=r.tags.get(mlflow_tags.TAG_STUDY, ""),
        trial=int(trial) if trial.lstrip("-").isdigit() else 0,
        dataset=dataset_message(r.dataset), model_uri=r.model_uri,
    )


@servicer_errors
class TrackingServicer(tracking_pb2_grpc.TrackingServiceServicer):
    def __init__(self, tracking: Tracking):
        self.tracking = tracking

    async def CreateStudyRun(self, request, context):
        experiment_id, run_id = await self.tracking.create_study_run(
            request.study_id, request.dataset_name, request.dataset_version,
            dict(request.params), dict(request.tags),
        )
        return pb.CreateStudyRunResponse(experiment_id=experiment_id, run_id=run_id)

    async def CreateTrialRun(self, request, context):
        d = request.dataset
        dataset = None
        if request.HasField("dataset") and d.name:
            dataset = DatasetRecord(d.name, d.version, d.content_sha256, d.source_uri, d.schema_json, d.row_count)
        run_id = await self.tracking.create_trial_run(
            request.experiment_id, request.parent_run_id, request.study_id, request.trial,
            dict(request.params), dict(request.tags), dataset,
        )
        return pb.CreateTrialRunResponse(run_id=run_id)

    async def ListExperiments(self, request, context):
        experiments = await self.tracking.list_experiments(
            request.name_contains, ms_of(request.since, request.HasField("since"), "since"),
            ms_of(request.until, request.HasField("until"), "until"),
        )
        return pb.ListExperimentsResponse(experiments=[
            pb.Experiment(id=e.id, name=e.name, created_at=timestamp(e.created_ms),
                          updated_at=timestamp(e.updated_ms), run_count=e.run_count)
            for e in experiments
        ])

    async def ListRuns(self, request, context):
        page, token = await self.tracking.list_runs(
            experiment_ids=list(request.experiment_ids), study_id=request.study_id,
            filters=[RunFilter(_KIND.get(f.kind, "?"), f.key, _OP.get(f.op, "?"), f.value) for f in request.filters],
            sort_kind=_KIND.get(request.sort_kind, "?"), sort_key=request.sort_key, descending=request.descending,
            page_size=request.page_size, page_token=request.page_token, columns=list(request.columns),
            trials_only=request.trials_only, since_ms=ms_of(request.since, request.HasField("since"), "since"),
            until_ms=ms_of(request.until, request.HasField("until"), "until"), skip=request.skip,
        )
        return pb.ListRunsResponse(runs=[run_message(r) for r in page.runs], next_page_token=token,
                                   total=page.total)

    async def GetRun(self, request, context):
        return pb.GetRunResponse(run=run_message(await self.tracking.get_run(request.run_id)))

    async def GetMetricHistories(self, request, context):
        series = await self.tracking.metric_histories(
            list(request.run_ids), list(request.keys), request.max_points
        )
        return pb.GetMetricHistoriesResponse(histories=[
            pb.MetricHistory(
                run_id=run_id, key=key, total_points=total,
                points=[pb.MetricPoint(step=p.step, value=p.value, timestamp_ms=p.timestamp_ms) for p in points],
            )
            for run_id, key, points, total in series
        ])

    async def CompareRuns(self, request, context):
        runs, differing, same, metrics = await self.tracking.compare_runs(list(request.run_ids))
        return pb.CompareRunsResponse(
            runs=[run_message(r) for r in runs],
            differing_params={k: pb.ValuesByRun(values=v) for k, v in differing.items()},
            same_params={k: pb.ValuesByRun(values=v) for k, v in same.items()},
            metrics={k: pb.MetricsByRun(values=v) for k, v in metrics.items()},
        )
