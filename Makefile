# The two commands of the README: `make demo` and `make test`. Both set up first; every step
# is idempotent, so running them again only redoes what changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup system-deps browser demo test lint

setup: system-deps $(VENV)/.installed
	$(BIN)/perf setup

# Libraries the Triton binaries link that no wheel carries (Debian package names).
system-deps:
	@ldconfig -p | grep -q 'libb64.so.0d' || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq libb64-0d; \
	  else echo "perf needs libb64: run  sudo apt-get update && sudo apt-get install -y libb64-0d" >&2; exit 1; fi; }

# The tests open reports in a real browser: Debian's chromium, driven by playwright.
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "the report tests need chromium: run  sudo apt-get update && sudo apt-get install -y chromium" >&2; exit 1; fi; }

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "perf needs Python 3.11 or newer: run  make PYTHON=python3.11 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# Serve and classify, a perf_analyzer table, then a sweep of the classifier's batching (each
# config's load searched, then raced) and its report (RUN/report.html).
DEMO_RUN := runs/demo-$(shell date +%Y%m%d-%H%M%S)
demo: setup
	$(BIN)/perf demo
	$(BIN)/perf sweep --model ensemble_model \
	  --param classifier.preferred_batch_size --values '[4]' '[16]' '[32,64]' \
	  --slo-p99-ms 50 --max-rounds 5 --out $(DEMO_RUN)
	$(BIN)/perf report $(DEMO_RUN)

test: setup browser
	$(BIN)/pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
