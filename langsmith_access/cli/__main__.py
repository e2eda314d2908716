"""``python -m langsmith_access.cli``: the same as the ``langsmith-access`` console script,
exit included (``run``: the exit handlers, then the process ends without tearing the interpreter
down, so no thread a run left behind is unwound by Python's finalization)."""

from langsmith_access.cli import run

run()
