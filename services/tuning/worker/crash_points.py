"""TEST HOOK, off by default: makes the worker process die (os._exit, as SIGKILL would)
at named steps of a ticket, so fault-injection tests can kill it at each instant of a
trial's life. Set KUBETUNE_WORKER_CRASH_AT to a comma-separated list of steps and
KUBETUNE_WORKER_CRASH_FLAGS to a folder: each step crashes one worker once (a flag file
per step, created atomically, remembers it across restarts and workers)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

STEPS = ("after_ask", "after_run_created", "mid_epoch", "after_model_logged", "after_end_published", "after_tell")


class CrashPoints:
    def __init__(self, steps: str = "", flags_dir: str = ""):
        self.steps = {s.strip() for s in steps.split(",") if s.strip()}
        unknown = self.steps - set(STEPS)
        if unknown:
            raise ValueError(f"KUBETUNE_WORKER_CRASH_AT: unknown steps {sorted(unknown)}; known: {', '.join(STEPS)}")
        if self.steps and not flags_dir:
            raise ValueError("KUBETUNE_WORKER_CRASH_AT needs KUBETUNE_WORKER_CRASH_FLAGS (a folder)")
        self.flags = Path(flags_dir) if flags_dir else None

    def __call__(self, step: str) -> None:
        if step not in self.steps:
            return
        self.flags.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(self.flags / step, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return  # this step already crashed a worker
        log.warning("test hook: crashing at %s", step)
        logging.shutdown()
        os._exit(17)
