#!/bin/sh
# Build the desk's root filesystem into a directory with debootstrap (Debian packages only), install the
# appliance release bundle into slot a, the update agent into /opt/custody-rfr/agent, and enable the units.
#
#   firmware/image/build-rootfs.sh --bundle custody-rfr-appliance-1.0.0.tar.gz --release-root 1.root.json \
#       --out /srv/rootfs [--wheelhouse DIR] [--model-cache DIR] [--suite bookworm] [--mirror URL] [--plan]
#
# --plan prints what would be done (packages, units, paths) without network or root: tests check it.
# --wheelhouse: a folder of the pinned dependency wheels, made on the build host with the host's pip
# (tar -xzf BUNDLE wheels && pip wheel -w DIR wheels/*.whl: hnswlib has no wheel on PyPI and is built there);
# pip in the tree then installs only from it. Without it pip in the tree goes to PyPI with the tree's own CA
# store, which fails where PyPI is reached only through a local mirror or an intercepting proxy.
# --model-cache: the build host's verified cache (default $RFR_CACHE_DIR or ~/.cache/custody-rfr, as scripts/setup.sh
# fills it). Its pinned artifacts (supply/catalogue.toml) are copied into the tree's read-only model cache
# /usr/share/custody-rfr/cache, where `python -m supply.install` (sha256 of every artifact and member) and
# `python -m models.convert` (the IR, made by the image's own OpenVINO) run inside the tree.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
PLAN=0
BUNDLE= ROOT_JSON= OUT= WHEELHOUSE=
MODEL_CACHE=${RFR_CACHE_DIR:-${HOME:-/root}/.cache/custody-rfr}
IMAGE_CACHE=/usr/share/custody-rfr/cache
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) BUNDLE=$2; shift 2;;
    --release-root) ROOT_JSON=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --wheelhouse) WHEELHOUSE=$2; shift 2;;
    --model-cache) MODEL_CACHE=$2; shift 2;;
    --suite) SUITE=$2; shift 2;;
    --mirror) MIRROR=$2; shift 2;;
    --plan) PLAN=1; shift;;
    *) echo "build-rootfs: unknown option $1" >&2; exit 2;;
  esac
done
[ -n "$BUNDLE" ] && [ -n "$ROOT_JSON" ] && [ -n "$OUT" ] || { echo "build-rootfs: give --bundle, --release-root and --out" >&2; exit 2; }
PACKAGES=$(grep -v '^#' "$HERE/packages.txt" | grep -v '^$' | paste -sd, -)
# The artifacts the models (and the rest of the project) are pinned to, by file name.
ARTIFACTS=$(sed -n 's/^filename = "\(.*\)"$/\1/p' "$HERE/../../supply/catalogue.toml" | paste -sd' ' -)
UNITS=$(cd "$HERE/../systemd" && ls *.service *.timer | grep -v '@' | paste -sd' ' -)
# Enabled at boot: the appliance and the update timer (the update service runs from the timer).
ENABLE="custody-rfr-appliance.service custody-rfr-update.timer"

if [ "$PLAN" = 1 ]; then
  echo "debootstrap --variant=minbase --include=$PACKAGES $SUITE $OUT $MIRROR"
  echo "user custody-rfr (system, no login, no home)"
  echo "install $UNITS -> /etc/systemd/system"
  echo "enable $ENABLE"
  echo "agent /opt/custody-rfr/agent (venv, release wheel with dependencies)"
  echo "slot /var/lib/custody-rfr/firmware/slots/a <- $BUNDLE"
  echo "trust /etc/custody-rfr/release-root.json <- $ROOT_JSON"
  echo "cache $IMAGE_CACHE/artifacts <- $MODEL_CACHE/artifacts: $ARTIFACTS"
  echo "verify RFR_CACHE_DIR=$IMAGE_CACHE python -m supply.install (sha256 of artifacts and members into files/)"
  echo "convert RFR_CACHE_DIR=$IMAGE_CACHE python -m models.convert (ir/), then read-only"
  exit 0
fi

[ "$(id -u)" = 0 ] || { echo "build-rootfs: run as root (debootstrap and chroot need it)" >&2; exit 2; }
# Fail before debootstrap, not after it, when the host's cache lacks a pinned artifact (run scripts/setup.sh).
for a in $ARTIFACTS; do
  [ -f "$MODEL_CACHE/artifacts/$a" ] || { echo "build-rootfs: $MODEL_CACHE/artifacts/$a is missing (run scripts/setup.sh or give --model-cache)" >&2; exit 2; }
done
# Commands inside the new root get a clean environment: the build host's PIP_*, proxy or locale settings
# (a pip.conf find-links, a host-only CA bundle) must not decide what is installed in the image.
in_root() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 chroot "$OUT" "$@"; }
# Nothing may stay mounted in the tree (a later rm -rf of it would walk into /proc): debootstrap's own /proc
# mount is left behind when its unmount finds it busy, and ours is unmounted on every exit, success or failure.
unmount_proc() {
  if mountpoint -q "$OUT/proc" 2>/dev/null; then umount "$OUT/proc" 2>/dev/null || umount -l "$OUT/proc"; fi
}
trap unmount_proc EXIT
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$OUT" "$MIRROR"
unmount_proc
# pip, venv and the agent run inside the tree and read /proc (CPU count, their own executable).
mount -t proc proc "$OUT/proc"
in_root useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin custody-rfr
install -d -m 0755 "$OUT/etc/custody-rfr" "$OUT/opt/custody-rfr" "$OUT/var/lib/custody-rfr/firmware" \
  "$OUT/etc/credstore.encrypted" "$OUT/usr/share/doc/custody-rfr"
install -d -m 0700 -o root "$OUT/var/lib/custody-rfr/data"
in_root chown custody-rfr:custody-rfr /var/lib/custody-rfr/data
install -m 0644 "$ROOT_JSON" "$OUT/etc/custody-rfr/release-root.json"
for u in $UNITS; do install -m 0644 "$HERE/../systemd/$u" "$OUT/etc/systemd/system/$u"; done
install -m 0644 "$HERE/../../docs/firmware.md" "$OUT/usr/share/doc/custody-rfr/firmware.md"

# The agent venv holds the pinned dependencies, and slots reuse them: update-agent.toml lists its site-packages
# in extra_site_packages (a slot's venv is --system-site-packages over /usr/bin/python3). The project itself
# (the agent's own code) must not be in that folder: pip would then find custody-rfr "already installed" when
# the agent installs a release into a slot, install nothing, and every slot would run the image's appliance.
# So the project goes to /opt/custody-rfr/agent/code, which only the agent venv sees (a .pth in its own
# site-packages; slots add the folder as a plain path, so that .pth is never run for them).
WORK="$OUT/tmp/custody-rfr-image"
mkdir -p "$WORK"
tar -xzf "$BUNDLE" -C "$WORK"
cp "$BUNDLE" "$WORK/bundle.tar.gz"
in_root python3 -m venv /opt/custody-rfr/agent
if [ -n "$WHEELHOUSE" ]; then
  cp -r "$WHEELHOUSE" "$WORK/wheelhouse"
  PIP_FROM="--no-index --find-links /tmp/custody-rfr-image/wheelhouse"
else
  PIP_FROM=""
fi
# The glob is expanded inside the root (sh -c), where the wheels are.
in_root sh -c "/opt/custody-rfr/agent/bin/pip install $PIP_FROM /tmp/custody-rfr-image/wheels/*.whl"
in_root /opt/custody-rfr/agent/bin/pip uninstall -y -q custody-rfr
in_root sh -c '/opt/custody-rfr/agent/bin/pip install -q --no-deps --no-index --target /opt/custody-rfr/agent/code \
  /tmp/custody-rfr-image/wheels/*.whl'
SITE=$(in_root /opt/custody-rfr/agent/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo /opt/custody-rfr/agent/code > "$OUT$SITE/custody-rfr-agent.pth"
# The face models: only the pinned artifacts are copied from the host; everything else in the cache (extracted
# files, IR) is made again inside the tree by the image's own code, so nothing unverified is carried over.
# supply.install checks every artifact's sha256 (a mismatch is an error, and with no network or npm in the tree
# nothing is fetched instead), then extracts and checks each pinned member; models.convert writes the IR.
install -d -m 0755 "$OUT$IMAGE_CACHE/artifacts"
for a in $ARTIFACTS; do install -m 0644 "$MODEL_CACHE/artifacts/$a" "$OUT$IMAGE_CACHE/artifacts/$a"; done
in_root env RFR_CACHE_DIR=$IMAGE_CACHE /opt/custody-rfr/agent/bin/python -m supply.install
in_root env RFR_CACHE_DIR=$IMAGE_CACHE /opt/custody-rfr/agent/bin/python -m models.convert
# Read-only: root-owned, no write bits for anyone else (and /usr is read-only to the units: ProtectSystem=strict).
chown -R root:root "$OUT$IMAGE_CACHE"
chmod -R u=rwX,go=rX "$OUT$IMAGE_CACHE"
cat > "$OUT/etc/custody-rfr/update-agent.toml" <<TOML
state_dir = "/var/lib/custody-rfr/firmware"
repository_url = "https://central.invalid/releases"  # set at provisioning
trusted_root = "/etc/custody-rfr/release-root.json"
runtime_python = "/usr/bin/python3"
extra_site_packages = ["$SITE"]
TOML
# The desk's health check (the default: `python -m appliance selftest` on /etc/custody-rfr/appliance.toml) needs
# the desk's settings, keys, library and broker, which only provisioning brings. The first install, here, uses a
# build-time copy of the agent settings whose health check proves only that the slot's appliance and all its
# dependencies import; the image keeps update-agent.toml with the default health check for every later update.
{ cat "$OUT/etc/custody-rfr/update-agent.toml"
  echo 'health_commands = [["{python}", "-c", "import appliance.web, appliance.services.selftest"]]'
} > "$WORK/update-agent-build.toml"
in_root /opt/custody-rfr/agent/bin/python -m firmware.agent --config /tmp/custody-rfr-image/update-agent-build.toml \
  install-local --bundle /tmp/custody-rfr-image/bundle.tar.gz
rm -rf "$WORK"
# shellcheck disable=SC2086
systemctl --root="$OUT" enable $ENABLE
STATUS=$(in_root /opt/custody-rfr/agent/bin/python -m firmware.agent --config /etc/custody-rfr/update-agent.toml status)
unmount_proc
echo "rootfs in $OUT: $STATUS"
