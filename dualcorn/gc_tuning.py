"""The cyclic garbage collector in a serving process: freeze what the app loaded, and an
optional young-generation threshold.

Theory of operation
-------------------
CPython frees almost everything by reference counting; its cyclic collector only looks for
reference cycles.  A young-generation collection runs every ``threshold0`` net allocations of
container objects (700 by default; 2000 from 3.13), an older one every ``threshold1`` younger
ones, and a full collection walks every tracked object in the process.  Under load, a server
allocates and frees request objects at a high rate: on this project's benchmarks
(benchmarks/results/wsgi-speed.md) young collections ran 13-27 times per 1,000 requests at
~60 us each, and each full collection walked the app's whole import graph (20,000-45,000
objects from hello to Django: 5-12 ms), 1.4-4.1 us per request in all.

Two settings, applied once the application is loaded and its lifespan startup has run:

* ``gc_freeze`` (on by default): one collection, then :func:`gc.freeze`, which moves every
  object alive at that point (modules, classes, the app's routes and settings) to a permanent
  generation that later collections skip.  The collection first frees the import's own cyclic
  garbage, so nothing unreachable is frozen.  This is what gunicorn's documentation suggests
  with ``preload_app`` and what the :mod:`gc` documentation describes for pre-fork servers
  (frozen objects are also never written to by the collector, which keeps forked pages
  shared).  The cost: a startup object the app drops later is still freed by reference
  counting, but a reference cycle among such objects is never collected.  Done once per
  process, before the server listens.
* ``gc_threshold`` (off by default): the young generation's threshold.  Fewer collections
  mean less CPU per request and more memory held by cyclic garbage between collections: at
  most about ``threshold`` container objects (plus what they refer to).  It is bounded in
  :class:`~dualcorn.config.Config` for that reason; Go's ``GOGC`` and the JVM's young
  generation size are the same trade.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["GC_THRESHOLD_MAX", "GC_THRESHOLD_MIN", "tune_gc"]

logger = logging.getLogger("dualcorn.error")

# Bounds of --gc-threshold: below CPython's default (700) collections only cost more; above
# this, the cyclic garbage a process may hold between collections grows without much gain
# (this project's measurements: 10,000 already removes most young collections).
GC_THRESHOLD_MIN = 100
GC_THRESHOLD_MAX = 100_000

_frozen = False  # gc.freeze() is process-wide: once is enough


def tune_gc(*, freeze: bool, threshold: int | None) -> None:
    """Apply ``gc_freeze`` and ``gc_threshold`` to this process (see the module docstring)."""
    global _frozen
    if freeze and not _frozen:
        _frozen = True
        gc.collect()  # the import's own cycles are freed, not frozen
        gc.freeze()
        logger.debug("gc.freeze(): %d objects moved to the permanent generation",
                     gc.get_freeze_count())  # fmt: skip
    if threshold is not None:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(threshold, older, oldest)
