# Sauti: the two commands of the README (`make serve`, `make test`) and a few more.
# Each target creates the virtualenv and installs what it needs on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sauti-installed

.PHONY: serve test lint unit integration bench bench-ledger bench-payments bench-ussd bench-statements bench-ops bench-voice flite clean-db

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Sauti needs Python >= 3.11 (found %s); set PYTHON=python3.11" % sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

serve: $(STAMP)  ## start the gateway on the embedded defaults
	$(BIN)/sauti serve

test: lint $(STAMP) flite  ## the whole test suite (unit, integration, e2e) on a real PostgreSQL
	$(BIN)/pytest

lint: $(STAMP)  ## style and the one-way import rule
	$(BIN)/ruff check .
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration tests/e2e

bench: bench-ledger bench-payments bench-ussd bench-statements bench-ops bench-voice

bench-ledger: $(STAMP)  ## ledger transfers/s beside pgbench's TPC-B-like tps on the same server
	$(BIN)/python -m bench.ledger

bench-payments: $(STAMP)  ## completed payments/s through the gateway and the sandboxes, beside the ledger
	$(BIN)/python -m bench.payments

bench-ussd: $(STAMP)  ## USSD hops/s through `sauti serve`, beside a bare aiohttp handler
	$(BIN)/python -m bench.ussd

bench-statements: $(STAMP)  ## what one PostgreSQL statement costs the gateway, beside asyncpg alone
	$(BIN)/python -m bench.statements

bench-ops: $(STAMP)  ## a payment's whole record and a number's payments as tables grow, beside a read by id
	$(BIN)/python -m bench.ops

bench-voice: $(STAMP) flite  ## WER, command accuracy and real-time factor of spoken commands at 8 kHz
	$(BIN)/python -m bench.voice

flite:  # CMU Flite speaks the benchmark's English beside eSpeak NG (Debian's package; optional; a test checks its voices)
	@command -v flite >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q flite >/dev/null; } || \
		echo "CMU Flite could not be installed: English clips will be spoken by eSpeak NG only"

clean-db:  ## forget the embedded databases (var/)
	rm -rf var/
