"""Time Python's garbage collections in any process started with this directory on PYTHONPATH.

    PYTHONPATH=benchmarks/gc_time .venv/bin/langsmith-access sync --quiet
    ... GC: young 21x 0.99 s, middle 0x 0.00 s, full 0x 0.00 s, total 0.99 s

Python imports ``sitecustomize`` at start-up: this one adds a ``gc.callbacks`` hook that adds up
each generation's collections and prints the totals to stderr when the process exits. It
changes nothing else. Used for the figures in ``langsmith_access/garbage_collector.py``.
"""

import atexit
import gc
import sys
import time

_started: dict[int, float] = {}
_seconds = [0.0, 0.0, 0.0]
_counts = [0, 0, 0]


def _time_collection(phase: str, info: dict) -> None:
    generation = info["generation"]
    if phase == "start":
        _started[generation] = time.perf_counter()
    elif generation in _started:
        _seconds[generation] += time.perf_counter() - _started.pop(generation)
        _counts[generation] += 1


@atexit.register
def _report() -> None:
    parts = ", ".join(f"{name} {_counts[g]}x {_seconds[g]:.2f} s"
                      for g, name in enumerate(("young", "middle", "full")))
    sys.stderr.write(f"GC: {parts}, total {sum(_seconds):.2f} s\n")


gc.callbacks.append(_time_collection)
