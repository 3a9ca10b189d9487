"""The shape of every part's __main__: settings -> logging -> start -> serve until signalled."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

from kubetune_common.config import PartSettings
from kubetune_common.logs import setup_logging
from services.common.server import Service, run


def main(part: str, settings_cls: type[PartSettings], start: Callable[[PartSettings], Awaitable[Service]]) -> None:
    settings = settings_cls()
    setup_logging(part, settings.log_level)
    prefix = settings_cls.model_config.get("env_prefix", "KUBETUNE_")

    async def build():
        return (await start(settings)).server

    code = asyncio.run(run(part, settings.address, f"{prefix}PORT", build, settings.grace_s))
    sys.exit(code)
