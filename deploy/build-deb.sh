#!/usr/bin/env bash
# Builds the Debian package of Flux from a release build, with dpkg-deb only (no
# debhelper, no cargo-deb): the server, the load tester, the systemd unit, a
# commented /etc/default/flux, the Grafana dashboard and the docs.
#
#   cargo build --release -p flux -p flux-loadtest
#   deploy/build-deb.sh [OUT_DIR]        # → OUT_DIR/flux_<version>_<arch>.deb
#
# The binaries are stripped of debug info in the package (the build keeps it).
# deploy/test-deb.sh checks what this produces.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=$(realpath "${1:-$ROOT/target/debian}")
BIN=${FLUX_RELEASE_DIR:-$ROOT/target/release}
for b in flux flux-loadtest; do
  [ -x "$BIN/$b" ] || { echo "$BIN/$b missing: cargo build --release -p flux -p flux-loadtest" >&2; exit 1; }
done

VERSION=$(sed -n '/^\[package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
ARCH=$(dpkg --print-architecture)
# The newest glibc symbol version the binaries need.
GLIBC=$(objdump -T "$BIN/flux" "$BIN/flux-loadtest" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
P=$STAGE/flux
install -d "$P/DEBIAN" "$P/usr/bin" "$P/lib/systemd/system" "$P/etc/default" \
  "$P/usr/share/doc/flux" "$P/usr/share/flux"
for b in flux flux-loadtest; do
  objcopy --strip-debug "$BIN/$b" "$P/usr/bin/$b"
  chmod 0755 "$P/usr/bin/$b"
done
install -m 0644 deploy/flux.service "$P/lib/systemd/system/flux.service"
install -m 0644 deploy/flux.env "$P/etc/default/flux"
install -m 0644 deploy/grafana-dashboard.json "$P/usr/share/flux/grafana-dashboard.json"
install -m 0644 README.md tuning.md "$P/usr/share/doc/flux/"
cat >"$P/usr/share/doc/flux/copyright" <<EOF
Flux, an event-sourced entity state server.
License: Apache-2.0 (Cargo.toml). The vendored glommio (vendor/glommio) is
Apache-2.0 or MIT. On Debian systems the full text of the Apache License 2.0 is in
/usr/share/common-licenses/Apache-2.0.
EOF

SIZE=$(du -sk --exclude=DEBIAN "$P" | cut -f1)
cat >"$P/DEBIAN/control" <<EOF
Package: flux
Version: $VERSION
Architecture: $ARCH
Maintainer: Flux developers <flux@localhost>
Installed-Size: $SIZE
Depends: libc6 (>= $GLIBC), passwd
Section: database
Priority: optional
Description: event-sourced entity state server for high-rate telemetry
 Flux ingests events over HTTP, merges their properties into entities and serves
 the latest state over HTTP and WebSocket, with a browser console at /. It runs one
 pinned io_uring (glommio) executor per CPU core and logs every acknowledged write.
 .
 This package installs the server (flux), the load tester (flux-loadtest), the
 systemd unit flux.service (not started until enabled) and its settings in
 /etc/default/flux. Needs Linux 5.8+ with io_uring enabled.
EOF
echo /etc/default/flux >"$P/DEBIAN/conffiles"

cat >"$P/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd flux >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/flux --no-create-home \
      --shell /usr/sbin/nologin --comment "Flux state server" flux
  fi
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    # An upgrade restarts a running server (it snapshots on the way down).
    if [ -n "$2" ] && systemctl is-active --quiet flux.service; then
      systemctl restart flux.service || true
    fi
  fi
fi
exit 0
EOF
cat >"$P/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl disable --now flux.service || true
fi
exit 0
EOF
cat >"$P/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
# The data in /var/lib/flux is kept, on purge too: remove it by hand if it must go.
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
exit 0
EOF
chmod 0755 "$P/DEBIAN/postinst" "$P/DEBIAN/prerm" "$P/DEBIAN/postrm"

mkdir -p "$OUT"
DEB=$OUT/flux_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group --build "$P" "$DEB" >/dev/null
echo "$DEB"
