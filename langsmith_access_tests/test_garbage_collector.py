"""The collector settings a process gets when it loads the definitions (garbage_collector.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from langsmith_access import garbage_collector


def _collector_after(code: str) -> dict:
    # A process of its own: this one's collector may already be set by another test.
    script = (
        "import gc, json\n" + code +
        "\nprint(json.dumps({'threshold': gc.get_threshold(), 'frozen': gc.get_freeze_count(), "
        "'enabled': gc.isenabled()}))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_loading_the_definitions_freezes_what_exists_and_raises_the_thresholds():
    bare = _collector_after("")  # this Python's defaults
    assert bare["threshold"] != [garbage_collector.YOUNG_THRESHOLD, garbage_collector.MIDDLE_THRESHOLD,
                                 garbage_collector.OLD_THRESHOLD]
    assert _collector_after("import langsmith_access.definitions") == bare  # importing changes nothing
    after = _collector_after("from langsmith_access.definitions import defs\ndefs()")
    assert after["threshold"] == [garbage_collector.YOUNG_THRESHOLD, garbage_collector.MIDDLE_THRESHOLD,
                                  garbage_collector.OLD_THRESHOLD]
    assert after["frozen"] > 100_000  # Dagster's and dbt's modules, out of the collector's reach
    # Young collections far rarer than Python's default, and the collector still on: cycles made
    # after the freeze are still collected.
    assert after["threshold"][0] >= 10 * bare["threshold"][0]
    assert after["enabled"] and bare["enabled"]


def test_only_the_first_call_freezes():
    counts = _collector_after(
        "from langsmith_access import garbage_collector\n"
        "garbage_collector.tune_for_runs()\nfirst = gc.get_freeze_count()\n"
        "kept = [[i] for i in range(1000)]\n"
        "garbage_collector.tune_for_runs()\nassert gc.get_freeze_count() == first, gc.get_freeze_count()"
    )
    assert counts["frozen"] > 0


def test_the_console_script_raises_the_thresholds_before_any_command_runs():
    seen = _collector_after(
        "from langsmith_access import cli\n"
        "cli.main = lambda: print(json.dumps({'threshold': gc.get_threshold(), 'frozen': 0})) or 0\n"
        "cli.run()"
    )
    assert seen["threshold"] == [garbage_collector.YOUNG_THRESHOLD, garbage_collector.MIDDLE_THRESHOLD,
                                 garbage_collector.OLD_THRESHOLD]
