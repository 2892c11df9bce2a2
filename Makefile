# `make demo` and `make test` each create .venv and install everything they need.
# torch is pinned through constraints.txt: on this machine torch==2.13.0 is the CPU build from a
# local wheel, and an unpinned torch would download the newest CUDA build (gigabytes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c constraints.txt
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# The slim install: `pip install lossdoctor` without extras (no torch), for the log path alone.
VENV_SLIM ?= .venv-slim
SLIM_STAMP := $(VENV_SLIM)/.installed

.PHONY: demo test test-slim browser bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lossdoctor demo --html report.html

# Headless Chromium renders the HTML report in the tests (Debian's package; skipped where apt is absent).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && \
	    (apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "chromium could not be installed: the browser test will be skipped"; }

# The whole suite, then the log path again in an environment without torch (the slim install).
test: $(STAMP) browser
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)
	$(MAKE) test-slim

$(SLIM_STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV_SLIM)
	$(VENV_SLIM)/bin/python -m pip install -q -c constraints.txt -e . pytest
	touch $(SLIM_STAMP)

# The tests marked slim (tests/conftest.py collects only those where torch is missing): lossdoctor
# diagnose on every log kind, the error paths and the malformed corpus, without torch installed.
# `make test` ends with it: creating the environment costs about 2 minutes, the tests about 30 s.
test-slim: $(SLIM_STAMP)
	$(VENV_SLIM)/bin/python -m pytest -m slim -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(VENV_SLIM) .pytest_cache report.html
