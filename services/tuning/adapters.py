"""The tuning service's NATS side: the trial-ticket queue on JetStream (the domain's
`Tickets` port; `Datasets` and `StudyRuns` are the typed clients of
services/common/clients.py, `Events` the EventBus), and the loops that drive the
domain: a finished trial tops its study up, and a reconciler catches what events miss."""

from __future__ import annotations

import asyncio
import contextlib

from kubetune.tuning.v1 import tuning_pb2 as pb
from services.common import subjects
from services.common.events import EventBus
from services.tuning.servicer import study_id_of
from services.tuning.studies import StudyManager

RECONCILE_EVERY_S = 3.0
FINISHING = {"trial_completed", "trial_pruned", "trial_failed"}


class TicketQueue:
    """Trial tickets on the JetStream work-queue stream, one subject per study."""

    def __init__(self, bus: EventBus):
        self.bus = bus

    async def send(self, ticket: pb.TrialTicket) -> None:
        # The ticket id deduplicates a resend within JetStream's window.
        await self.bus.js.publish(subjects.ticket_subject(ticket.study_id), ticket.SerializeToString(),
                                  headers={"Nats-Msg-Id": ticket.ticket_id})

    async def purge(self, study_id: str) -> None:
        await self.bus.js.purge_stream(subjects.WORK_STREAM, subject=subjects.ticket_subject(study_id))


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
