"""StudySource over the tuning service's gRPC API (GetStudy, ListTrials)."""

from __future__ import annotations

import grpc

from kubetune.tuning.v1 import tuning_pb2, tuning_pb2_grpc
from services.common.clients import channel
from services.common.errors import NotFound, Unavailable
from services.tracking.summary import ParamSpace, StudySource, StudyView, TrialView

DEADLINE_S = 10.0


def search_space(spec: tuning_pb2.StudySpec) -> tuple[ParamSpace, ...]:
    out = []
    for p in spec.search_space:
        domain = p.WhichOneof("domain")
        if domain == "float_range":
            r = p.float_range
            out.append(ParamSpace(p.name, "float", r.low, r.high, r.log, r.step))
        elif domain == "int_range":
            r = p.int_range
            out.append(ParamSpace(p.name, "int", r.low, r.high, r.log, r.step or 1))
        elif domain == "categorical":
            out.append(ParamSpace(p.name, "categorical", choices=tuple(p.categorical.choices)))
    return tuple(out)


def study_view(study: tuning_pb2.Study) -> StudyView:
    directions = tuple(
        "maximize" if o.direction == tuning_pb2.DIRECTION_MAXIMIZE else "minimize" for o in study.spec.objectives
    ) or ("minimize",)
    c = study.counts
    revision = ":".join(str(x) for x in (
        c.queued, c.running, c.complete, c.pruned, c.fail, study.state,
        ",".join(repr(v) for v in study.best_values), study.finished_at.seconds,
    ))
    return StudyView(study.id, directions, search_space(study.spec), revision,
                     running=study.state == tuning_pb2.STUDY_STATE_RUNNING)


def trial_view(t: tuning_pb2.Trial) -> TrialView:
    state = tuning_pb2.TrialState.Name(t.state).removeprefix("TRIAL_STATE_")
    return TrialView(t.number, state, dict(t.params), tuple(t.values), tuple(t.val_loss_curve))


class TuningStudySource(StudySource):
    def __init__(self, address: str):
        self._channel = channel(address)
        self._stub = tuning_pb2_grpc.TuningServiceStub(self._channel)

    async def _call(self, rpc, request):
        try:
            return await rpc(request, timeout=DEADLINE_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(exc.details() or "no such study") from exc
            raise Unavailable(f"tuning service: {exc.code().name} {exc.details()}") from exc

    async def get_study(self, study_id: str) -> StudyView:
        response = await self._call(self._stub.GetStudy, tuning_pb2.GetStudyRequest(study_id=study_id))
        return study_view(response.study)

    async def list_trials(self, study_id: str) -> list[TrialView]:
        response = await self._call(
            self._stub.ListTrials, tuning_pb2.ListTrialsRequest(study_id=study_id, with_curves=True)
        )
        return [trial_view(t) for t in response.trials]

    async def close(self) -> None:
        await self._channel.close()
