# The two commands of the README: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
export PYTHONWARNINGS ?= ignore

.PHONY: run test install bench clean prometheus rabbitmq web-assets browser

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install web-assets
	$(PY) -m ops.cli run

# The suite in two processes, each module whole in one of them; then the scan for personal
# data over what both left (tests/run_record.py), also when a test failed.
test: install prometheus rabbitmq web-assets browser
	$(PY) -m ops.testenv
	$(PY) -m pytest -n 2 --dist loadfile; passed=$$?; \
	  $(PY) -m pytest -m after_everything && exit $$passed

bench: install
	$(PY) -m ops.testenv
	$(PY) -m bench

clean:
	rm -rf $(VENV) .data

# promtool and the Prometheus server for the deployment tests, from Debian's package
# (as root, as CI runs); nothing happens when both are installed.
prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq >/dev/null && \
	  apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends prometheus >/dev/null; }
# RabbitMQ's server for the fault tests, which start nodes of their own (a node restarted
# under load, a cluster losing a node); they fail without it, never skip.
rabbitmq:
	@test -x /usr/lib/rabbitmq/bin/rabbitmq-server || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq >/dev/null && \
	  apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends rabbitmq-server >/dev/null; }
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
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq >/dev/null && \
	  apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends chromium >/dev/null; }
