from services.common.main import main
from services.tracking.app import start
from services.tracking.config import Settings

if __name__ == "__main__":
    main("tracking", Settings, start)
