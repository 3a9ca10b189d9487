from services.common.main import main
from services.tuning.worker.app import start
from services.tuning.worker.config import Settings

main("worker", Settings, start)
