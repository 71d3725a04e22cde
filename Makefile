# The two commands of the README: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
export PYTHONWARNINGS ?= ignore

.PHONY: run test install bench clean web-assets browser

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install web-assets
	$(PY) -m ops.cli run

test: install web-assets browser
	$(PY) -m ops.testenv
	$(PY) -m pytest

bench: install
	$(PY) -m ops.testenv
	$(PY) -m bench

clean:
	rm -rf $(VENV) .data

# The gateway's browser assets (NL Design System CSS, GraphiQL, axe-core for the tests), from
# the committed lock file; again whenever package.json or the lock file changes.
WEB := gateway/web
$(WEB)/node_modules/.installed: $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund
	touch $@

web-assets: $(WEB)/node_modules/.installed

# Debian's chromium for the browser tests (playwright drives it; no browser is downloaded).
browser:
	@command -v chromium >/dev/null || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; }
