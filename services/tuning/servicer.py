"""TuningService over gRPC: protobuf in, StudyManager (plain records), protobuf out;
messages.py translates."""

from __future__ import annotations

from kubetune.tuning.v1 import tuning_pb2 as pb
from kubetune.tuning.v1 import tuning_pb2_grpc
from kubetune_common.errors import InvalidArgument, servicer_errors
from services.common.watch import EventHub
from services.tuning import messages
from services.tuning.studies import StudyManager
from services.tuning.summary import SummaryCache


def study_id_of(event) -> str:
    kind = event.WhichOneof("payload")
    return getattr(getattr(event, kind), "study_id", "") if kind else ""


def _need_id(study_id: str) -> str:
    if not study_id:
        raise InvalidArgument("study_id: name the study", field="study_id")
    return study_id


@servicer_errors
class TuningServicer(tuning_pb2_grpc.TuningServiceServicer):
    def __init__(self, studies: StudyManager, hub: EventHub, summaries: SummaryCache):
        self.studies = studies
        self.hub = hub
        self.summaries = summaries

    async def CreateStudy(self, request, context):
        study = await self.studies.create(messages.spec_from_pb(request.spec), validate_only=request.validate_only)
        return pb.CreateStudyResponse(study=messages.study_to_pb(study))

    async def GetStudy(self, request, context):
        return pb.GetStudyResponse(study=messages.study_to_pb(await self.studies.get(_need_id(request.study_id))))

    async def ListStudies(self, request, context):
        studies = await self.studies.list([messages.study_state_name(s) for s in request.states], request.dataset)
        return pb.ListStudiesResponse(studies=[messages.study_to_pb(s) for s in studies])

    async def ListTrials(self, request, context):
        trials = await self.studies.trials(_need_id(request.study_id),
                                           [messages.trial_state_name(s) for s in request.states], request.with_curves)
        return pb.ListTrialsResponse(trials=[messages.trial_to_pb(t) for t in trials])

    async def WatchStudy(self, request, context):
        study_id = _need_id(request.study_id)
        await self.studies.get(study_id)  # NOT_FOUND before the stream starts
        watch = await self.hub.open(lambda event: study_id_of(event) == study_id)
        try:
            snapshot = await self.studies.snapshot(study_id)
            yield pb.WatchStudyResponse(snapshot=messages.snapshot_to_pb(snapshot))
            if snapshot.study.state == "COMPLETED":
                return  # nothing more will happen
            async for event in watch.events():
                yield pb.WatchStudyResponse(event=event)
                if event.WhichOneof("payload") == "study_completed":
                    return
        finally:
            watch.close()

    async def StopStudy(self, request, context):
        return pb.StopStudyResponse(study=messages.study_to_pb(await self.studies.stop(_need_id(request.study_id))))

    async def ResumeStudy(self, request, context):
        return pb.ResumeStudyResponse(study=messages.study_to_pb(await self.studies.resume(_need_id(request.study_id))))

    async def StudySummary(self, request, context):
        s = await self.summaries.get(_need_id(request.study_id))
        return pb.StudySummaryResponse(
            study_id=s.study_id, revision=s.revision,
            history=[pb.HistoryPoint(trial=h.trial, value=h.value, best_so_far=h.best_so_far, state=h.state)
                     for h in s.history],
            counts_by_state=s.counts_by_state,
            importances=[pb.ParamImportance(param=k, importance=v) for k, v in s.importances],
            parallel_coordinates=[pb.ParallelCoordinate(trial=n, params=p, value=v)
                                  for n, p, v in s.parallel_coordinates],
        )
