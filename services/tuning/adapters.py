"""The tuning service's ports, implemented over NATS and gRPC: the trial-ticket queue
on JetStream; the dataset lookup and the study's MLflow run through the typed clients
of services/common/clients.py."""

from __future__ import annotations

from kubetune.tuning.v1 import tuning_pb2 as pb
from services.common import subjects
from services.common.events import EventBus


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
