"""The UI's main file for NiceGUI's user simulation: the real app, settings from the
environment the fixture prepares (logging left to pytest)."""

from ui.app import run
from ui.config import Settings

run(Settings())
