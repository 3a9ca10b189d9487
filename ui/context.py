"""What every page shares: the settings and the one gateway client."""

from __future__ import annotations

from ui.config import Settings
from ui.gateway_client import GatewayClient


class Context:
    settings: Settings
    gateway: GatewayClient


ctx = Context()
