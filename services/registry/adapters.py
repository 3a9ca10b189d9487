"""The registry service's NATS side: its changes announced through the outbox relay.
The domain tells `on_change` which model changed; the outbox (outbox.py) derives what
that model owes from MLflow's state, and the relay sends it."""

from __future__ import annotations

from services.common.outbox import Relay
from services.registry.outbox import RegistryOutbox


class Announcer:
    """A Registry.on_change callback: marks the model for the outbox, wakes the relay."""

    def __init__(self, outbox: RegistryOutbox, relay: Relay):
        self.outbox = outbox
        self.relay = relay

    def __call__(self, name: str) -> None:
        self.outbox.touch(name)
        self.relay.wake()
