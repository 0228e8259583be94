# The README's two commands: `make demo` and `make test`. Both set everything up first.
# The worker is CPU-bound Python, so the interpreter's build matters. Distribution
# interpreters (Debian's /usr/bin/python3) are built with profile-guided and
# link-time optimisation, as is the Docker image's (python:3.11-slim); a pyenv or
# source build without --enable-optimizations is not, and one worker then works
# through a 1,000-bed ward about 10 % slower (bench/ward.py --backlog). So the
# system's python3 is taken when it is 3.11 or newer; `make PYTHON=...` picks another.
# (Deferred: the probe runs only when PYTHON is not given.)
PYTHON ?= $(if $(filter True,$(shell /usr/bin/python3 -c 'import sys; print(sys.version_info >= (3, 11))' 2>/dev/null)),/usr/bin/python3,python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: demo test venv lint clean test-tools alerts-check

demo: $(STAMP)
	$(BIN)/vigil demo $(DEMO_ARGS)

test: $(STAMP) test-tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Tools the tests need beyond the virtualenv: Java 17 and Maven run Apache Kafka
# (installed with apt when missing and we are root); the Compose plugin validates
# docker-compose.yml; Debian's chromium runs the dashboard's browser tests;
# TimescaleDB (built from Debian's source) runs the event store's hypertable schema.
test-tools:
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless maven; \
	  else echo "the tests need Java 17 and Maven (apt-get install openjdk-17-jre-headless maven)"; exit 1; fi; }
	@./scripts/install-compose-plugin.sh
	@./scripts/install-browser.sh >/dev/null
	@./scripts/install-timescaledb.sh

lint: $(STAMP)
	$(BIN)/mypy

# Optional, not part of `make test`: promtool (Prometheus' own rule checker) checks
# deploy/prometheus/vigil-alerts.yml and runs its unit tests. The first run builds
# promtool with Go into .tools/ (about 8 minutes and 2 GB of Go modules here).
PROMTOOL := .tools/promtool
$(PROMTOOL):
	GOBIN=$(CURDIR)/.tools go install github.com/prometheus/prometheus/cmd/promtool@v0.316.0

alerts-check: $(PROMTOOL)
	cd deploy/prometheus && ../../$(PROMTOOL) check rules vigil-alerts.yml && ../../$(PROMTOOL) test rules vigil-alerts.test.yml

venv: $(STAMP)

# A virtualenv with every dependency pinned by constraints.txt. On Debian/Ubuntu,
# `python3 -m venv` needs the python3-venv package; install it when we can.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Vigil needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); \
	  else echo "cannot create a virtualenv: install python3-venv (apt-get install python3-venv)"; exit 1; fi; }
	$(BIN)/python -m pip install -q --upgrade pip==25.3
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	@touch $@

clean:
	rm -rf $(VENV) .vigil .tools
