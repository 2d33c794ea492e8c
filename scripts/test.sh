#!/usr/bin/env bash
# Installs what the tests need (idempotent), then runs lint, the import contracts and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
