#!/usr/bin/env bash
# Builds and runs a glommio stall reproducer against stock glommio 0.9.0 or the
# repository's vendored copy (vendor/glommio, the fix), in a scratch crate.
#   usage: glommio-repro.sh stock|vendored stall|preempt [ARGS...]
#   stall   ROUNDS GROUPS   glommio-stall-repro.rs: GROUPS 2-executor mesh joins per
#                           round beside 2 spinning threads; counts stalled rounds
#                           (ARCHITECTURE.md: 4 stalls in 321 rounds stock, 0 in 1,246
#                           vendored, with `stall 1246 8`)
#   preempt US ITERS TRIES  glommio-preempt-repro.rs: an executor with a US-microsecond
#                           preempt timer sleeping ITERS times; counts hung executors
#                           (`preempt 20 2000 6`: 6 of 6 stock, 0 of 6 vendored)
set -euo pipefail
WHICH=$1; WHAT=$2; shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
case $WHICH in
  stock) DEP='glommio = "=0.9.0"' ;;
  vendored) DEP="glommio = { path = \"$ROOT/vendor/glommio\" }" ;;
  *) echo "stock or vendored" >&2; exit 2 ;;
esac
case $WHAT in stall | preempt) ;; *) echo "stall or preempt" >&2; exit 2 ;; esac
DIR=${GLOMMIO_REPRO_DIR:-/tmp/glommio-repro-$WHICH-$WHAT}
mkdir -p "$DIR/src"
cp "$HERE/glommio-$WHAT-repro.rs" "$DIR/src/main.rs"
cat >"$DIR/Cargo.toml" <<TOML
[package]
name = "glommio-repro"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$DEP

[workspace]
TOML
cd "$DIR"
cargo run --release --quiet -- "$@"
