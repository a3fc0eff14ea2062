#!/usr/bin/env bash
# Makes (once) a throwaway Python virtual environment with `pika` for
# examples/python_producer.py and its integration test, and `moto` (an S3-compatible
# server) for the data jobs' tests on an `s3://` store; prints the path of its python:
#
#   "$(scripts/python-venv.sh)" examples/python_producer.py --queue emails --kind send
#
# The venv lives in ${CARGO_TARGET_DIR:-target}/python-venv, so `cargo clean` removes it.
# Parallel callers (nextest runs tests as separate processes) wait on a lock and share one
# venv; a venv left half-made by an interrupted run is made again. Every failure says what
# to install. Safe to run from any directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="$TARGET/python-venv"
PYTHON="$VENV/bin/python"
PACKAGES=('pika>=1.3,<2' 'moto[server]>=5.1,<6')

die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

ready() {
  [ -x "$PYTHON" ] && "$PYTHON" -c 'import pika, moto.server' >/dev/null 2>&1
}

mkdir -p "$TARGET"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$TARGET/python-venv.lock"
  flock -w 300 9 || die "waited 5 minutes for $TARGET/python-venv.lock; remove it if stale"
fi

if ! ready; then
  command -v python3 >/dev/null 2>&1 ||
    die "python3 is not installed; install Python 3.8 or newer with its venv module
  (Debian/Ubuntu: apt-get install python3 python3-venv)"
  rm -rf "$VENV"
  log="$(mktemp)"
  trap 'rm -f "$log"' EXIT
  python3 -m venv "$VENV" >"$log" 2>&1 ||
    die "python3 -m venv $VENV failed; install Python's venv module and ensurepip
  (Debian/Ubuntu: apt-get install python3-venv). Output:
$(cat "$log")"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}" >"$log" 2>&1 ||
    die "pip install ${PACKAGES[*]} into $VENV failed; PyPI must be reachable (or set
  PIP_INDEX_URL to a mirror). Output:
$(cat "$log")"
  ready || die "pika or moto does not import in $VENV after installing them"
  printf '==> made %s with pika %s and moto %s\n' "$VENV" \
    "$("$PYTHON" -c 'import pika; print(pika.__version__)')" \
    "$("$PYTHON" -c 'import moto; print(moto.__version__)')" >&2
fi

printf '%s\n' "$PYTHON"
