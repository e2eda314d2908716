"""The command line as scripts use it: exit codes, stdout, --help, against a synced sandbox."""

import contextlib
import io
import os

from langsmith_access import cli
from langsmith_access_tests.helpers import query


@contextlib.contextmanager
def stdout_to_a_closed_pipe():
    """stdout as ``... | head -1`` leaves it once head has gone: every write fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "w", buffering=1) as closed, contextlib.redirect_stdout(closed):
        yield


def test_sync_all_sections_into_a_closed_pipe_still_runs_the_inventory(env):
    _sandbox, _org, database = env
    inventories = "SELECT count(*) FROM main.sync_runs WHERE job = 'langsmith_access_inventory' AND status = 'succeeded'"
    before = query(database.path, inventories)[0][0]
    err = io.StringIO()
    with stdout_to_a_closed_pipe(), contextlib.redirect_stderr(err):
        code = cli.main(["sync", "--all-sections", "--quiet"])
    assert code == 0, err.getvalue()
    assert query(database.path, inventories)[0][0] == before + 1  # not stopped by the summary's EPIPE
