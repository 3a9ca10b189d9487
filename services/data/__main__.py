"""`python -m services.data`: the data service."""

from services.common.main import main
from services.data.app import start
from services.data.config import Settings

if __name__ == "__main__":
    main("data", Settings, start)
