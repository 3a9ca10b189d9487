"""`python -m ui`: the web UI."""

import os
import sys

# Python objects from the system allocator, not pymalloc: see ui/memory.py. Read once, as
# the interpreter starts, so the process starts itself again with it (same PID) unless
# the environment already chose an allocator.
if "PYTHONMALLOC" not in os.environ:
    os.environ["PYTHONMALLOC"] = "malloc"
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])

from kubetune_common.logs import setup_logging  # noqa: E402 - after the allocator is settled
from ui.app import run  # noqa: E402
from ui.config import Settings  # noqa: E402

# A UI process started from a test (the platform fixture) is a real server: NiceGUI
# takes PYTEST_CURRENT_TEST, inherited from the test, as its own screen-test mode.
os.environ.pop("PYTEST_CURRENT_TEST", None)

settings = Settings()
setup_logging("ui", settings.log_level)
run(settings)
