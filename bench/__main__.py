"""`make bench`: every benchmark, one after another, each printing its table of
ratios against a baseline measured in the same run."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = [
    "training_loop", "gpu", "optuna_storage", "footprint", "tuning", "gateway",
    "data_register", "large_table", "tracking_queries", "predict", "ui_experiments", "ui_live", "quality", "outbox_latency",
]


def main() -> int:
    names = sys.argv[1:] or BENCHMARKS
    failed = []
    for name in names:
        print(f"\n## bench.{name}\n", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}"]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
