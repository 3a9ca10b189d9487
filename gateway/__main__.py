from gateway.app import start
from gateway.config import Settings
from services.common.main import main

if __name__ == "__main__":
    main("gateway", Settings, start)
