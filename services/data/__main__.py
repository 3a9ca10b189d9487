"""`python -m services.data`: the data service."""

import os

# Before pyarrow loads, which reads these once: every Arrow allocation — the CSV reader's,
# the Parquet writer's and the compute kernels', which ignore pa.set_memory_pool — goes
# through jemalloc, returning freed pages at once. With Arrow's default (mimalloc, which
# keeps freed pages) a 200 MiB CSV peaked ~200 MiB higher (bench/data_register.py).
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
os.environ.setdefault("JE_ARROW_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")

from services.common.main import main  # noqa: E402 - after the environment above
from services.data.app import start  # noqa: E402
from services.data.config import Settings  # noqa: E402

if __name__ == "__main__":
    main("data", Settings, start)
