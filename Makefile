# driftnet: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo demo-shop test test-deps lint typecheck unit bench clean help snippet

help:
	@echo "make demo   run the whole pipeline on generated traffic and print analyses"
	@echo "make demo-shop  serve a demo shop page that uses dn.js, until Ctrl-C"
	@echo "make test   install what tests need and run lint, types and the whole suite"
	@echo "make bench  measure collector, loader and latency (needs wrk)"

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "driftnet needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# The demo needs only the runtime dependencies; tests add the dev extras.
$(RUN_STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	@touch $(RUN_STAMP)

$(DEV_STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[dev]'
	@touch $(RUN_STAMP) $(DEV_STAMP)

# DEMO_FLAGS passes options on: `make demo DEMO_FLAGS=--shop` serves the dn.js demo shop.
demo: $(RUN_STAMP)
	$(VENV)/bin/driftnet demo $(DEMO_FLAGS)

# A demo shop page using dn.js on http://localhost:8000/, until Ctrl-C (docs/snippet.md).
demo-shop: $(RUN_STAMP)
	$(VENV)/bin/driftnet demo --shop

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check schemas ingest analytics driftnet tests bench
	$(VENV)/bin/mypy

# The browser suite (tests/browser) needs the pinned tracker builds and Debian's Chromium;
# Playwright drives that Chromium and never downloads a browser of its own.
NODE_STAMP := node_modules/.package-lock.json
CHROMIUM := /usr/bin/chromium

test-deps: $(DEV_STAMP) $(NODE_STAMP) $(CHROMIUM)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $(NODE_STAMP)

$(CHROMIUM):
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

test: test-deps lint
	$(VENV)/bin/pytest -q

bench: $(DEV_STAMP)
	@command -v wrk >/dev/null || { echo "make bench needs wrk: apt-get install wrk"; exit 1; }
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# dn.js: rebuild ingest/collector/static/ from snippet/ with the pinned terser (commit both).
snippet: $(NODE_STAMP)
	node snippet/build.mjs
