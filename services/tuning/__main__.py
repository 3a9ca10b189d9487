from services.common.main import main
from services.tuning.app import start
from services.tuning.config import Settings

main("tuning", Settings, start)
