#!/usr/bin/env bash
# Builds the Debian package (deploy/build-deb.sh) and checks it: control fields,
# the exact file list, the conffile, maintainer scripts' syntax, stripped binaries,
# the unit it carries (systemd-analyze verify), the environment file naming every
# setting of README's table, and that the packaged server starts and serves its
# API and console.
# Usage: deploy/test-deb.sh   (after cargo build --release -p flux -p flux-loadtest)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
SERVER=
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
fail() { echo "deb: $*" >&2; exit 1; }

DEB=$(deploy/build-deb.sh "$WORK/out")
[ -f "$DEB" ] || fail "no package built"
VERSION=$(sed -n '/^\[package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ "$(basename "$DEB")" = "flux_${VERSION}_$(dpkg --print-architecture).deb" ] || fail "file name $(basename "$DEB")"

field() { dpkg-deb -f "$DEB" "$1"; }
[ "$(field Package)" = flux ] || fail "Package: $(field Package)"
[ "$(field Version)" = "$VERSION" ] || fail "Version: $(field Version), Cargo.toml says $VERSION"
[ "$(field Architecture)" = "$(dpkg --print-architecture)" ] || fail "Architecture: $(field Architecture)"
field Depends | grep -Eq '^libc6 \(>= 2\.[0-9]+\), passwd$' || fail "Depends: $(field Depends)"
[ -n "$(field Maintainer)" ] && [ -n "$(field Description)" ] || fail "Maintainer and Description are required"
[ "$(field Installed-Size)" -gt 1000 ] || fail "Installed-Size: $(field Installed-Size)"

# Exactly these files (directories aside), with these modes.
dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ {print $1, $6}' | sort >"$WORK/files"
cat >"$WORK/want" <<'EOF'
-rw-r--r-- ./etc/default/flux
-rw-r--r-- ./lib/systemd/system/flux.service
-rw-r--r-- ./usr/share/doc/flux/README.md
-rw-r--r-- ./usr/share/doc/flux/copyright
-rw-r--r-- ./usr/share/doc/flux/tuning.md
-rw-r--r-- ./usr/share/flux/grafana-dashboard.json
-rwxr-xr-x ./usr/bin/flux
-rwxr-xr-x ./usr/bin/flux-loadtest
EOF
sort -o "$WORK/want" "$WORK/want"
diff -u "$WORK/want" "$WORK/files" || fail "file list differs (- expected, + packaged)"
# (Pipes into `grep -q` are avoided under pipefail: grep exits at its first match and
# the writer before it may fail with SIGPIPE, which fails the pipeline.)
owners=$(dpkg-deb -c "$DEB" | awk '{print $2}' | sort -u)
grep -qx root/root <<<"$owners" || fail "files not owned by root"

mkdir "$WORK/ctl" "$WORK/root"
dpkg-deb -e "$DEB" "$WORK/ctl"
[ "$(cat "$WORK/ctl/conffiles")" = /etc/default/flux ] || fail "conffiles: $(cat "$WORK/ctl/conffiles")"
for s in postinst prerm postrm; do
  [ -x "$WORK/ctl/$s" ] || fail "$s missing or not executable"
  sh -n "$WORK/ctl/$s" || fail "$s: syntax"
done
grep -q "useradd --system" "$WORK/ctl/postinst" || fail "postinst does not create the flux user"

dpkg-deb -x "$DEB" "$WORK/root"
R=$WORK/root
cmp -s "$R/lib/systemd/system/flux.service" deploy/flux.service || fail "the unit differs from deploy/flux.service"
cmp -s "$R/etc/default/flux" deploy/flux.env || fail "/etc/default/flux differs from deploy/flux.env"
for b in flux flux-loadtest; do
  sections=$(readelf -S "$R/usr/bin/$b")
  if grep -q '\.debug_info' <<<"$sections"; then fail "$b is not stripped"; fi
  "$R/usr/bin/$b" --help >/dev/null || fail "$b --help"
done
# Every setting of README's table is in the environment file.
for v in $(grep -o '^| `FLUX_[A-Z_]*`' README.md | tr -d '|` '); do
  grep -q "^#$v=" "$R/etc/default/flux" || fail "/etc/default/flux does not mention $v"
done
# The unit as installed, pointed at the packaged binary (verify needs ExecStart to exist).
sed "s#^ExecStart=/usr/bin/flux\$#ExecStart=$R/usr/bin/flux#" "$R/lib/systemd/system/flux.service" >"$WORK/flux.service"
systemd-analyze verify --man=no "$WORK/flux.service" >"$WORK/verify" 2>&1 && [ ! -s "$WORK/verify" ] ||
  { cat "$WORK/verify" >&2; fail "systemd-analyze verify of the packaged unit"; }

# The packaged server starts with the packaged settings and serves the API and console.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
( set -a; . "$R/etc/default/flux"; set +a
  FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$WORK/data FLUX_SHARDS=2 exec "$R/usr/bin/flux" ) >"$WORK/log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null || { cat "$WORK/log" >&2; fail "the packaged server did not start"; }
page=$(curl -fsS "http://127.0.0.1:$PORT/") || fail "GET /"
grep -q '<title>Flux console</title>' <<<"$page" || fail "no console at /"
curl -fsS -XPOST "http://127.0.0.1:$PORT/api/events" \
  -d '{"stream":"s","source":"deb","payload":{"entity_id":"deb-1","properties":{"ok":true}}}' >/dev/null || fail "POST /api/events"
got=$(curl -fsS "http://127.0.0.1:$PORT/api/state/entities/deb-1") || fail "GET the entity"
grep -q '"ok":true' <<<"$got" || fail "the entity has not got its property"
kill -TERM "$SERVER"; wait "$SERVER" || fail "the packaged server did not exit cleanly on SIGTERM"
SERVER=
echo "deb: $(basename "$DEB") ($(du -k "$DEB" | cut -f1) KiB) checked"
