from gateway.app import start
from gateway.config import Settings
from services.common.main import main

main("gateway", Settings, start)
