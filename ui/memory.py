"""Gives closed pages' memory back soon after they close, rather than whenever Python's
oldest-generation collection next runs.

A page's elements, handlers and views refer to each other in cycles, so a closed page
is freed only by the cyclic garbage collector; its oldest generation runs when the
long-lived objects have grown by a quarter, which for a UI holding ~120,000 objects can
be many closed pages later. Until then every closed page's charts and rows stay
allocated and the heap's high-water mark (hence RSS) climbs with the pages opened, not
with the pages open (seen as NiceGUI apps "growing" as pages open and close:
zauberzeug/nicegui#6022, #1771). One full collection a few seconds after pages close,
then glibc's malloc_trim to hand the freed pages back, keeps RSS near what the open pages
need (the soak test, tests/reliability/test_soak.py).

The UI runs with PYTHONMALLOC=malloc (ui/__main__.py). Under pymalloc, a page's objects
(its rows, chart data, elements: ~30,000 for a 500-trial study) fill 1 MiB arenas, and an
arena goes back to the system only once every object in it is freed: the few hundred
objects that outlive a page (caches, interned strings, connection state) pinned the
arenas its rows had filled. Measured inside the UI during the soak: live Python objects
back to 106,000 and allocated bytes within 0.4 MB of the start after a round, but 48
arenas held instead of 37, then 65 as the pages grew with the study, and the UI's RSS with
no page open 14% above its value after the first round. From the system allocator, a
freed page's memory is returned by malloc_trim a page (4 KiB) at a time."""

from __future__ import annotations

import asyncio
import gc
import logging

from nicegui import background_tasks

from kubetune_common.malloc import malloc_trim

log = logging.getLogger(__name__)

COLLECT_AFTER_S = 3.0  # pages closing together are collected together


class Reclaimer:
    def __init__(self, after_s: float = COLLECT_AFTER_S):
        self.after_s = after_s
        self.task: asyncio.Task | None = None
        self.trim = malloc_trim()  # None: the collection still runs
        self.collections = 0  # tests read it

    def page_closed(self) -> None:
        if self.task is None or self.task.done():
            self.task = background_tasks.create(self._later(), name="reclaim closed pages")

    async def _later(self) -> None:
        await asyncio.sleep(self.after_s)
        found = gc.collect()
        if self.trim is not None:
            self.trim(0)
        self.collections += 1
        log.debug("collected %d objects of closed pages", found)


reclaimer = Reclaimer()
