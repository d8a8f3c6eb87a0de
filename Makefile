# chatgate — two commands do everything on a fresh machine:
#   make run    install, migrate, start Redis unless REDIS_URL or REDIS_SENTINELS is set, serve on 127.0.0.1:8000
#               (WORKERS=N make run: N daphne processes on that one port, one sweeper)
#   make test   install, start what the tests need (Redis, Chromium), run lint, types, tests
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install run test lint typecheck pytest browser-deps bench bench-fanout bench-history clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock
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

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	CHATGATE_TESTING=1 $(BIN)/mypy config sessions_app
	DEBUG=1 CHATGATE_TESTING=1 $(BIN)/python manage.py makemigrations --check --dry-run

pytest: install browser-deps
	CHATGATE_TESTING=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: install
	$(BIN)/python -m sessions_app.devredis -- $(BIN)/python bench/admission_bench.py

bench-fanout: install
	$(BIN)/python -m sessions_app.devredis -- $(BIN)/python bench/fanout_bench.py --waiting $${WAITING:-1000} --rounds $${ROUNDS:-20}

bench-history: install
	$(BIN)/python -m sessions_app.devredis -- $(BIN)/python bench/history_cache_bench.py

clean:
	rm -rf $(VENV) .test-db-* artifacts
