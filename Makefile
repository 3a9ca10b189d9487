# kubetune: `make up` runs the whole platform locally; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION := 2.13.0
# Installed once the project's dependencies change; a stamp keeps repeat runs fast.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
TEST_STAMP := $(VENV)/.installed-test-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PROTOS := $(shell find protos -name '*.proto' | sort)

.PHONY: up test proto install install-test system-deps lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first: any other torch request would pull a multi-GB CUDA build.
$(STAMP): $(PY) pyproject.toml
	$(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q -e ".[all]"
	touch $@

$(TEST_STAMP): $(STAMP)
	$(PIP) install -q -e '.[test]'
	touch $@

install: $(STAMP)

install-test: $(TEST_STAMP) system-deps

# Debian's chromium for the browser tests; these machines run as root.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed: browser tests will skip outside CI"; \
	  else echo "chromium missing (apt-get install chromium): browser tests will skip outside CI"; fi; }

up: install
	$(VENV)/bin/kubetune up $(UP_ARGS)

test: install-test
	$(PY) -m pytest $(PYTEST_ARGS)

proto: $(TEST_STAMP)
	$(PY) -m services.common.protogen gen

bench: install-test
	$(PY) -m bench

clean:
	rm -rf .kubetune .pytest_cache
