# tcpmem: two commands on a fresh machine -- `make report` and `make test`.
# Everything else here is what those two call, plus conveniences for developers.
SHELL := /bin/sh
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SAMPLE ?= data/sample.tar.gz
BEFORE ?=
REPORT_DIR ?= reports

.PHONY: setup setup-dev system-deps test lint report lab sample bench asan clean

# A virtualenv of our own; re-created when pyproject.toml changes.
$(VENV)/.base-installed: pyproject.toml setup.py tcpmemlib/parsers/_sstok.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.base-installed
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

setup: $(VENV)/.base-installed
setup-dev: $(VENV)/.dev-installed

system-deps:
	sh scripts/system-deps.sh

lint: setup-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check tcpmemlib tests bench
	$(if $(wildcard notebooks/*.ipynb),$(PY) -m nbstripout --verify notebooks/*.ipynb)

# Sets up (venv with dev extras, system tools), then runs every test: on $(TEST_WORKERS) pytest-xdist
# workers, a test file per worker at a time, the longest files first; `serial` tests run alone
# (tests/conftest.py).
TEST_WORKERS ?= 2
test: setup-dev system-deps lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Sets up, then builds the HTML reports from the bundled sample capture into $(REPORT_DIR)/.
# Also the real-server sample (data/real/): the Redis slow-subscriber before/after pair and idle nginx.
report: setup
	$(PY) -m tcpmemlib report $(SAMPLE) $(if $(BEFORE),--before $(BEFORE)) -o $(REPORT_DIR)
	$(if $(filter data/sample.tar.gz,$(SAMPLE)),$(PY) -m tcpmemlib report data/real/redis-after.tar.gz --before data/real/redis-before.tar.gz -o $(REPORT_DIR)/real-redis && $(PY) -m tcpmemlib report data/real/nginx-idle.tar.gz -o $(REPORT_DIR)/real-nginx)

# JupyterLab on the teaching notebooks.
lab: setup
	$(VENV)/bin/jupyter lab notebooks/

# Regenerate data/ with the lab's experiment runner (real sockets on loopback, about a minute).
sample: setup system-deps
	$(PY) scripts/make-real-sample.py && $(PY) -m tcpmemlib.lab experiment -o data/ && $(PY) -m tcpmemlib.lab experiment -o data/ --name sample-before --phases send_backlog && $(PY) -m tcpmemlib.lab experiment -o data/ --name sample-tuned --phases send_backlog --sndbuf 65536 --rcvbuf 65536 && $(PY) -m tcpmemlib.lab experiment -o data/ --name sample-netns --netns -N 300 --snapshots 2 --interval 1 --phases baseline,idle,recv_backlog,send_backlog,drained

bench: setup-dev system-deps
	$(PY) bench/run_all.py

# The ss parser tests against an AddressSanitizer/UBSan build of the C extractor (slow; not in test).
asan: setup-dev
	sh scripts/asan-check.sh

clean:
	rm -rf $(VENV) $(REPORT_DIR) .pytest_cache .ruff_cache .hypothesis
