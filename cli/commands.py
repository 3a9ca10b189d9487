"""Client commands that talk to the gateway (filled in by the CLI issue)."""

from __future__ import annotations


def add_client_commands(sub) -> None:
    """Adds the gateway client commands; none yet beyond `up` and `status`."""
