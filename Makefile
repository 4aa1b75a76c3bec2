# flux_provider: `make demo` runs the main job, `make test` runs the suite.
# Both set up everything first: system packages (apt-get, as root), .venv with
# the pinned constraints, the s3a jars, and the local stack of real services.

PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
# the tested set for the venv's Python (constraints/constraints-3.1x.txt: one per supported version)
PYVER       := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
CONSTRAINTS := constraints/constraints-$(PYVER).txt
STAMP       := $(VENV)/.flux-installed
DEVSTACK    := $(PY) -m flux_devstack
RUN_DIRS    := .devstack .devstack-test .devstack-cluster-test .devstack-bench

.PHONY: demo test unit pythons lint docs bench up down status env setup system-deps constraints vendor clean

# The main job: the sample media bundle (dags/specs/*.xml) through the real scheduler; exit 0 only if
# every data set ran and reconciled. DEMO_ROWS scales the generated source (viewing sessions).
DEMO_ROWS ?= 20000
demo: setup
	$(DEVSTACK) up
	$(DEVSTACK) demo --rows $(DEMO_ROWS)
	@echo "The local stack keeps running; 'make down' stops it."

# The cluster module runs in a second pytest process beside the rest (tests/support/suite.py);
# with PYTEST_ARGS, one pytest process on them.
test: setup
	$(PY) -m tests.support.suite $(PYTEST_ARGS)

# The tier that needs no service (tests/unit: no stack, no sleeps), about a minute.
unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# The wheel on every other Python with a constraints file that this machine has (`make test` tries the newest).
pythons: setup
	FLUX_TEST_PYTHONS=all $(PY) -m pytest tests/integration/test_python_versions.py $(PYTEST_ARGS)

# The layering contracts (import-linter, in pyproject.toml) and the code style (ruff).
lint: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The documentation site (docs/, Sphinx + MyST): the generated references rewritten, then built with warnings
# as errors and its internal links checked. Open docs/_build/html/index.html.
docs: setup
	$(PY) docs/reference.py
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
	$(PY) -m sphinx -W --keep-going -q -b linkcheck docs docs/_build/linkcheck

# Benchmarks (not part of the suite): prints a table, writes benchmarks/results/*.json and *.png.
bench: setup
	$(PY) benchmarks/export_bench.py $(BENCH_ARGS)
	$(PY) benchmarks/upload_bench.py $(BENCH_ARGS)
	$(PY) benchmarks/parallel_bench.py
	$(PY) benchmarks/throttle_sim.py
	$(PY) benchmarks/e2e_bench.py
	$(PY) benchmarks/adaptive_bench.py
	$(PY) benchmarks/source_bench.py --down
	$(PY) benchmarks/fleet_bench.py
	$(PY) benchmarks/dashboard_bench.py

setup: system-deps $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# pip 25.1 reads pyproject.toml's dependency groups (the dev tools, not published with the wheel)
	$(PY) -m pip install --quiet --disable-pip-version-check "pip>=25.1"
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e . --group dev
	# the repository's own packages beside the product (flux_devstack, tests, benchmarks), which the wheel
	# does not ship, importable from every process of the venv: the stack's services included
	$(PY) -c 'import pathlib, sys, sysconfig; pathlib.Path(sysconfig.get_path("purelib"), "flux-repo.pth").write_text(sys.argv[1] + "\n")' "$(CURDIR)"
	$(PY) -m flux_devstack.jars
	touch $@

up: setup
	$(DEVSTACK) up

# Stops the stack of `make up`/`make demo`, the suite's own (.devstack-test, .devstack-cluster-test) and the
# benchmarks' (.devstack-bench).
down:
	@if [ -x $(PY) ]; then $(DEVSTACK) down; $(DEVSTACK) --run-dir .devstack-test down; \
	$(DEVSTACK) --run-dir .devstack-bench down; $(DEVSTACK) --run-dir .devstack-cluster-test down; \
	else echo "no .venv: nothing to stop"; fi

status:
	$(DEVSTACK) status

env:
	@$(DEVSTACK) env

# Re-pin the tested set after changing dependencies (then run `make test`).
constraints:
	{ sed -n '1,3p' $(CONSTRAINTS); $(PY) -m pip freeze --exclude-editable | grep -vi '^airflow-provider-flux' | sort -f; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

# The dashboard's chart library (uPlot), as ui/package-lock.json pins it, copied into the package: the
# built files are committed and ship in the wheel, so neither `make setup` nor a deployment needs npm.
vendor:
	cd ui && npm ci --no-audit --no-fund
	cp ui/node_modules/uplot/dist/uPlot.iife.min.js ui/node_modules/uplot/dist/uPlot.min.css flux_provider/dashboard/static/
	cp ui/node_modules/uplot/LICENSE flux_provider/dashboard/static/uPlot.LICENSE

# Stops every stack and removes what it wrote: its run directory, and its database and Redis keys on the
# machine's servers (flux_devstack clean); then the venv.
clean:
	@if [ -x $(PY) ]; then for dir in $(RUN_DIRS); do $(DEVSTACK) --run-dir $$dir clean || true; done; fi
	rm -rf $(RUN_DIRS) $(VENV)
