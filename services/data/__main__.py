"""`python -m services.data`: the data service."""

import os
import sys
from importlib.abc import MetaPathFinder

# Before pyarrow loads, which reads these once: every Arrow allocation — the CSV reader's,
# the Parquet writer's and the compute kernels', which ignore pa.set_memory_pool — goes
# through jemalloc, returning freed pages at once. With Arrow's default (mimalloc, which
# keeps freed pages) a 200 MiB wide CSV peaked at 471 MiB VmHWM (bench/data_register.py).
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
os.environ.setdefault("JE_ARROW_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
# Arrow's CSV reader reads as many blocks ahead as its pool has threads, one a CPU of the
# node (not of the pod): a 200 MiB wide CSV took 56 MiB of Arrow memory with 2, 98 MiB
# with 64. Four are plenty for a CSV that arrives at network speed.
ARROW_THREADS = 4
os.environ.setdefault("OMP_NUM_THREADS", str(min(ARROW_THREADS, len(os.sched_getaffinity(0)))))


class _NoPandas(MetaPathFinder):
    """The data service never uses pandas, but pyarrow imports it (+51 MiB RSS, kept for
    good) the first time pa.array or pa.scalar is given Python or NumPy values, only to
    ask whether they are pandas objects. Refused here, pyarrow takes pandas as absent."""

    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("the data service does not load pandas (services/data/__main__.py)",
                                      name=name)
        return None


if "pandas" not in sys.modules:
    sys.meta_path.insert(0, _NoPandas())

from services.common.main import main  # noqa: E402 - after the settings above
from services.data.app import start  # noqa: E402
from services.data.config import Settings  # noqa: E402

if __name__ == "__main__":
    main("data", Settings, start)
