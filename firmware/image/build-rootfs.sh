#!/bin/sh
# Build the desk's root filesystem into a directory with debootstrap (Debian packages only), install the
# appliance release bundle into slot a, the update agent into /opt/custody-rfr/agent, and enable the units.
#
#   firmware/image/build-rootfs.sh --bundle custody-rfr-appliance-1.0.0.tar.gz --release-root 1.root.json \
#       --out /srv/rootfs [--wheelhouse DIR] [--suite bookworm] [--mirror http://deb.debian.org/debian] [--plan]
#
# --plan prints what would be done (packages, units, paths) without network or root: tests check it.
# --wheelhouse: a folder of the pinned dependency wheels (pip download -r ... on a connected machine);
# without it pip installs the dependencies from PyPI inside the chroot.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
PLAN=0
BUNDLE= ROOT_JSON= OUT= WHEELHOUSE=
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) BUNDLE=$2; shift 2;;
    --release-root) ROOT_JSON=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --wheelhouse) WHEELHOUSE=$2; shift 2;;
    --suite) SUITE=$2; shift 2;;
    --mirror) MIRROR=$2; shift 2;;
    --plan) PLAN=1; shift;;
    *) echo "build-rootfs: unknown option $1" >&2; exit 2;;
  esac
done
[ -n "$BUNDLE" ] && [ -n "$ROOT_JSON" ] && [ -n "$OUT" ] || { echo "build-rootfs: give --bundle, --release-root and --out" >&2; exit 2; }
PACKAGES=$(grep -v '^#' "$HERE/packages.txt" | grep -v '^$' | paste -sd, -)
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
  exit 0
fi

[ "$(id -u)" = 0 ] || { echo "build-rootfs: run as root (debootstrap and chroot need it)" >&2; exit 2; }
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$OUT" "$MIRROR"
chroot "$OUT" useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin custody-rfr
install -d -m 0755 "$OUT/etc/custody-rfr" "$OUT/opt/custody-rfr" "$OUT/var/lib/custody-rfr/firmware" \
  "$OUT/etc/credstore.encrypted" "$OUT/usr/share/doc/custody-rfr"
install -d -m 0700 -o root "$OUT/var/lib/custody-rfr/data"
chroot "$OUT" chown custody-rfr:custody-rfr /var/lib/custody-rfr/data
install -m 0644 "$ROOT_JSON" "$OUT/etc/custody-rfr/release-root.json"
for u in $UNITS; do install -m 0644 "$HERE/../systemd/$u" "$OUT/etc/systemd/system/$u"; done
install -m 0644 "$HERE/../../docs/firmware.md" "$OUT/usr/share/doc/custody-rfr/firmware.md"

# The agent venv: the release's wheel(s) with their pinned dependencies; slots reuse them (--system-site-packages
# over this venv's interpreter is not possible, so update-agent.toml lists its site-packages in extra_site_packages).
WORK="$OUT/tmp/custody-rfr-image"
mkdir -p "$WORK"
tar -xzf "$BUNDLE" -C "$WORK"
cp "$BUNDLE" "$WORK/bundle.tar.gz"
chroot "$OUT" python3 -m venv /opt/custody-rfr/agent
if [ -n "$WHEELHOUSE" ]; then
  cp -r "$WHEELHOUSE" "$WORK/wheelhouse"
  chroot "$OUT" /opt/custody-rfr/agent/bin/pip install --no-index --find-links /tmp/custody-rfr-image/wheelhouse /tmp/custody-rfr-image/wheels/*.whl
else
  chroot "$OUT" sh -c '/opt/custody-rfr/agent/bin/pip install /tmp/custody-rfr-image/wheels/*.whl'
fi
SITE=$(chroot "$OUT" /opt/custody-rfr/agent/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cat > "$OUT/etc/custody-rfr/update-agent.toml" <<TOML
state_dir = "/var/lib/custody-rfr/firmware"
repository_url = "https://central.invalid/releases"  # set at provisioning
trusted_root = "/etc/custody-rfr/release-root.json"
runtime_python = "/usr/bin/python3"
extra_site_packages = ["$SITE"]
TOML
chroot "$OUT" /opt/custody-rfr/agent/bin/python -m firmware.agent --config /etc/custody-rfr/update-agent.toml \
  install-local --bundle /tmp/custody-rfr-image/bundle.tar.gz
rm -rf "$WORK"
# shellcheck disable=SC2086
systemctl --root="$OUT" enable $ENABLE
echo "rootfs in $OUT: $(chroot "$OUT" /opt/custody-rfr/agent/bin/python -m firmware.agent --config /etc/custody-rfr/update-agent.toml status)"
