"""Imports point down (DESIGN.md section 12, STYLE.md "Learned in this codebase").

The domain packages (``langsmith/``, ``sync/``, ``provisioning/``, ``store/``, ``transform/``,
``governance/``) import nothing from Dagster, ``defs/``, the definitions, the runner, the CLI,
the demo or the Python API: ``defs/`` and the CLI call into them, never the other way. Checked twice for every module of those packages:
its import statements, function-level ones included (static), and what importing it in a fresh
interpreter actually loads (dynamic, which also catches an import through another module).

Function-level imports anywhere in the package are allowed only in the top layer, and only
when a comment says they are deferred on purpose (Dagster and dbt cost seconds to import).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "langsmith_access"
DOMAIN_PACKAGES = ("langsmith", "sync", "provisioning", "store", "transform", "governance")
FORBIDDEN = (
    "dagster",  # and dagster_dbt, dagster_duckdb, dagster_shared, ... (prefix "dagster")
    "langsmith_access.defs",
    "langsmith_access.definitions",
    "langsmith_access.runner",
    "langsmith_access.cli",
    "langsmith_access.demo",
    "langsmith_access.api",
)
# Modules above the domain packages, where an import may be deferred for start-up time.
TOP_LAYER = ("langsmith_access.cli", "langsmith_access.api", "langsmith_access.demo", "langsmith_access.console")
DEFERRED_COMMENT = "Deferred on purpose"


def module_name(path: Path, root: Path = PACKAGE_DIR) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def domain_modules(root: Path = PACKAGE_DIR) -> list[Path]:
    return sorted(p for package in DOMAIN_PACKAGES for p in (root / package).rglob("*.py"))


def is_forbidden(name: str) -> bool:
    return any(name == bad or name.startswith(bad + ".") or (bad == "dagster" and name.startswith("dagster"))
               for bad in FORBIDDEN)


def imported_names(path: Path, root: Path = PACKAGE_DIR) -> list[tuple[int, str, bool]]:
    """(line, module, inside a function) for every import statement of a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path, root) if path.name == "__init__.py" else module_name(path, root).rpartition(".")[0]
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((child.lineno, alias.name, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from .x import y
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                found.append((child.lineno, base, in_function))
                # `from langsmith_access import runner` imports the module langsmith_access.runner
                found.extend((child.lineno, f"{base}.{alias.name}", in_function) for alias in child.names)
            visit(child, nested)

    visit(tree, False)
    return found


def upward_imports(path: Path, root: Path = PACKAGE_DIR) -> list[str]:
    return [f"{path.relative_to(root.parent)}:{line} imports {name}"
            for line, name, _ in imported_names(path, root) if is_forbidden(name)]


LOADED_SCRIPT = """
import importlib, json, sys
for module in sys.argv[1:]:
    importlib.import_module(module)
print(json.dumps(sorted(sys.modules)))
"""


def loaded_upward(*modules: str, path_entry: Path | None = None) -> list[str]:
    """The forbidden modules that importing ``modules`` in one fresh interpreter loads."""
    command = [sys.executable, "-c", LOADED_SCRIPT, *modules]
    env = None
    if path_entry is not None:
        env = {"PYTHONPATH": f"{path_entry}:{PACKAGE_DIR.parent}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return [name for name in json.loads(done.stdout.splitlines()[-1]) if is_forbidden(name)]


def test_the_domain_packages_are_all_checked():
    names = {module_name(p) for p in domain_modules()}
    assert {"langsmith_access.provisioning.queue", "langsmith_access.provisioning.review.queueing",
            "langsmith_access.store.queries", "langsmith_access.sync.guards",
            "langsmith_access.langsmith.client", "langsmith_access.governance.policy"} <= names


@pytest.mark.parametrize("path", domain_modules(), ids=lambda p: module_name(p))
def test_domain_module_imports_nothing_from_above(path):
    assert upward_imports(path) == []


def test_importing_the_domain_packages_loads_nothing_from_above():
    # Every domain module in one fresh interpreter: a module that loads something from above
    # on its own loads it here too (or it is loaded already and listed all the same), so
    # nothing loaded means nothing loaded by any of them. A fresh interpreter per module (the
    # transform modules import dbt: ~3 s each) only to say which one, when something was.
    modules = [module_name(p) for p in domain_modules()]
    if not loaded_upward(*modules):
        return
    loaded = {module: loaded_upward(module) for module in modules}
    assert {module: names for module, names in loaded.items() if names} == {}


def test_function_level_imports_are_only_deliberate_deferrals_in_the_top_layer():
    offending = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if "dbt_project" in path.parts:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        name = module_name(path)
        for line, imported, in_function in imported_names(path):
            if not in_function:
                continue
            comment, above = "", line - 2
            while above >= 0 and lines[above].strip().startswith("#"):  # the comment block above it
                comment, above = lines[above].strip() + " " + comment, above - 1
            if not name.startswith(TOP_LAYER) or DEFERRED_COMMENT not in comment:
                offending.append(f"{path.relative_to(PACKAGE_DIR.parent)}:{line} imports {imported} in a function")
    assert sorted(set(offending)) == []


# The checks themselves: each must fail on the import it is there to stop.

def test_the_checks_catch_an_upward_import(tmp_path):
    root = tmp_path / "langsmith_access"
    (root / "provisioning").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "provisioning" / "__init__.py").write_text("")
    module = root / "provisioning" / "sneaky.py"
    module.write_text(
        "import json\n\n\ndef provision():\n    from langsmith_access import runner\n"
        "    from ..defs.resources import LangSmithAPI\n    import dagster as dg\n"
    )
    assert upward_imports(module, root) == [
        "langsmith_access/provisioning/sneaky.py:5 imports langsmith_access.runner",
        "langsmith_access/provisioning/sneaky.py:6 imports langsmith_access.defs.resources",
        "langsmith_access/provisioning/sneaky.py:6 imports langsmith_access.defs.resources.LangSmithAPI",
        "langsmith_access/provisioning/sneaky.py:7 imports dagster",
    ]
    # At run time: Dagster loaded through a module that is not itself forbidden (Dagster alone,
    # not the runner, which would load dbt and the definitions too: ~4 s more per interpreter).
    (tmp_path / "sneaky_domain.py").write_text("import sneaky_helper\n")
    (tmp_path / "sneaky_helper.py").write_text("import dagster\n")
    loaded = loaded_upward("sneaky_domain", path_entry=tmp_path)
    assert "dagster" in loaded
    # Among clean modules, imported together as the domain check does.
    together = loaded_upward("langsmith_access.store.queries", "sneaky_domain",
                             "langsmith_access.sync.guards", path_entry=tmp_path)
    assert "dagster" in together
    assert loaded_upward("langsmith_access.store.queries", "langsmith_access.sync.guards") == []


def test_the_command_line_loads_no_dagster_until_a_command_runs_a_job():
    # README "How it fits together": Dagster and dbt take seconds to import, and `langsmith-access
    # requests` (or `request`, `approve`) should not wait for them: the console script's module,
    # with every command's parser, loads neither; a command that runs a job imports them then.
    loaded = [name for name in loaded_upward("langsmith_access.cli")
              if name.startswith(("dagster", "langsmith_access.runner", "langsmith_access.defs"))]
    assert loaded == []
