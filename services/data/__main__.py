"""`python -m services.data`: the data service."""

import ctypes
import os
import sys
from importlib.abc import MetaPathFinder

# Before pyarrow loads, which reads these once: every Arrow allocation — the CSV reader's,
# the Parquet writer's and the compute kernels', which ignore pa.set_memory_pool — goes
# through jemalloc. With Arrow's default (mimalloc, which keeps freed pages) a 200 MiB
# wide CSV peaked at 471 MiB VmHWM (bench/data_register.py). Freed pages go back within
# a second, from a background thread, straight to the kernel (muzzy 0: MADV_FREE'd pages
# would still count as resident): decay 0 held the peak ~20 MiB lower but cost 60% more
# CPU in re-faulted pages (a 200 MiB CSV, 7.5 s of CPU against 4.6).
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
os.environ.setdefault("JE_ARROW_MALLOC_CONF", "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0")
# Arrow's CSV reader reads as many blocks ahead as its pool has threads, one a CPU of the
# node (not of the pod): a 200 MiB wide CSV read in 1 MiB blocks took 56 MiB of Arrow
# memory with 2 threads, 98 MiB with 64. Four are plenty for a CSV that arrives at
# network speed.
ARROW_THREADS = 4
os.environ.setdefault("OMP_NUM_THREADS", str(min(ARROW_THREADS, len(os.sched_getaffinity(0)))))


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def _unmap_freed_blocks() -> None:
    """glibc serves a block of 128 KiB or more with its own mapping and unmaps it when freed,
    but each such free raises that threshold to the block's size (up to 32 MiB), so later
    1 MiB upload chunks and NumPy arrays come from heaps that keep their freed pages. A
    fixed threshold keeps them returned: the wide 64 MiB CSV peaked 36 MiB lower by upload,
    14 MiB lower from S3 (bench/data_register.py)."""
    try:
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, 128 << 10)
    except (OSError, AttributeError):  # not glibc: its allocator, its own rules
        pass


class _NoPandas(MetaPathFinder):
    """The data service never uses pandas, but pyarrow imports it (+51 MiB RSS, kept for
    good) the first time pa.array or pa.scalar is given Python or NumPy values, only to
    ask whether they are pandas objects. Refused here, pyarrow takes pandas as absent."""

    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("the data service does not load pandas (services/data/__main__.py)",
                                      name=name)
        return None


_unmap_freed_blocks()
if "pandas" not in sys.modules:
    sys.meta_path.insert(0, _NoPandas())

from services.common.main import main  # noqa: E402 - after the settings above
from services.data.app import start  # noqa: E402
from services.data.config import Settings  # noqa: E402

if __name__ == "__main__":
    main("data", Settings, start)
