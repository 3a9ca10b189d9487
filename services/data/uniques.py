"""The distinct numbers of a column read block by block, in bounded extra memory: one
sorted array (8 bytes a distinct value) that each block's few new values are merged into."""

from __future__ import annotations

import numpy as np

# Blocks' distinct values wait in a list until they pass a quarter of the sorted array
# (at least MIN_PENDING), then go in together: the array grows by a quarter or more at
# each merge, so every value is copied a few times in all, and a merge holds ~2.5 times
# the array at most (the old array, the new one, the pending values). Merging with a
# whole-array np.unique instead held ~8 times it: 110 MB for a 2 M-row float target.
MIN_PENDING = 65_536


class SortedUnique:
    def __init__(self, dtype=np.float64):
        self._values = np.empty(0, dtype=dtype)
        self._pending: list[np.ndarray] = []
        self._pending_size = 0
        self.added = 0  # values given to add(), repeats included

    def add(self, values: np.ndarray) -> None:
        unique = np.unique(values)
        self.added += values.size
        self._pending.append(unique)
        self._pending_size += unique.size
        if self._pending_size > max(self._values.size // 4, MIN_PENDING):
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        new = self._pending[0] if len(self._pending) == 1 else np.unique(np.concatenate(self._pending))
        self._pending, self._pending_size = [], 0
        if not self._values.size:
            self._values = new.astype(self._values.dtype, copy=False)
            return
        at = np.searchsorted(self._values, new)
        inside = at < self._values.size
        inside[inside] = self._values[at[inside]] == new[inside]  # already present
        self._values = np.insert(self._values, at[~inside], new[~inside])

    @property
    def values(self) -> np.ndarray:
        """Every distinct value added so far, sorted."""
        self._merge()
        return self._values

    def __len__(self) -> int:
        return self.values.size
