from services.common.main import main
from services.tuning.app import start
from services.tuning.config import Settings

if __name__ == "__main__":
    main("tuning", Settings, start)
