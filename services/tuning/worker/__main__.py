from services.common.main import main
from services.tuning.worker.app import start
from services.tuning.worker.config import Settings

if __name__ == "__main__":
    main("worker", Settings, start)
