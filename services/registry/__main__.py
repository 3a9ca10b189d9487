from services.common.main import main
from services.registry.app import start
from services.registry.config import Settings

if __name__ == "__main__":
    main("registry", Settings, start)
