import os

from kubetune_common.logs import setup_logging
from ui.app import run
from ui.config import Settings

# A UI process started from a test (the platform fixture) is a real server: NiceGUI
# takes PYTEST_CURRENT_TEST, inherited from the test, as its own screen-test mode.
os.environ.pop("PYTEST_CURRENT_TEST", None)

settings = Settings()
setup_logging("ui", settings.log_level)
run(settings)
