# redis-session — the two commands a newcomer runs: `make run` and `make test`.
SHELL := /bin/bash
PORT ?= 6379
MODULE := $(CURDIR)/target/release/libredis_session.so
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
APT := DEBIAN_FRONTEND=noninteractive apt-get
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: all build run test test-rust test-py test-python bench-python lint bench bench-smoke soak deps-build deps-redis deps-haproxy venv clean

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
	exec redis-server --port $(PORT) --bind 127.0.0.1 --save "" --appendonly no --loadmodule $(MODULE)

# --- tests --------------------------------------------------------------------
# The bench smoke run keeps bench/ from rotting; pytest runs last so its
# summary closes the output.
test: build deps-redis deps-haproxy venv
	cargo test --release
	$(MAKE) --no-print-directory bench-smoke
	SESSION_MODULE=$(MODULE) $(PY) -m pytest -q integration $(PYTEST_ARGS)
	SESSION_MODULE=$(MODULE) $(PY) -m pytest -q python/tests $(PYTEST_ARGS)

test-rust: build deps-redis
	cargo test --release

test-py: build deps-redis venv
	SESSION_MODULE=$(MODULE) $(PY) -m pytest -q integration $(PYTEST_ARGS)

lint: venv
	cargo fmt --all -- --check
	cargo clippy --all-targets --release -- -D warnings
	cd python && $(VENV)/bin/ruff check src tests bench && $(VENV)/bin/mypy --strict src

# --- the Python package (python/) ---------------------------------------------
test-python: build deps-redis venv
	SESSION_MODULE=$(MODULE) $(PY) -m pytest -q python/tests $(PYTEST_ARGS)

bench-python: build deps-redis venv
	SESSION_MODULE=$(MODULE) $(PY) python/bench/bench.py

# --- performance and soak (not part of `make test`) ---------------------------
bench: build deps-redis venv
	SESSION_MODULE=$(MODULE) $(PY) bench/bench.py

bench-smoke: build deps-redis venv
	SESSION_MODULE=$(MODULE) $(PY) bench/bench.py --smoke

soak: build deps-redis venv
	SESSION_MODULE=$(MODULE) SESSION_SOAK=1 $(PY) -m pytest -q integration -m soak $(PYTEST_ARGS)

clean:
	cargo clean
	rm -rf $(VENV) .apt-updated
