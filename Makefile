# Two commands work on a fresh machine: `make demo` and `make test`. Both bootstrap .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: bootstrap browser postgres manifest demo lint smoke-deploy test bench clean

# uv installs what pip would (the same versions: `pip check` and `pip freeze` agree) in ~10 s,
# where pip took 1.5-2.5 min here, most of it fetching index pages one package at a time and
# compiling ~11,000 modules to bytecode on one core; compileall does that on every core after.
# uv reads none of pip's configuration: where pip's index is a mirror uv cannot reach, pip
# installs instead. The libraries' own test suites (`*/tests/`: pandas', numpy's, networkx's,
# ~1,800 modules nothing here imports) are left uncompiled: ~6 s of a fresh bootstrap.
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --python $(BIN)/python --quiet -e '.[test]' \
		|| $(BIN)/python -m pip install --quiet --no-compile -e '.[test]'
	$(BIN)/python -m compileall -q -j 0 -x '/tests/' $(VENV)/lib >/dev/null
	$(BIN)/python -m pip check
	touch $(INSTALLED)

bootstrap: $(INSTALLED)

# @dbt_assets reads dbt's manifest when the definitions load: build it (in the cache directory,
# keyed by the dbt project's content hash) if the current models have none yet.
manifest: bootstrap
	$(BIN)/python -c "from langsmith_access.transform import prepare_manifest; print(prepare_manifest())"

demo: manifest
	$(BIN)/langsmith-access demo

# The Dagster UI test drives Debian's headless Chromium (Playwright's own browser download cannot
# work offline). Installs it when missing; needs root, as on CI.
browser:
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# The Postgres-backed Dagster instance test (langsmith_access_tests/deploy/) starts Debian's
# PostgreSQL server under a temporary directory. Installs it when missing; needs root, as on CI.
postgres:
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql)

# The single-host production form on this machine (README "Running it for real"): PostgreSQL
# under a temporary directory, the code server, daemon and webserver of deploy/, two sandbox
# orgs synced by their schedule, a request applied by the sensor across a `kill -9` of the
# daemon, no key in a pg_dump. About two minutes; `make test` runs it with the rest of the suite.
smoke-deploy: manifest postgres
	$(BIN)/python -m pytest langsmith_access_tests/deploy/test_smoke_deploy.py -q -s

# ruff and mypy over the package (configured in pyproject.toml); `make test` runs ruff first and
# mypy beside the tests.
lint: bootstrap
	$(BIN)/ruff check langsmith_access benchmarks deploy
	$(BIN)/mypy

# One worker per core; each test module stays on one worker (its module fixtures are built once).
# mypy runs beside the tests rather than before them: a cold mypy is ~60 s of one core, with the
# other core idle (BENCHMARKS). So does the smoke deployment: it mostly waits (for its cron's
# minute, for the daemon and the run workers it starts), and in a worker's slot it ran last, one
# core idle through its waits. ruff (a second) still goes first, so a lint error fails at once;
# the smoke deployment's and mypy's verdicts are printed after the tests' and fail the target
# all the same.
PYTEST_WORKERS ?= 2
SMOKE_TEST := langsmith_access_tests/deploy/test_smoke_deploy.py
test: bootstrap browser postgres
	$(BIN)/ruff check langsmith_access benchmarks deploy
	@echo "$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile (the smoke deployment and mypy beside it)"
	@$(BIN)/mypy > $(VENV)/mypy.log 2>&1 & mypy=$$!; \
	$(BIN)/python -m pytest -p no:cacheprovider $(SMOKE_TEST) > $(VENV)/smoke-deploy.log 2>&1 & smoke=$$!; \
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --ignore=$(SMOKE_TEST); tests=$$?; \
	wait $$smoke; deployed=$$?; echo "$(BIN)/python -m pytest $(SMOKE_TEST)"; cat $(VENV)/smoke-deploy.log; \
	wait $$mypy; typed=$$?; echo "$(BIN)/mypy"; cat $(VENV)/mypy.log; \
	[ $$tests -eq 0 ] && [ $$deployed -eq 0 ] && [ $$typed -eq 0 ]

# Performance figures (BENCHMARKS.md): sandbox scale, then the real CLI's sync and provisioning
# against the sandbox at 20 ms latency and 2000 requests/min. About 16 minutes.
bench: manifest
	$(BIN)/python benchmarks/sandbox_scale.py
	$(BIN)/python benchmarks/sync_bench.py
	$(BIN)/python benchmarks/provision_bench.py

clean:
	rm -rf $(VENV) langsmith_access/dbt_project/target langsmith_access/dbt_project/logs .pytest_cache
