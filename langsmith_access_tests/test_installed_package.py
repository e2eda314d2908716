"""The product as `pip install .` (not editable) installs it: the demo runs from an empty
directory, with the dbt project read from site-packages and nothing written there, and tells
its whole story (sync, the three answers, provisioning, an approval and an expiry) without
touching the process environment. The suite's only demo run: a demo costs ~40 s of CPU.

To stay fast and offline, the sdist and the wheel from it are built without build isolation
(with whatever setuptools this venv has), the wheel installed with
``--no-deps`` into a fresh venv, and the dependencies come from this test venv's site-packages
through a ``.pth`` file (a plain path: the editable install's finder there is not activated).
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[1]
# `langsmith-access demo` as the console script runs it (main), then the environment compared.
DEMO_KEEPING_THE_ENVIRONMENT = """
import os, sys
from langsmith_access.cli import main
before = dict(os.environ)
code = main(["demo"])
sys.stdout.flush()
assert dict(os.environ) == before, "the demo changed the process environment"
assert "LANGSMITH_ACCESS_POLICY" not in os.environ
sys.exit(code)
"""


def _run(command, **kwargs):
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


def _files(directory: Path) -> set[Path]:
    return {path.relative_to(directory) for path in directory.rglob("*")
            if "__pycache__" not in path.parts}


@pytest.mark.timeout(900)
def test_a_non_editable_install_runs_the_demo_from_an_empty_directory(tmp_path):
    # The checkout as `pip install .` sees it (the test package beside the product's, no build
    # output), built the way a release is: the sdist, then the wheel from the unpacked sdist
    # alone (so the sdist holds everything the wheel needs).
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copyfile(REPO / name, source / name)
    for package in ("langsmith_access", "langsmith_access_tests"):
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__", "target", "logs", "*.egg-info",
                                                      "screenshots"))
    sdists = tmp_path / "sdists"
    _run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(sdists)!r})"],
         cwd=source, timeout=300)
    (sdist,) = sdists.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "--quiet", "--wheel-dir", str(wheels), str(unpacked)], timeout=300)
    (wheel,) = wheels.glob("langsmith_access-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read("langsmith_access-0.1.0.dist-info/METADATA").decode()
    # Only the product: the test suite is no importable top-level package of a user's site-packages.
    assert {name.split("/")[0] for name in names} == {"langsmith_access", "langsmith_access-0.1.0.dist-info"}
    assert "langsmith_access/py.typed" in names  # the documented Python API (api.py) is typed
    # The license as an SPDX expression (PEP 639): the `{ text = ... }` form setuptools releases
    # after 2027-02-18 refuse to build.
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    # ... and its text, which the Apache License asks every copy to carry (sdist and wheel alike).
    assert "License-File: LICENSE" in metadata.splitlines()
    assert "langsmith_access-0.1.0.dist-info/licenses/LICENSE" in names

    # The fresh venv alone: not the checkout through a PYTHONPATH the suite runs with (pip would
    # take the checkout's *.egg-info there for an installed langsmith-access and skip the wheel).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LANGSMITH_", "DAGSTER_", "DBT_", "VIRTUAL_ENV", "PYTHON"))}
    venv = tmp_path / "fresh"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "--quiet", str(wheel)], env=env, timeout=300)
    fresh_site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (fresh_site / "test_venv_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    installed = fresh_site / "langsmith_access"
    where = _run([str(python), "-c", "import langsmith_access; print(langsmith_access.__file__)"],
                 cwd=tmp_path, env=env).stdout.strip()
    assert Path(where) == installed / "__init__.py"  # not the checkout, not the editable install
    assert (installed / "dbt_project" / "dbt_project.yml").exists()
    shipped = _files(installed)

    empty = tmp_path / "empty"
    empty.mkdir()
    # No manifest built yet for this install: it must build one itself, outside the package.
    env["LANGSMITH_ACCESS_CACHE_DIR"] = str(tmp_path / "cache")
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"  # only the fresh venv's scripts
    script = venv / "bin" / "langsmith-access"
    assert "demo" in _run([str(script), "--help"], cwd=empty, env=env).stdout  # the console script
    # The demo, through the installed package's main(), checking that it handed its sandbox's
    # settings to its runs and left the process environment as it was (the demo's policy
    # governs only the demo).
    demo = subprocess.run([str(python), "-c", DEMO_KEEPING_THE_ENVIRONMENT], cwd=empty, env=env,
                          capture_output=True, text=True, timeout=800)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    out = demo.stdout
    assert "50 users" in out
    for number in ("1. Who holds", "2. Which workspaces", "3. Which disabled"):
        assert number in out
    # Governance: an approval (self-approval refused first) and an expiry that restores the role.
    assert "awaiting_approval: awaiting approval: grant Admin" in out
    assert "they try to approve it themselves: refused: self-approval" in out
    assert "revoke by langsmith-access (expired): applied, restore Editor, the role before the grant of Admin" in out
    assert re.search(r"is Editor in '[^']+' again\.", out)
    # Times of the audit trail and grant_history are in the host's time zone, named in the headings.
    assert re.search(r"│ +at \([^)]+\) +│", out) and re.search(r"│ +valid_from \([^)]+\) +│", out), out[-3000:]

    database = empty / "demo-data" / "langsmith_access.duckdb"  # outside data/, where each folder is an org
    assert database.exists()
    with duckdb.connect(str(database), read_only=True) as conn:
        admins = conn.execute(
            "SELECT count(*) FROM main.users u JOIN main.roles r ON r.role_id = u.org_role_id "
            "WHERE r.name = 'ORGANIZATION_ADMIN'").fetchone()[0]
    assert admins > 0
    assert (database.with_name("langsmith_access_docs") / "index.html").exists()
    assert list((tmp_path / "cache").glob("dbt-*/manifest.json"))
    # README's check of the definitions where there is no checkout (`dg check defs` needs one).
    validated = _run([str(python), "-m", "dagster", "definitions", "validate", "-m", "langsmith_access.definitions",
                      "-a", "defs"], cwd=empty, env=env, timeout=300)
    assert "All code locations passed validation" in validated.stdout + validated.stderr
    assert _files(installed) == shipped  # nothing written into site-packages
    assert "Warning" not in demo.stderr, demo.stderr[-3000:]
