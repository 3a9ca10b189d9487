"""What every page shares: the settings and the gateway client, which carries the
signed-in user's own token (see ui/session.py)."""

from __future__ import annotations

from ui.config import Settings
from ui.gateway_client import GatewayClient


class Context:
    settings: Settings
    base: GatewayClient  # the one channel, no token of its own

    @property
    def gateway(self) -> GatewayClient:
        """The gateway as the user of the page being served."""
        from ui import session

        return self.base.as_user(session.token())


ctx = Context()
