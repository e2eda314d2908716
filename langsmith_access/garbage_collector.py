"""Python's garbage collector, set for a process that runs syncs and provisioning.

A run imports Dagster and dbt (over a million objects that live as long as the process), then
parses tens of thousands of member records that all survive to the end. With Python's default
thresholds (a young collection every 700 allocations, full ones as the heap grows by a quarter)
the collector walked that whole heap again and again: 4.0 to 4.8 s of a 33-s warm sync at 20,000
members, 5.0 s of a 500-request provisioning run (measured with ``gc.callbacks``:
``benchmarks/gc_time/``). Two settings bring a sync's collections down to ~1 s:

- young collections every 50,000 allocations rather than 700, from the start of the console
  script (``raise_thresholds``) or, in Dagster's run workers, once the definitions are loaded:
  each costs about the same, since the survivors are what a collection walks, and there are 70
  times fewer (set at the console script's start, they also spare the ~0.6 s the imports
  cost in collections);
- ``gc.freeze()`` once the definitions are loaded: what exists then (modules, classes, Dagster's
  and dbt's registries) is never collected, so no collection walks it again.

Garbage still goes: most objects by reference count the moment they are dropped, cycles at
the next collection; only objects that existed at the freeze are out of the collector's reach.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # Python's default: 700
MIDDLE_THRESHOLD = 20  # young collections per middle one (default 10)
OLD_THRESHOLD = 100  # middle collections per full one (default 10)

_tuned = False


def raise_thresholds() -> None:
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)


def tune_for_runs() -> None:
    """Freeze what exists now and raise the thresholds; only the first call freezes, so a
    process that builds the definitions again (the CLI does for each run) does not freeze the
    objects of its earlier runs."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    raise_thresholds()
    gc.freeze()
