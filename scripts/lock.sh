#!/usr/bin/env bash
# Re-resolves requirements.lock from pyproject.toml: every transitive version with the sha256 of
# each of its files, so scripts/setup.sh installs exactly what was tested (pip --require-hashes).
# Run after changing a dependency in pyproject.toml, then commit both files. Needs PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=${RFR_LOCK_VENV:-.venv-lock}
[ -x "$tools/bin/uv" ] || { python3 -m venv "$tools"; "$tools/bin/python" -m pip install -q "uv==0.13.9"; }
"$tools/bin/uv" pip compile pyproject.toml --extra dev --extra bench --python-version 3.11 \
  --constraint scripts/lock-constraints.txt \
  --generate-hashes --no-header --quiet --output-file requirements.lock
# pip itself is locked apart: setup.sh upgrades to it before installing the lock.
echo "pip==26.3" | "$tools/bin/uv" pip compile - --python-version 3.11 --generate-hashes --no-header --quiet \
  --output-file requirements-pip.lock
echo "lock: requirements.lock has $(grep -c '==' requirements.lock) pinned packages"
