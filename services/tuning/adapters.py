"""The implementations of the tuning domain's ports: the trial-ticket queue on
JetStream (`Tickets`), the studies' facts as kubetune.tuning.* events (`Notifier`),
the dataset lookup over the data service's typed client (`Datasets`; `StudyRuns` is
tracking's client itself), and the loops that drive the domain: a finished trial
tops its study up, and a reconciler catches what events miss. Protobuf stops here."""

from __future__ import annotations

import asyncio
import contextlib

from optuna.trial import FrozenTrial

from kubetune.data.v1 import data_pb2
from kubetune.events.v1 import events_pb2 as ev
from kubetune_common import subjects
from services.common.clients import DataClient
from services.common.events import EventBus
from services.common.outbox import OutboxEvent, Relay
from services.tuning import messages, space, store
from services.tuning.records import DatasetInfo, TrialEnd, TrialTicket
from services.tuning.servicer import study_id_of
from services.tuning.studies import StudyManager

RECONCILE_EVERY_S = 3.0
FINISHING = frozenset(store.END_STATES)  # the kinds of event that end a trial


class TicketQueue:
    """Trial tickets on the JetStream work-queue stream, one subject per study."""

    def __init__(self, bus: EventBus):
        self.bus = bus

    async def send(self, ticket: TrialTicket) -> None:
        # The ticket id deduplicates a resend within JetStream's window.
        await self.bus.js.publish(subjects.ticket_subject(ticket.study_id),
                                  messages.ticket_to_pb(ticket).SerializeToString(),
                                  headers={"Nats-Msg-Id": ticket.ticket_id})

    async def purge(self, study_id: str) -> None:
        await self.bus.js.purge_stream(subjects.WORK_STREAM, subject=subjects.ticket_subject(study_id))


class BusNotifier:
    """The studies' facts as kubetune.tuning.* events: a lifecycle event stored with its
    change and sent by the outbox relay; a reclaimed trial's end, published at once."""

    def __init__(self, bus: EventBus, relay: Relay):
        self.bus = bus
        self.relay = relay

    def created(self, study_id: str, dataset_version: str, n_trials: int) -> OutboxEvent:
        return OutboxEvent.of(f"{study_id}.created", study_created=ev.StudyCreated(
            study_id=study_id, dataset_version=dataset_version, n_trials=n_trials))

    def stopped(self, study_id: str) -> OutboxEvent:
        return OutboxEvent.of(study_stopped=ev.StudyStopped(study_id=study_id))

    def resumed(self, study_id: str) -> OutboxEvent:
        return OutboxEvent.of(study_resumed=ev.StudyResumed(study_id=study_id))

    def completed(self, study_id: str, mlflow_run_id: str, counts: dict[str, int],
                  best: FrozenTrial | None) -> OutboxEvent:
        event = ev.StudyCompleted(study_id=study_id, mlflow_run_id=mlflow_run_id, complete=counts["complete"],
                                  pruned=counts["pruned"], fail=counts["fail"], best_trial=-1)
        if best is not None:
            event.best_trial = best.number
            event.best_values.extend(best.values)
            event.best_params.update({k: space.format_value(v) for k, v in best.params.items()})
        return OutboxEvent.of(study_completed=event)

    def stored(self) -> None:
        self.relay.wake()

    async def trial_ended(self, end: TrialEnd) -> None:
        await self.bus.publish(event_id=store.end_event_id(end.study_id, end.trial),
                               **{end.kind: messages.end_to_pb(end)})


class DataCatalog:
    """The `Datasets` port over the data service's client: what a study needs of a version."""

    def __init__(self, client: DataClient):
        self.client = client

    async def get_dataset(self, ref: str) -> DatasetInfo:
        version = await self.client.get_dataset(ref)
        classification = version.task_kind == data_pb2.TASK_KIND_CLASSIFICATION
        return DatasetInfo(version.name, version.version, "classification" if classification else "regression")


async def top_up_on_trial_end(studies: StudyManager, event) -> None:
    if event.WhichOneof("payload") in FINISHING:
        await studies.top_up(study_id_of(event))


async def reconcile_forever(studies: StudyManager) -> None:
    # Catches what events alone miss: a restart, a lost ticket, a time budget running out.
    await studies.reconcile(resend=True)
    while True:
        await asyncio.sleep(RECONCILE_EVERY_S)
        await studies.reconcile()


async def stop_task(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
