#!/usr/bin/env bash
# Installs what the tests need (idempotent), then runs lint, the import contracts and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
# Two workers (RFR_TEST_WORKERS): the suite mostly waits on brokers, servers and browsers; each file runs whole
# on one worker, so a module's fixtures are made once, and each worker starts its own broker and servers.
.venv/bin/python -m pytest -n "${RFR_TEST_WORKERS:-2}" --dist loadfile "$@"
