# chatgate — two commands do everything on a fresh machine:
#   make run    install, migrate, start Redis unless REDIS_URL or REDIS_SENTINELS is set, serve on 127.0.0.1:8000
#               (WORKERS=N make run: N daphne processes on that one port, one sweeper)
#   make test   install, start what the tests need (Redis, Chromium), run lint, types, tests
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install run test lint typecheck pytest pytest-postgres browser-deps server-deps bench bench-fanout bench-history bench-handoff bench-presence bench-memory bench-page-memory bench-fanout-cluster bench-api clean

install: $(STAMP)

# --compile-bytecode: the packages' .pyc files are written once here. Without them, where
# PYTHONDONTWRITEBYTECODE is set (as on this machine), every process compiled Django, Twisted
# and redis-py from source at start: a daphne took 4.5 s to start instead of 1.3 s.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode -r requirements.lock
	@rm -f $(VENV)/.installed-* && touch $@

run: install
	DEBUG=$${DEBUG:-1} WORKERS=$${WORKERS:-1} $(BIN)/python -m sessions_app.devrun

# Debian's Chromium, CJK fonts and gettext for the browser tests and translations (Playwright
# never downloads a browser). apt-get needs root: sudo is used when we are not.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser-deps:
	@if ! command -v chromium >/dev/null || ! command -v msgfmt >/dev/null \
		|| ! fc-list 2>/dev/null | grep -qi "Noto Sans CJK"; then \
		echo "Installing Debian's chromium, fonts-noto-cjk and gettext for the tests..."; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			chromium fonts-noto-cjk gettext >/dev/null; \
	fi

# Debian's PostgreSQL (the tests' PostgreSQL pass starts a throwaway cluster of its own) and
# nginx (tests/test_deploy_files.py runs deploy/nginx in front of daphne). Neither may start as
# a service: a policy-rc.d that says no (Docker images ship one) is put in place for the install.
server-deps:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! test -x /usr/sbin/nginx; then \
		echo "Installing Debian's postgresql and nginx-light for the tests..."; \
		$(SUDO) sh -c 'set -e; made=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made=1; fi; \
			apt-get update -qq; status=0; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			postgresql nginx-light >/dev/null || status=$$?; \
			if [ -n "$$made" ]; then rm -f /usr/sbin/policy-rc.d; fi; exit $$status'; \
	fi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	CHATGATE_TESTING=1 $(BIN)/mypy config sessions_app
	DEBUG=1 CHATGATE_TESTING=1 $(BIN)/python manage.py makemigrations --check --dry-run

# The whole suite on SQLite (the default engine; DATABASE_URL is ignored here so a PostgreSQL
# URL in your shell does not turn this pass into a second PostgreSQL pass).
pytest: install browser-deps server-deps
	env -u DATABASE_URL CHATGATE_TESTING=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# The tests whose database behaviour differs between engines, on PostgreSQL: the server
# DATABASE_URL names when it is a PostgreSQL URL (a test database is created beside it), else a
# throwaway cluster (sessions_app/devpostgres.py). Which files and why: README, "PostgreSQL".
POSTGRES_TESTS := tests/test_prod_database.py tests/test_services.py tests/test_journal.py \
	tests/test_prod_burst.py tests/test_prod_api_presence.py tests/test_conversations.py \
	tests/test_consumers_conversations.py tests/test_conversation_migration.py \
	tests/test_reconcile.py tests/test_recovery.py tests/test_message_sweep.py tests/test_alerts.py \
	tests/test_api_hotpath.py
pytest-postgres: install server-deps
	@if [[ "$${DATABASE_URL:-}" == postgres* ]]; then \
		CHATGATE_TESTING=1 $(BIN)/python -m pytest $(POSTGRES_TESTS) $(PYTEST_ARGS); \
	else \
		CHATGATE_TESTING=1 $(BIN)/python -m sessions_app.devpostgres -- \
			$(BIN)/python -m pytest $(POSTGRES_TESTS) $(PYTEST_ARGS); \
	fi

test: lint typecheck pytest pytest-postgres

bench: install
	$(BIN)/python -m sessions_app.devredis -- $(BIN)/python bench/admission_bench.py

bench-fanout: install
	$(BIN)/python -m sessions_app.devredis -- $(BIN)/python bench/fanout_bench.py --waiting $${WAITING:-1000} --rounds $${ROUNDS:-20}

bench-fanout-cluster: install
	$(BIN)/python -m sessions_app.devredis -- $(BIN)/python bench/fanout_cluster_bench.py --waiting $${WAITING:-10000} --processes $${PROCESSES:-2} --rounds $${ROUNDS:-10} --client $${CLIENT:-lean}

bench-handoff: install
	$(BIN)/python -m sessions_app.devredis -- $(BIN)/python bench/handoff_bench.py --seconds $${SECONDS_RUN:-60} --latency $${LATENCY:-2}

bench-presence: install
	$(BIN)/python -m sessions_app.devredis -- $(BIN)/python bench/presence_bench.py --pages $${PAGES:-5000}

bench-memory: install
	$(BIN)/python -m sessions_app.devredis -- $(BIN)/python bench/memory_bench.py

bench-page-memory: install
	$(BIN)/python -m sessions_app.devredis -- $(BIN)/python bench/page_memory_bench.py --pages $${PAGES:-2000} --runs $${RUNS:-3}

bench-api: install
	$(BIN)/python -m sessions_app.devredis -- $(BIN)/python bench/api_create_bench.py --creates $${CREATES:-3000} --workers $${WORKERS:-2} --connections $${CONNECTIONS:-32}

bench-history: install
	$(BIN)/python -m sessions_app.devredis -- $(BIN)/python bench/history_cache_bench.py

clean:
	rm -rf $(VENV) .test-db-* artifacts
