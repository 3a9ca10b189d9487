"""glibc's malloc_trim, looked up once for whoever hands freed heap back to the system: the
UI after its pages close, a worker after preparing a table."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None (musl, macOS): callers then keep what they freed."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
