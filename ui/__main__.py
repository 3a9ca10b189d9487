from services.common.logs import setup_logging
from ui.app import run
from ui.config import Settings

settings = Settings()
setup_logging("ui", settings.log_level)
run(settings)
