# Each target sets itself up: a .venv in the repo, created if missing, with torch pinned to the
# CPU build that is on disk (any other torch spec downloads GBs of CUDA wheels).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test bench-smoke clean chromium

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/noisyfit demo

# The report test opens the audit report in Debian's headless chromium; install it when missing and root.
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		apt-get install -y -qq chromium >/dev/null; } || echo "chromium not installed (not root?): the browser test will be skipped"

test: $(STAMP) chromium
	$(PY) -m pytest -q tests

# Every registered method on digits (a few minutes), then benchmarks/RESULTS.md and benchmarks/plots/.
bench-smoke: $(STAMP)
	$(VENV)/bin/noisyfit bench --suite smoke
	$(VENV)/bin/noisyfit bench report

clean:
	rm -rf $(VENV) runs .pytest_cache
